//! `strongroom user create|list|disable|enable|set-role|reset-password`: accounts of a tenant
//! (`--tenant ID`) or of the platform (`--platform`), as the operator at the console.

use super::{open_app, print_json, Cli, Failure};
use crate::app::App;
use crate::door::{self, Door};
use crate::identity::accounts::{self, Account, NewAccount};
use crate::identity::{Caller, Realm};
use crate::ids::TenantId;
use std::process::ExitCode;
use std::sync::Arc;

/// Which realm's accounts: one tenant's, or the platform's.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Where {
    /// The tenant whose users to manage.
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// Manage platform accounts (who create and manage tenants) instead.
    #[arg(long)]
    platform: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an account; prints its one-time password alone (changed at first sign-in).
    Create {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        email: String,
        /// owner, admin, operator, auditor, or a custom role of the tenant.
        #[arg(long)]
        role: String,
        /// Name shown in the admin UI; the address's local part by default.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        json: bool,
    },
    /// Disable an account (by id or e-mail) and end its sessions.
    Disable {
        #[command(flatten)]
        at: Where,
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled account again.
    Enable {
        #[command(flatten)]
        at: Where,
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Give an account another role; ends its sessions.
    SetRole {
        #[command(flatten)]
        at: Where,
        user: String,
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace an account's password with a new one-time password, printed alone; ends its
    /// sessions.
    ResetPassword {
        #[command(flatten)]
        at: Where,
        user: String,
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    fn at(&self) -> &Where {
        match self {
            Command::Create { at, .. }
            | Command::List { at, .. }
            | Command::Disable { at, .. }
            | Command::Enable { at, .. }
            | Command::SetRole { at, .. }
            | Command::ResetPassword { at, .. } => at,
        }
    }
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    // Parse the tenant id before touching any file, so a typo fails fast and changes nothing.
    let tenant = cmd
        .at()
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()?;
    let app = Arc::new(open_app(cli)?);
    let result = match &tenant {
        Some(id) => door::open_blocking(&app, id, Caller::operator(Realm::Tenant), None)
            .map_err(Failure::from)
            .and_then(|ctx| run_in(&app, &ctx, cmd)),
        None => {
            let ctx = door::platform(&app, Caller::operator(Realm::Platform), None);
            run_in(&app, &ctx, cmd)
        }
    };
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    result.map(|()| ExitCode::SUCCESS)
}

fn run_in<D: Door>(app: &App, ctx: &D, cmd: &Command) -> Result<(), Failure> {
    match cmd {
        Command::Create {
            email,
            role,
            name,
            json,
            ..
        } => {
            let input = NewAccount {
                email: email.clone(),
                name: name.clone(),
                role: role.clone(),
            };
            let (account, one_time) = accounts::create_blocking(ctx, app.directory(), &input)?;
            if *json {
                print_json(&serde_json::json!({
                    "account": account,
                    "one_time_password": one_time.expose(),
                }))?;
            } else {
                println!("{}", one_time.expose());
            }
        }
        Command::List { json, .. } => {
            let list = accounts::list_blocking(ctx)?;
            if *json {
                print_json(&list)?;
            } else {
                print_table(&list);
            }
        }
        Command::Disable { user, json, .. } | Command::Enable { user, json, .. } => {
            let disabled = matches!(cmd, Command::Disable { .. });
            let a = accounts::set_disabled_blocking(ctx, user, disabled)?;
            show(&a, *json, if disabled { "disabled" } else { "enabled" })?;
        }
        Command::SetRole {
            user, role, json, ..
        } => {
            let a = accounts::set_role_blocking(ctx, user, role)?;
            show(&a, *json, &format!("now {}", a.role))?;
        }
        Command::ResetPassword { user, json, .. } => {
            let (account, one_time) = accounts::reset_password_blocking(ctx, user)?;
            if *json {
                print_json(&serde_json::json!({
                    "account": account,
                    "one_time_password": one_time.expose(),
                }))?;
            } else {
                println!("{}", one_time.expose());
            }
        }
    }
    Ok(())
}

fn show(a: &Account, json: bool, what: &str) -> Result<(), Failure> {
    if json {
        print_json(a)
    } else {
        println!("{} {} {what}", a.id, a.email);
        Ok(())
    }
}

fn print_table(list: &[Account]) {
    println!(
        "{:<32}  {:<10}  {:<9}  {:<20}  EMAIL",
        "ID", "ROLE", "STATE", "CREATED"
    );
    for a in list {
        let created = crate::clock::format_rfc3339(a.created_us);
        let state = if a.disabled {
            "disabled"
        } else if a.must_change_password {
            "new"
        } else {
            "active"
        };
        println!(
            "{:<32}  {:<10}  {:<9}  {:<20}  {}",
            a.id,
            a.role,
            state,
            &created[..created.len().min(19)],
            a.email
        );
    }
}
