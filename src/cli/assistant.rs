//! `strongroom assistant policy` and `strongroom assistant redaction`: a tenant's assistant
//! and redaction rules, as the operator (for installations run from the command line, and
//! for scripts).

use super::{as_operator, print_json, Cli, Failure};
use crate::ids::TenantId;
use crate::policy::ai::{self, parse_names, Retention};
use crate::policy::limits;
use crate::policy::redaction::{self, parse_rule};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the tenant's assistant policy, or change the parts given; prints it as JSON.
    Policy(PolicyArgs),
    /// Show the tenant's redaction rules, or change the parts given; prints them as JSON.
    Redaction {
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// Also replace values before calls to loopback endpoints (upstream ones always are).
        #[arg(long, value_name = "BOOL")]
        all_endpoints: Option<bool>,
        /// Add or replace one of the tenant's own patterns, NAME=PATTERN (repeatable), e.g.
        /// EMPLOYEE_ID=EMP-[0-9]{6}.
        #[arg(long = "rule", value_name = "NAME=PATTERN")]
        rules: Vec<String>,
        /// Remove a pattern by name (repeatable).
        #[arg(long = "remove-rule", value_name = "NAME")]
        remove: Vec<String>,
    },
    /// Show the tenant's limits on calls to models, or change them; prints them as JSON.
    Limits {
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// SCOPE.LIMIT=VALUE (repeatable): scope `tenant` (all its calls) or `token` (each
        /// token's or person's), limit `rps`, `burst`, `concurrent` or `tokens_per_day`,
        /// value a number or `off`. Example: --set token.rps=5 --set token.burst=10. Where the
        /// limits are shared through Redis: on_shared_failure=closed (default: refuse calls
        /// while Redis cannot be reached) or on_shared_failure=open (this node's own limits).
        #[arg(long = "set", value_name = "SCOPE.LIMIT=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
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
    /// Add passages of the tenant's documents to gateway calls for models other than
    /// extractive (off by default: the caller's messages go alone).
    #[arg(long, value_name = "BOOL")]
    gateway_context: Option<bool>,
    /// Pass fields of gateway calls that the gateway does not read (temperature, top_p,
    /// metadata, ...) to endpoints of the caller's API (off by default: they are left out).
    #[arg(long, value_name = "BOOL")]
    gateway_passthrough: Option<bool>,
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let args = match cmd {
        Command::Policy(args) => args,
        Command::Redaction {
            tenant,
            all_endpoints,
            rules,
            remove,
        } => return run_redaction(cli, tenant, *all_endpoints, rules, remove),
        Command::Limits { tenant, set } => return run_limits(cli, tenant, set),
    };
    let PolicyArgs {
        tenant,
        model,
        endpoints,
        egress_allow,
        grounded_only,
        retention,
        gateway_context,
        gateway_passthrough,
    } = args;
    let tenant = TenantId::parse(tenant)?;
    let endpoints = endpoints
        .as_deref()
        .map(|l| parse_names("ai.endpoints", l))
        .transpose()?;
    let egress_allow = egress_allow
        .as_deref()
        .map(|l| parse_names("ai.egress_allow", l))
        .transpose()?;
    as_operator(cli, &tenant, |app, ctx| {
        let known: Vec<String> = app
            .config()
            .ai
            .endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let mut p = ai::read_unchecked(&ctx)?;
        let changed = model.is_some()
            || endpoints.is_some()
            || egress_allow.is_some()
            || grounded_only.is_some()
            || retention.is_some()
            || gateway_context.is_some()
            || gateway_passthrough.is_some();
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
            if let Some(g) = gateway_context {
                p.gateway_context = *g;
            }
            if let Some(g) = gateway_passthrough {
                p.gateway_passthrough = *g;
            }
            if let Some(r) = retention.as_deref().and_then(Retention::parse) {
                p.retention = r;
            }
            p = ai::update_blocking(&ctx, &p, &known)?;
        }
        print_json(&p)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_redaction(
    cli: &Cli,
    tenant: &str,
    all_endpoints: Option<bool>,
    rules: &[String],
    remove: &[String],
) -> Result<ExitCode, Failure> {
    let tenant = TenantId::parse(tenant)?;
    // Every rule is checked before the tenant file is opened.
    let rules = rules
        .iter()
        .map(|r| parse_rule(r))
        .collect::<Result<Vec<_>, _>>()?;
    as_operator(cli, &tenant, |_, ctx| {
        let mut p = redaction::read_unchecked(&ctx)?;
        if all_endpoints.is_some() || !rules.is_empty() || !remove.is_empty() {
            if let Some(unknown) = remove
                .iter()
                .find(|n| !p.rules.iter().any(|r| &r.name == *n))
            {
                return Err(Failure::new(
                    "POL-0001",
                    format!("invalid redact.rules: there is no rule named {unknown:?}"),
                ));
            }
            if let Some(a) = all_endpoints {
                p.all_endpoints = a;
            }
            p.rules.retain(|r| !remove.contains(&r.name));
            for rule in &rules {
                match p.rules.iter_mut().find(|r| r.name == rule.name) {
                    Some(r) => *r = rule.clone(),
                    None => p.rules.push(rule.clone()),
                }
            }
            p = redaction::update_blocking(&ctx, &p)?;
        }
        print_json(&p)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_limits(cli: &Cli, tenant: &str, set: &[String]) -> Result<ExitCode, Failure> {
    let tenant = TenantId::parse(tenant)?;
    // Every assignment is checked before the tenant file is opened.
    crate::policy::limits::LimitPolicy::default().set_all(set)?;
    as_operator(cli, &tenant, |_, ctx| {
        let mut p = limits::read_blocking(&ctx)?;
        if !set.is_empty() {
            p.set_all(set)?;
            p = limits::update_blocking(&ctx, &p)?;
        }
        print_json(&p)?;
        Ok(ExitCode::SUCCESS)
    })
}
