//! `strongroom tenant create|list|suspend|resume|delete`.

use super::{open_app, print_json, Cli, Failure};
use crate::audit::Actor;
use crate::tenants::{self, TenantId};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a tenant with its own encrypted file and key; prints the new id alone.
    Create {
        name: String,
        /// Data-residency region label, e.g. eu-central.
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        /// Include deleted tenants.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant.
    Suspend {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Resume a suspended tenant.
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant for good: its key is destroyed (crypto-shredding) and its file removed.
    Delete {
        id: String,
        /// Delete without asking. Without it, the command asks on a terminal and refuses
        /// anywhere else.
        #[arg(long)]
        yes: bool,
        /// Also rotate the root key in the same operation, so that old copies of system.db
        /// or archives kept elsewhere cannot unwrap the tenant's key without the old root
        /// key (destroy that, and archives made before, for the shred to be complete).
        /// Needs the server stopped, like `keys rotate-root`.
        #[arg(long)]
        rotate_root: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    // Parse ids before touching any file, so a typo fails fast and changes nothing.
    let parse = |s: &str| TenantId::parse(s).map_err(Failure::from);
    let app = open_app(cli)?;
    let actor = Actor::cli();
    let result = (|| -> Result<(), Failure> {
        match cmd {
            Command::Create { name, region, json } => {
                let t = tenants::create(&app, &actor, name, region.as_deref())?;
                if *json {
                    print_json(&t)?;
                } else {
                    println!("{}", t.id);
                }
            }
            Command::List { all, json } => {
                let list = tenants::list(&app, *all)?;
                if *json {
                    print_json(&list)?;
                } else {
                    println!(
                        "{:<32}  {:<10}  {:<12}  {:>3}  {:<20}  NAME",
                        "ID", "STATUS", "REGION", "KEY", "CREATED"
                    );
                    for t in list {
                        let created = crate::clock::format_rfc3339(t.created_us);
                        println!(
                            "{:<32}  {:<10}  {:<12}  {:>3}  {:<20}  {}",
                            t.id,
                            t.status.as_str(),
                            t.region.as_deref().unwrap_or("-"),
                            t.key_version,
                            &created[..created.len().min(19)],
                            t.name
                        );
                    }
                }
            }
            Command::Suspend { id, json } | Command::Resume { id, json } => {
                let active = matches!(cmd, Command::Resume { .. });
                let t = tenants::set_active(&app, &actor, &parse(id)?, active)?;
                if *json {
                    print_json(&t)?;
                } else {
                    println!("{} {}", t.id, t.status.as_str());
                }
            }
            Command::Delete {
                id,
                yes,
                rotate_root,
                json,
            } => {
                let id = parse(id)?;
                let t = tenants::get(&app, &id)?;
                // Checked before anything is deleted: with --rotate-root, both happen or,
                // if the rotation cannot run at all, neither.
                if *rotate_root {
                    crate::keys::ready_to_rotate_root(&app)?;
                }
                if !yes && !std::io::stdin().is_terminal() {
                    // A shred cannot be undone: a script, a cron job or `ssh host cmd` that
                    // never saw the question must say so itself.
                    return Err(Failure::new(
                        "CLI-0003",
                        "not deleted: nobody confirmed (standard input is not a terminal); \
                         add --yes to delete without asking",
                    ));
                }
                if !yes && !confirm(&t)? {
                    return Err(Failure::new(
                        "CLI-0003",
                        "not deleted: confirmation did not match",
                    ));
                }
                tenants::delete(&app, &actor, &id)?;
                let rotated = if *rotate_root {
                    Some(crate::keys::rotate_root(&app, &actor).map_err(|e| {
                        Failure::new(
                            e.code(),
                            format!(
                                "tenant {id} is deleted, but the root-key rotation failed: {e}; \
                                 run `strongroom keys rotate-root`"
                            ),
                        )
                    })?)
                } else {
                    None
                };
                if *json {
                    print_json(&serde_json::json!({
                        "id": id, "status": "deleted", "root_rotation": rotated,
                    }))?;
                } else if let Some(r) = rotated {
                    println!(
                        "{id} deleted; root key rotated from {} to {}",
                        r.old_root_key_id, r.new_root_key_id
                    );
                } else {
                    println!("{id} deleted");
                }
            }
        }
        Ok(())
    })();
    app.close();
    result.map(|()| ExitCode::SUCCESS)
}

fn confirm(t: &tenants::Tenant) -> Result<bool, Failure> {
    eprint!(
        "Deleting tenant {:?} destroys its key; its data cannot be recovered.\nType the tenant id to confirm: ",
        t.name
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new("CLI-0004", format!("cannot read confirmation: {e}")))?;
    Ok(line.trim() == t.id.as_str())
}
