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
    /// Create no platform owner (and print no one-time password): for an installer whose
    /// output goes to logs. Create one later with `user create --platform`.
    #[arg(long)]
    no_owner: bool,
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
    if args.no_owner {
        return Ok(ExitCode::SUCCESS);
    }
    let app = std::sync::Arc::new(App::open(&loaded.config, &dir)?);
    let owner = first_owner(&app, None);
    if let Ok(app) = std::sync::Arc::try_unwrap(app) {
        app.close();
    }
    print_first_owner(&loaded.config, &owner?);
    Ok(ExitCode::SUCCESS)
}

/// An account made at first start, with its one-time password.
pub struct FirstOwner {
    pub email: &'static str,
    pub tenant: Option<crate::ids::TenantId>,
    pub password: crate::identity::Password,
}

/// Creates the platform owner `owner@localhost` (with `tenant`, that tenant's owner
/// `owner@<tenant-name>.localhost` instead).
///
/// # Errors
/// A storage fault, or the account exists already.
pub fn first_owner(
    app: &std::sync::Arc<App>,
    tenant: Option<(&crate::ids::TenantId, &'static str)>,
) -> Result<FirstOwner, Failure> {
    use crate::identity::{accounts, Caller, Realm};
    let (email, realm) = match tenant {
        Some((_, email)) => (email, Realm::Tenant),
        None => ("owner@localhost", Realm::Platform),
    };
    let input = accounts::NewAccount {
        email: email.to_string(),
        name: Some("Owner".into()),
        role: "owner".into(),
    };
    let caller = Caller::system(realm);
    let (_, password) = match tenant {
        Some((id, _)) => {
            let ctx = crate::door::open_blocking(app, id, caller, None)?;
            accounts::create_blocking(&ctx, app.directory(), &input)?
        }
        None => {
            let ctx = crate::door::platform(app, caller, None);
            accounts::create_blocking(&ctx, app.directory(), &input)?
        }
    };
    Ok(FirstOwner {
        email,
        tenant: tenant.map(|(id, _)| id.clone()),
        password,
    })
}

/// Shows a first owner's one-time password once, on stderr (stdout may be a log or a pipe
/// into another tool), with where to sign in.
pub fn print_first_owner(config: &crate::config::Config, owner: &FirstOwner) {
    let host = match config.listen_addr() {
        Ok(a) if !a.ip().is_unspecified() => a.to_string(),
        Ok(a) => format!("localhost:{}", a.port()),
        Err(_) => config.server.listen.clone(),
    };
    let whose = match &owner.tenant {
        Some(id) => format!("Owner of tenant {id}"),
        None => "Platform owner".to_string(),
    };
    eprintln!(
        "{whose}: {}\n  one-time password: {}\n  (shown once; it must be changed at first sign-in)\n  sign in at https://{host}/login",
        owner.email,
        owner.password.expose()
    );
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
