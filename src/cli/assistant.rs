//! `strongroom assistant policy`: a tenant's assistant rules, as the operator (for
//! installations run from the command line, and for scripts).

use super::{open_app, print_json, Cli, Failure};
use crate::door;
use crate::identity::{Caller, Realm};
use crate::ids::TenantId;
use crate::policy::ai::{self, parse_names, Retention};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the tenant's assistant policy, or change the parts given; prints it as JSON.
    Policy {
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// `extractive`, or a configured endpoint listed in --endpoints.
        #[arg(long)]
        model: Option<String>,
        /// Configured endpoints the tenant may use, comma-separated ("" for none).
        #[arg(long, value_name = "LIST")]
        endpoints: Option<String>,
        /// Hosts its data may be sent to upstream, comma-separated ("" for none).
        #[arg(long, value_name = "LIST")]
        egress_allow: Option<String>,
        /// Refuse answers that cite none of the tenant's documents.
        #[arg(long, value_name = "BOOL")]
        grounded_only: Option<bool>,
        /// What an AI turn's audit entry keeps of the prompt and the answer.
        #[arg(long, value_parser = ["preview", "full"])]
        retention: Option<String>,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let Command::Policy {
        tenant,
        model,
        endpoints,
        egress_allow,
        grounded_only,
        retention,
    } = cmd;
    let tenant = TenantId::parse(tenant)?;
    let endpoints = endpoints
        .as_deref()
        .map(|l| parse_names("ai.endpoints", l))
        .transpose()?;
    let egress_allow = egress_allow
        .as_deref()
        .map(|l| parse_names("ai.egress_allow", l))
        .transpose()?;
    let app = Arc::new(open_app(cli)?);
    let known: Vec<String> = app
        .config()
        .ai
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let result = door::open_blocking(&app, &tenant, Caller::operator(Realm::Tenant), None)
        .map_err(Failure::from)
        .and_then(|ctx| -> Result<ExitCode, Failure> {
            let mut p = ai::read_unchecked(&ctx)?;
            let changed = model.is_some()
                || endpoints.is_some()
                || egress_allow.is_some()
                || grounded_only.is_some()
                || retention.is_some();
            if changed {
                if let Some(m) = model {
                    p.model = m.trim().to_string();
                }
                if let Some(e) = &endpoints {
                    p.endpoints = e.clone();
                }
                if let Some(e) = &egress_allow {
                    p.egress_allow = e.clone();
                }
                if let Some(g) = grounded_only {
                    p.grounded_only = *g;
                }
                if let Some(r) = retention.as_deref().and_then(Retention::parse) {
                    p.retention = r;
                }
                p = ai::update_blocking(&ctx, &p, &known)?;
            }
            print_json(&p)?;
            Ok(ExitCode::SUCCESS)
        });
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    result
}
