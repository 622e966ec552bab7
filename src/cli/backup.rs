//! `strongroom backup create|verify|restore`.

use super::{data_dir, load_config, open_app, print_json, Cli, Failure};
use crate::audit::Actor;
use crate::backup::{self, Opening, Scope, Sealing};
use crate::keyring::Keyring;
use crate::tenants::TenantId;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a consistent, encrypted archive of the installation (safe while the server runs).
    Create {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Only this tenant (system.db comes along: it holds the tenant's key).
        #[arg(long, conflicts_with = "all")]
        tenant: Option<String>,
        /// Every tenant (the default).
        #[arg(long)]
        all: bool,
        /// Seal with a passphrase instead of the root key. The archive then carries the root
        /// key, so it restores with the passphrase alone.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check every chunk, every member's hash and every audit chain, without restoring.
    Verify {
        file: PathBuf,
        #[arg(long, value_name = "FILE", conflicts_with = "passphrase_file")]
        root_key_file: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Where to unpack the archive while checking it (it needs the archive's size in
        /// free space; removed afterwards). Default: $TMPDIR, else /tmp.
        #[arg(long, value_name = "DIR")]
        staging_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Restore an archive into --data-dir (refuses live data unless --force). With --tenant,
    /// restore that one tenant into the installation already there.
    Restore {
        file: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_name = "FILE", conflicts_with = "passphrase_file")]
        root_key_file: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Replace an existing installation (it is moved aside into pre-restore-*/).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

/// The root key for opening an archive: the given file, else the installation's own.
fn root_keyring(cli: &Cli, file: Option<&Path>) -> Result<Keyring, Failure> {
    let (key, source) = match file {
        Some(f) => crate::keyring::load_root_key(None, f)?,
        None => {
            let loaded = load_config(cli)?;
            let dir = data_dir(cli, &loaded, false);
            crate::keyring::load_root_key(
                crate::app::credentials_dir().as_deref(),
                &crate::app::root_key_file(&loaded.config, &dir),
            )?
        }
    };
    Ok(Keyring::new(key, source)?)
}

/// What opens an archive: the passphrase file if one is given, else a root key (the given
/// file, or the installation's own). `slot` keeps that keyring alive as long as the opening.
fn opening<'k>(
    cli: &Cli,
    passphrase_file: Option<&Path>,
    root_key_file: Option<&Path>,
    slot: &'k mut Option<Keyring>,
) -> Result<Opening<'k>, Failure> {
    match passphrase_file {
        Some(p) => Ok(Opening::Passphrase(backup::read_passphrase(p)?)),
        None => Ok(Opening::Root(
            slot.insert(root_keyring(cli, root_key_file)?),
        )),
    }
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    match cmd {
        Command::Create {
            out,
            tenant,
            passphrase_file,
            json,
            ..
        } => {
            let scope = match tenant {
                Some(t) => Scope::Tenant(TenantId::parse(t)?),
                None => Scope::All,
            };
            let sealing = match passphrase_file {
                Some(p) => Sealing::Passphrase(backup::read_passphrase(p)?),
                None => Sealing::Root,
            };
            let app = open_app(cli)?;
            let r = with_bar("writing", |progress| {
                backup::create(&app, &Actor::cli(), out, &scope, &sealing, progress)
            });
            app.close();
            let m = r?;
            if *json {
                print_json(&m)?;
            } else {
                let bytes: u64 = m.members.iter().map(|m| m.size).sum();
                println!(
                    "wrote {}: {} tenants, {} members, {} bytes before encryption",
                    out.display(),
                    m.tenants.len(),
                    m.members.len(),
                    bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            file,
            root_key_file,
            passphrase_file,
            staging_dir,
            json,
        } => {
            super::logging::init_cli();
            let staging_parent = staging_dir.clone().unwrap_or_else(std::env::temp_dir);
            if !staging_parent.is_dir() {
                return Err(Failure::new(
                    "BAK-0109",
                    format!(
                        "staging directory {} does not exist; create it or pass another with \
                         --staging-dir",
                        staging_parent.display()
                    ),
                ));
            }
            let mut slot = None;
            let opening = opening(
                cli,
                passphrase_file.as_deref(),
                root_key_file.as_deref(),
                &mut slot,
            )?;
            let unpacked = with_bar("checking", |progress| {
                backup::unpack(file, opening, &staging_parent, progress)
            });
            let unpacked = unpacked?;
            let report = backup::check_unpacked(&unpacked)?;
            if *json {
                print_json(&report)?;
            } else {
                println!(
                    "{}  {}: {} members, {} bytes, {} journals",
                    if report.ok { "OK  " } else { "FAIL" },
                    file.display(),
                    report.members,
                    report.bytes,
                    report.files.len()
                );
                for f in report.files.iter().filter(|f| !f.ok()) {
                    let why = f
                        .error
                        .clone()
                        .or_else(|| f.integrity.first().cloned())
                        .or_else(|| {
                            f.chain.as_ref().and_then(|c| c.problem.as_ref()).map(|p| {
                                format!("entry {} {}: {}", p.seq, p.kind.as_str(), p.detail)
                            })
                        })
                        .unwrap_or_default();
                    println!("      {}: {why}", f.label);
                }
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Restore {
            file,
            tenant: Some(tenant),
            root_key_file,
            passphrase_file,
            force,
            json,
        } => {
            let id = TenantId::parse(tenant)?;
            let mut slot = None;
            let opening = opening(
                cli,
                passphrase_file.as_deref(),
                root_key_file.as_deref(),
                &mut slot,
            )?;
            let app = open_app(cli)?;
            let options = restore_options(opening, *force);
            let r = with_bar("restoring", |progress| {
                backup::restore_tenant(&app, file, &id, options, &Actor::cli(), progress)
            });
            app.close();
            let r = r?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "restored tenant {} (key version {})",
                    r.tenant, r.key_version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            file,
            tenant: None,
            root_key_file,
            passphrase_file,
            force,
            json,
        } => {
            let loaded = load_config(cli)?;
            super::logging::init_cli();
            let dir = data_dir(cli, &loaded, false);
            let mut slot = None;
            let opening = opening(
                cli,
                passphrase_file.as_deref(),
                root_key_file.as_deref(),
                &mut slot,
            )?;
            let options = restore_options(opening, *force);
            let r = with_bar("restoring", |progress| {
                backup::restore(file, &dir, &loaded.config, options, &Actor::cli(), progress)
            });
            let r = r?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "restored {} tenants into {}",
                    r.tenants,
                    r.data_dir.display()
                );
                if let Some(a) = &r.moved_aside {
                    println!("the previous data is in {}", a.display());
                }
                if r.wrote_root_key {
                    println!("the root key was written to the configured key file");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `work` with a progress bar labelled `label` (on a terminal only).
fn with_bar<T>(label: &'static str, work: impl FnOnce(backup::Progress<'_>) -> T) -> T {
    let bar = Bar::new(label);
    let out = work(&|done, total| bar.set(done, total));
    bar.finish();
    out
}

/// Restore options as the CLI gives them: the root key goes to the configured key file.
fn restore_options(opening: Opening<'_>, force: bool) -> backup::RestoreOptions<'_> {
    backup::RestoreOptions {
        opening,
        root_key_out: None,
        force,
    }
}

/// A progress bar on stderr when it is a terminal; nothing at all otherwise (scripts, CI).
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(what: &'static str) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        Self(Some(bar))
    }

    fn set(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
