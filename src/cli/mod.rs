//! The operator CLI: a second door onto the same domain functions as the web server.
//! One file per subcommand; each has a `run` that parses nothing itself and calls the domain.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod assistant;
mod audit;
mod backup;
mod bench;
mod bench_auth;
mod bench_gateway;
mod bench_knowledge;
mod bench_load;
mod bench_redact;
mod config;
mod doctor;
mod init;
mod keys;
mod knowledge;
mod logging;
mod redact;
mod serve;
mod tenant;
mod token;
mod user;

use crate::config::Loaded;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Strongroom: AI assistance over your own operational data, on your own hardware.
#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (system.db, tenants/, root.key, tls/).
    /// Default: /var/lib/strongroom, or ./strongroom-data with `serve --dev`.
    #[arg(long, global = true, env = "STRONGROOM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Configuration file. Default: /etc/strongroom/config.toml if it exists.
    #[arg(long, global = true, env = "STRONGROOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: root key file (0600), system.db, self-signed certificate.
    Init(init::Args),
    /// Create, list, suspend, resume and delete tenants.
    #[command(subcommand)]
    Tenant(tenant::Command),
    /// Accounts of a tenant (--tenant ID) or of the platform (--platform).
    #[command(subcommand)]
    User(user::Command),
    /// API tokens of a tenant: create, list, revoke.
    #[command(subcommand)]
    Token(token::Command),
    /// A tenant's documents: add, list, remove, search.
    #[command(subcommand)]
    Knowledge(knowledge::Command),
    /// A tenant's assistant policy: model, endpoints, egress, grounding, retention.
    #[command(subcommand)]
    Assistant(assistant::Command),
    /// Find personal data and secrets in NDJSON on stdin (`{"id", "text"}` per line); prints
    /// one line per input with the spans found (code-point offsets) and their kinds.
    Redact(redact::Args),
    /// Verify and export the audit journals.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Encrypted backups: create, verify, restore.
    #[command(subcommand)]
    Backup(backup::Command),
    /// Rotate keys and show their ages.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Serve HTTPS.
    Serve(serve::Args),
    /// Check or show the effective configuration.
    #[command(subcommand)]
    Config(config::Command),
    /// Check the installation: modes, keys, tenant files, journals, disk, certificate, clock.
    Doctor(doctor::Args),
    /// Measure throughput (prints JSON lines).
    #[command(subcommand)]
    Bench(bench::Command),
}

/// A failure as the operator sees it: a message that names the fix, and a stable code.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

/// Every domain error reaches the operator the same way: its message and its code.
impl<E: crate::error::DomainError> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Runs the parsed command line; the exit code is non-zero on any failure.
pub fn run(cli: Cli) -> ExitCode {
    // Everything Strongroom writes (stores, keys, archives, exports, rolled logs) is for its
    // own user only, whatever umask the shell or the container runtime handed down. Files
    // that must be shared are widened explicitly.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let result = match cli.command {
        Command::Init(ref a) => init::run(&cli, a),
        Command::Tenant(ref c) => tenant::run(&cli, c),
        Command::User(ref c) => user::run(&cli, c),
        Command::Token(ref c) => token::run(&cli, c),
        Command::Knowledge(ref c) => knowledge::run(&cli, c),
        Command::Assistant(ref c) => assistant::run(&cli, c),
        Command::Redact(ref a) => redact::run(&cli, a),
        Command::Audit(ref c) => audit::run(&cli, c),
        Command::Keys(ref c) => keys::run(&cli, c),
        Command::Backup(ref c) => backup::run(&cli, c),
        Command::Serve(ref a) => serve::run(&cli, a),
        Command::Config(ref c) => config::run(&cli, c),
        Command::Bench(ref c) => bench::run(&cli, c),
        Command::Doctor(ref a) => doctor::run(&cli, a),
    };
    if result.is_ok() && changes_people(&cli.command) {
        announce_identity_change(&cli);
    }
    hand_back(&cli);
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {} [{}]", f.message, f.code);
            ExitCode::FAILURE
        }
    }
}

