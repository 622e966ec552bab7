//! `strongroom audit verify|export|checkpoints`.

use super::{load_config, print_json, Cli, Failure};
use crate::audit::evidence::Evidence;
use crate::audit::export::ExportFormat;
use crate::audit::ops::{self, FileReport};
use crate::tenants::TenantId;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Walk hash chains and checkpoints, and check every page; non-zero exit on any problem.
    /// Without --tenant or --system, verifies everything (as --all).
    Verify {
        #[arg(long, conflicts_with_all = ["all", "system"])]
        tenant: Option<String>,
        /// system.db and every tenant.
        #[arg(long)]
        all: bool,
        /// Only the system journal.
        #[arg(long, conflicts_with = "all")]
        system: bool,
        /// Also check that every journal extends the heads in this witness file (as
        /// `audit witness` writes them). Default: the witness the installation keeps
        /// (audit.witness_path), when it exists.
        #[arg(long, value_name = "FILE")]
        witness: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write the signed head of every journal (NDJSON) to FILE, to keep somewhere else:
    /// `audit verify --witness FILE` later proves that no journal went back in time.
    Witness {
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Stream a journal's entries with their hashes to stdout.
    Export {
        #[arg(long, required_unless_present = "system")]
        tenant: Option<String>,
        /// Export the system journal instead of a tenant's.
        #[arg(long, conflicts_with = "tenant")]
        system: bool,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        /// First sequence number to export (1 to 9223372036854775807).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
        since: u64,
    },
    /// Print a journal's signed checkpoints (NDJSON), with the public key that verifies them.
    Checkpoints {
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let tenant_arg = match cmd {
        Command::Verify { tenant, .. }
        | Command::Export { tenant, .. }
        | Command::Checkpoints { tenant } => tenant.as_deref().map(TenantId::parse).transpose()?,
        Command::Witness { .. } => None,
    };
    // Evidence is read without a lock, a writer or a migration: nothing here writes.
    let loaded = load_config(cli)?;
    super::logging::init_cli();
    let dir = super::data_dir(cli, &loaded, false);
    let app = Evidence::open(&loaded.config, &dir)?;
    let result = match cmd {
        Command::Verify {
            system,
            json,
            witness,
            ..
        } => {
            let reports = match (&tenant_arg, system) {
                (Some(id), _) => Ok(vec![ops::verify_tenant(&app, id)?]),
                (None, true) => Ok(vec![ops::verify_system(&app)]),
                (None, false) => ops::verify_all(&app),
            };
            let kept = crate::app::witness_path(app.config(), app.data_dir());
            let witness_file = match witness {
                Some(w) if !w.exists() => {
                    return Err(Failure::new(
                        "AUD-0103",
                        format!("witness {} does not exist", w.display()),
                    ))
                }
                Some(w) => Some(w.clone()),
                None => kept.exists().then_some(kept),
            };
            let only: Option<Vec<String>> = match (&tenant_arg, system) {
                (Some(id), _) => Some(vec![id.to_string()]),
                (None, true) => Some(vec!["system".into()]),
                (None, false) => None,
            };
            let witnessed = witness_file
                .map(|w| ops::check_witness(&app, &w, only.as_deref()))
                .transpose()?;
            reports.map_err(Failure::from).and_then(|reports| {
                let all_ok = reports.iter().all(FileReport::ok)
                    && witnessed.as_ref().is_none_or(ops::WitnessReport::ok);
                if *json {
                    print_json(&serde_json::json!({
                        "ok": all_ok, "files": reports, "witness": witnessed,
                    }))?;
                } else {
                    reports.iter().for_each(print_report);
                    if let Some(w) = &witnessed {
                        print_witness(w);
                    }
                }
                Ok(if all_ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        Command::Export { format, since, .. } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            ops::export_journal(&app, tenant_arg.as_ref(), *format, *since, &mut out)
                .map_err(Failure::from)
                .and_then(|_| {
                    out.flush()
                        .map_err(|e| Failure::new("CLI-0005", format!("cannot write: {e}")))
                })
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Witness { out } => {
            // The kept witness only moves forward, under its lock, from heads that were
            // checked; writing over it here could make an older journal the new baseline.
            let kept = crate::app::witness_path(app.config(), app.data_dir());
            let same = |a: &std::path::Path, b: &std::path::Path| {
                std::fs::canonicalize(a)
                    .ok()
                    .zip(std::fs::canonicalize(b).ok())
                    .is_some_and(|(x, y)| x == y)
                    || a == b
            };
            if same(out, &kept) {
                return Err(Failure::new(
                    "AUD-0104",
                    format!(
                        "{} is the witness this installation keeps (audit.witness_path); write the copy to keep elsewhere to another file",
                        out.display()
                    ),
                ));
            }
            let now = crate::clock::Clock::now_us(&crate::clock::SystemClock);
            let heads = ops::witness_heads(&app, now)?;
            crate::audit::witness::write(out, &heads)?;
            eprintln!(
                "wrote the heads of {} journals to {}; keep it away from this machine",
                heads.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoints { .. } => ops::checkpoints(&app, tenant_arg.as_ref())
            .map_err(Failure::from)
            .and_then(|list| {
                for cp in list {
                    let line = serde_json::to_string(&cp)
                        .map_err(|e| Failure::new("CLI-0001", e.to_string()))?;
                    println!("{line}");
                }
                Ok(ExitCode::SUCCESS)
            }),
    };
    drop(app);
    result
}

fn print_witness(w: &ops::WitnessReport) {
    let verdict = if w.ok() { "OK  " } else { "FAIL" };
    println!(
        "{verdict}  witness {}: {} heads checked",
        w.path.display(),
        w.checked
    );
    for p in &w.problems {
        println!("      {p}");
    }
}

fn print_report(r: &FileReport) {
    let verdict = if r.ok() { "OK  " } else { "FAIL" };
    let mut line = format!("{verdict}  {}", r.label);
    if let Some(c) = &r.chain {
        line.push_str(&format!(
            ": {} entries, {} checkpoints, signed up to {}",
            c.entries, c.checkpoints, c.last_checkpoint_seq
        ));
        if c.unsigned_tail > 0 {
            line.push_str(&format!(" ({} not yet signed)", c.unsigned_tail));
        }
    }
    println!("{line}");
    if let Some(c) = &r.chain {
        if let Some(p) = &c.problem {
            println!(
                "      first bad entry: {} ({}): {}",
                p.seq,
                p.kind.as_str(),
                p.detail
            );
        }
    }
    for p in &r.integrity {
        println!("      page check: {p}");
    }
    if let Some(e) = &r.error {
        println!("      {e}");
    }
    for c in &r.cross {
        println!("      cross-check: {c}");
    }
}
