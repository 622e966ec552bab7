//! `strongroom doctor [--quick] [--json]`: exits non-zero when any check fails.

use super::{open_app, print_json, Cli, Failure};
use crate::doctor::{self, Status};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check journals against their newest checkpoint instead of walking them, and skip the
    /// page scan.
    #[arg(long)]
    quick: bool,
    /// Remove files under tenants/ that no live tenant owns (left by an interrupted create
    /// or delete) before checking. Everything else doctor only reports.
    #[arg(long)]
    fix: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode, Failure> {
    if args.fix {
        // The one change doctor makes, and only when asked: through the writing door.
        let app = open_app(cli)?;
        let n = crate::tenants::remove_leftovers(&app);
        app.close();
        eprintln!("removed {n} leftover files");
    }
    let loaded = super::load_config(cli)?;
    super::logging::init_cli();
    let dir = super::data_dir(cli, &loaded, false);
    let ev = crate::audit::evidence::Evidence::open(&loaded.config, &dir)?;
    let now = crate::clock::Clock::now_us(&crate::clock::SystemClock) / 1_000_000;
    let checks = doctor::run(&ev, args.quick, now);
    drop(ev);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        print_json(&serde_json::json!({ "ok": !failed, "checks": checks }))?;
    } else {
        println!("{:<14}  {:<6}  DETAIL", "CHECK", "STATUS");
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{:<14}  {:<6}  {}", c.name, status, c.detail);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