/// Root may administer a packaged install directly (it can read the key file); what it created
/// in the service user's data directory must then belong to that user, or the service could
/// not open it. Runs after the command, whatever its outcome.
fn hand_back(cli: &Cli) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    // The same configuration the command used: `serve --dev` ignores the system-wide file.
    let dev = matches!(&cli.command, Command::Serve(a) if a.dev);
    let Ok(loaded) = load_config_for(cli, dev) else {
        return;
    };
    let dir = data_dir(cli, &loaded, dev);
    // Nothing was created in what is not a directory; the command said what is wrong.
    if !dir.is_dir() {
        return;
    }
    if let Err(e) = crate::fsutil::hand_back_to_owner(&dir) {
        eprintln!(
            "warning: cannot give files in {} back to the data directory's owner: {e}; \
             `strongroom doctor` lists them",
            dir.display()
        );
    }
    // The witness lives outside the data directory on a packaged install.
    let witness = crate::app::witness_path(&loaded.config, &dir);
    let mut lock = witness.clone().into_os_string();
    lock.push(".lock");
    for file in [witness, std::path::PathBuf::from(lock)] {
        if let Err(e) = crate::fsutil::hand_back_file(&dir, &file) {
            eprintln!(
                "warning: cannot give {} back to the data directory's owner: {e}",
                file.display()
            );
        }
    }
}

/// Loads defaults < file < environment for this invocation.
fn load_config(cli: &Cli) -> Result<Loaded, Failure> {
    load_config_for(cli, false)
}

/// As [`load_config`]; with `dev` (`serve --dev`), the system-wide file is ignored unless
/// `--config` names it, so development never lands on an installed service's data.
fn load_config_for(cli: &Cli, dev: bool) -> Result<Loaded, Failure> {
    Ok(crate::config::load_with(
        cli.config.as_deref(),
        !dev,
        crate::config::environment(std::env::vars_os())?,
    )?)
}

/// Whether a command may have taken power away from someone (a disabled account, a new
/// role, a revoked token, a suspended tenant) or changed a tenant's rules for calls to
/// models (its assistant policy, redaction rules, limits): a running server must stop
/// trusting what it remembers. A restore does both: the accounts, tokens and rules are
/// the archive's again.
fn changes_people(command: &Command) -> bool {
    match command {
        Command::Backup(c) => matches!(c, backup::Command::Restore { .. }),
        Command::User(c) => !matches!(c, user::Command::List { .. }),
        Command::Token(c) => !matches!(c, token::Command::List { .. }),
        Command::Tenant(c) => !matches!(c, tenant::Command::List { .. }),
        // Each of these shows the rules or changes them; a show costs the server no more
        // than reading again what it remembered.
        Command::Assistant(_) => true,
        _ => false,
    }
}

/// Tells a running server that identities changed (see [`crate::app::IDENTITY_EPOCH`]).
fn announce_identity_change(cli: &Cli) {
    let Ok(loaded) = load_config(cli) else {
        return;
    };
    let dir = data_dir(cli, &loaded, false);
    if let Err(e) = crate::app::bump_identity_epoch(&dir) {
        // The change is made; the server sees it at its next revalidation at the latest.
        tracing::warn!(error = %e, "cannot tell a running server that identities changed");
    }
}

/// `--data-dir` / `STRONGROOM_DATA_DIR`, else `data_dir` from the file, else the default.
fn data_dir(cli: &Cli, loaded: &Loaded, dev: bool) -> PathBuf {
    cli.data_dir
        .clone()
        .or_else(|| loaded.config.data_dir.clone())
        .unwrap_or_else(|| {
            PathBuf::from(if dev {
                "./strongroom-data"
            } else {
                "/var/lib/strongroom"
            })
        })
}

/// Opens the installation for a one-shot command, with warnings logged to stderr.
fn open_app(cli: &Cli) -> Result<crate::app::App, Failure> {
    let loaded = load_config(cli)?;
    logging::init_cli();
    let dir = data_dir(cli, &loaded, false);
    Ok(crate::app::App::open(&loaded.config, &dir)?)
}

/// Opens the installation, runs `f` in one tenant as the operator, and closes the
/// installation cleanly whatever `f` returned.
fn as_operator<T>(
    cli: &Cli,
    tenant: &crate::ids::TenantId,
    f: impl FnOnce(&crate::app::App, crate::door::TenantCtx) -> Result<T, Failure>,
) -> Result<T, Failure> {
    use crate::identity::{Caller, Realm};
    let app = std::sync::Arc::new(open_app(cli)?);
    let result = crate::door::open_blocking(&app, tenant, Caller::operator(Realm::Tenant), None)
        .map_err(Failure::from)
        .and_then(|ctx| f(&app, ctx));
    if let Ok(app) = std::sync::Arc::try_unwrap(app) {
        app.close();
    }
    result
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new("CLI-0001", format!("cannot encode output: {e}")))?;
    println!("{text}");
    Ok(())
}
