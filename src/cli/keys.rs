//! `strongroom keys rotate-root|status`.

use super::{open_app, print_json, Cli, Failure};
use crate::audit::Actor;
use crate::keys;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replace the root key: every data key is re-wrapped (tenant files are not re-encrypted).
    /// Stop the server first; restart it afterwards.
    RotateRoot {
        #[arg(long)]
        json: bool,
    },
    /// Give a tenant a new data key and re-encrypt its file (other tenants are untouched).
    /// Refused while another process has the tenant open.
    RotateTenant {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List key versions and ages; warns past keys.max_age_days.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    if let Command::RotateTenant { id, json } = cmd {
        // A running server holds its tenants open: it does the rotation itself, so that
        // only that tenant's writes wait.
        let loaded = super::load_config(cli)?;
        let dir = super::data_dir(cli, &loaded, false);
        if crate::admin::server_running(&dir) {
            crate::tenants::TenantId::parse(id)?;
            let req = crate::admin::Request::RotateTenant { tenant: id.clone() };
            let answer = crate::admin::call(&dir, &req).map_err(|e| match e {
                crate::admin::CallError::Unreachable(_) => Failure::new("ADM-0003", e.to_string()),
                crate::admin::CallError::Lost | crate::admin::CallError::TimedOut => Failure::new(
                    "ADM-0006",
                    format!(
                        "{e}. Tenant {id}: the registry alone decides whether its rotation \
                         committed; `strongroom keys status` shows its key version, and the next \
                         start of the server finishes a committed rotation or discards the copy \
                         of one that did not commit. Nothing is lost either way"
                    ),
                ),
                crate::admin::CallError::Malformed(_) => Failure::new("ADM-0005", e.to_string()),
            })?;
            if !answer.ok {
                return Err(Failure::new(
                    "ADM-0004",
                    format!("{} [{}]", answer.message, answer.code),
                ));
            }
            let r: keys::TenantRotation = serde_json::from_value(answer.result)
                .map_err(|e| Failure::new("ADM-0005", format!("malformed answer: {e}")))?;
            print_rotation(&r, *json)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let app = open_app(cli)?;
    let result = match cmd {
        Command::RotateRoot { json } => keys::rotate_root(&app, &Actor::cli())
            .map_err(Failure::from)
            .and_then(|r| {
                if *json {
                    print_json(&r)?;
                } else {
                    println!(
                        "root key rotated: {} -> {} ({} data keys re-wrapped)",
                        r.old_root_key_id, r.new_root_key_id, r.rewrapped
                    );
                    println!("Restart the server, and replace any copy of the old key file.");
                    println!(
                        "Archives sealed under the old root key need the old key to restore: keep it \
                         with them, or make a fresh backup now."
                    );
                }
                Ok(ExitCode::SUCCESS)
            }),
        Command::RotateTenant { id, json } => crate::tenants::TenantId::parse(id)
            .map_err(Failure::from)
            .and_then(|id| keys::rotate_tenant(&app, &Actor::cli(), &id).map_err(Failure::from))
            .and_then(|r| {
                print_rotation(&r, *json)?;
                Ok(ExitCode::SUCCESS)
            }),
        Command::Status { json } => keys::status(&app).map_err(Failure::from).and_then(|list| {
            if *json {
                print_json(&list)?;
            } else {
                println!("{:<32}  {:>3}  {:>8}  NOTE", "KEY", "VER", "AGE");
                for k in &list {
                    let age = k
                        .age_days
                        .map(|d| format!("{d}d"))
                        .unwrap_or_else(|| "-".into());
                    let mut note = String::new();
                    if let (Some(id), Some(src)) = (&k.key_id, &k.source) {
                        note = format!("id {id}, {src}");
                    }
                    if k.too_old {
                        note.push_str(" OLDER THAN keys.max_age_days: rotate it");
                    }
                    println!(
                        "{:<32}  {:>3}  {:>8}  {}",
                        k.owner,
                        k.version,
                        age,
                        note.trim()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
    };
    app.close();
    result
}

fn print_rotation(r: &keys::TenantRotation, json: bool) -> Result<(), Failure> {
    if json {
        print_json(r)?;
    } else {
        println!(
            "tenant {} re-encrypted: key version {} -> {}",
            r.tenant, r.old_version, r.new_version
        );
    }
    Ok(())
}
