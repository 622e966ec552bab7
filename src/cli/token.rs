//! `strongroom token create|list|revoke`: a tenant's API tokens, as the operator.

use super::{open_app, print_json, Cli, Failure};
use crate::door;
use crate::identity::tokens::{self, NewToken, TokenInfo};
use crate::identity::{Caller, Realm};
use crate::ids::{TenantId, TokenId};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a token; prints it alone, once (it is stored only as a keyed hash).
    Create {
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// owner, admin, operator, auditor, or a custom role of the tenant.
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 30d, 12h, 1y (at most ten years). Default: no expiry.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_name = "ID")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token by id, or every token with --all.
    Revoke {
        #[arg(long, value_name = "ID")]
        tenant: String,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        token_id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let (Command::Create { tenant, .. }
    | Command::List { tenant, .. }
    | Command::Revoke { tenant, .. }) = cmd;
    // Everything is parsed before any file is touched.
    let tenant = TenantId::parse(tenant)?;
    let lifetime = match cmd {
        Command::Create {
            expires: Some(e), ..
        } => Some(tokens::parse_lifetime(e).map_err(|m| Failure::new("TOK-0002", m))?),
        _ => None,
    };
    let token_id = match cmd {
        Command::Revoke {
            token_id: Some(t), ..
        } => Some(TokenId::parse(t)?),
        _ => None,
    };
    let app = Arc::new(open_app(cli)?);
    let result = door::open_blocking(&app, &tenant, Caller::operator(Realm::Tenant), None)
        .map_err(Failure::from)
        .and_then(|ctx| -> Result<(), Failure> {
            match cmd {
                Command::Create {
                    role, name, json, ..
                } => {
                    let input = NewToken {
                        name: name.clone(),
                        role: role.clone(),
                        lifetime_secs: lifetime,
                    };
                    let (info, text) = tokens::create_blocking(&ctx, app.directory(), &input)?;
                    if *json {
                        print_json(&serde_json::json!({ "token": text.expose(), "info": info }))?;
                    } else {
                        println!("{}", text.expose());
                    }
                }
                Command::List { json, .. } => {
                    let list = tokens::list_blocking(&ctx)?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        print_table(&list);
                    }
                }
                Command::Revoke { json, .. } => {
                    let n = tokens::revoke_blocking(&ctx, token_id.as_ref())?;
                    if *json {
                        print_json(&serde_json::json!({ "revoked": n }))?;
                    } else {
                        println!("{n} revoked");
                    }
                }
            }
            Ok(())
        });
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    result.map(|()| ExitCode::SUCCESS)
}

fn print_table(list: &[TokenInfo]) {
    let when = |us: Option<i64>| {
        us.map_or("-".to_string(), |u| {
            let t = crate::clock::format_rfc3339(u);
            t[..t.len().min(19)].to_string()
        })
    };
    println!(
        "{:<32}  {:<10}  {:<8}  {:<19}  {:<19}  NAME",
        "ID", "ROLE", "STATE", "EXPIRES", "LAST USED"
    );
    for t in list {
        let state = if t.revoked_us.is_some() {
            "revoked"
        } else {
            "live"
        };
        println!(
            "{:<32}  {:<10}  {:<8}  {:<19}  {:<19}  {}",
            t.id,
            t.role,
            state,
            when(t.expires_us),
            when(t.last_used_us),
            t.name
        );
    }
}
