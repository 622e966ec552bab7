//! `strongroom init`: a new data directory with its root key, system.db and certificate.

use super::{data_dir, load_config, print_json, Cli, Failure};
use crate::app::App;
use crate::audit::Actor;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what was created as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode, Failure> {
    let loaded = load_config(cli)?;
    super::logging::init_cli();
    let dir = data_dir(cli, &loaded, false);
    let report = initialize(&loaded.config, &dir)?;
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates the data directory and the self-signed certificate; shared with `serve --dev`.
pub fn initialize(
    config: &crate::config::Config,
    dir: &std::path::Path,
) -> Result<crate::app::InitReport, Failure> {
    let report = App::init(config, dir, &Actor::cli())?;
    crate::web::tls::ensure_self_signed(dir)?;
    Ok(report)
}

pub fn print_report(report: &crate::app::InitReport) {
    println!("Initialized {}", report.data_dir.display());
    println!(
        "  root key:    {} (id {})",
        report.root_key, report.root_key_id
    );
    println!(
        "  certificate: {} (self-signed)",
        report.data_dir.join("tls/cert.pem").display()
    );
    if report.created_key_file {
        println!(
            "Keep a copy of the root key apart from the data: without it nothing here can be read."
        );
    }
}
