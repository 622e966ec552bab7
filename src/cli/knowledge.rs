//! `strongroom knowledge add|list|remove|search`: a tenant's documents, as the operator.

use super::{open_app, print_json, Cli, Failure};
use crate::door;
use crate::identity::{Caller, Realm};
use crate::ids::{DocumentId, TenantId};
use crate::knowledge::library::{self, Document};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add files (text, Markdown, HTML, PDF, CSV, JSON); prints one document id per file. A file named like
    /// a document already there becomes its new version.
    Add {
        #[arg(long, value_name = "ID")]
        tenant: String,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List documents.
    List {
        #[arg(long, value_name = "ID")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a document with every version and passage.
    Remove {
        #[arg(long, value_name = "ID")]
        tenant: String,
        doc_id: String,
    },
    /// Search the passages; with --json one object per line, best first.
    Search {
        #[arg(long, value_name = "ID")]
        tenant: String,
        query: String,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Only this document.
        #[arg(long, value_name = "DOC_ID")]
        document: Option<String>,
        /// Only documents of this type: text, markdown, html, pdf, csv or json.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only versions added on or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only versions added before this date.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// A file's bytes, refusing what cannot be a document before reading it whole.
fn read(path: &PathBuf) -> Result<(String, Vec<u8>), Failure> {
    let shown = path.display();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::new("KNW-0005", format!("{shown}: the file name is not UTF-8")))?
        .to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::new("KNW-0009", format!("cannot read {shown}: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(Failure::new("KNW-0009", format!("{shown} is not a file")));
    }
    if meta.len() > library::MAX_BYTES as u64 {
        return Err(library::KnowledgeError::TooLarge {
            name,
            limit: library::MAX_BYTES,
        }
        .into());
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::new("KNW-0009", format!("cannot read {shown}: {}", e.kind())))?;
    Ok((name, bytes))
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let (Command::Add { tenant, .. }
    | Command::List { tenant, .. }
    | Command::Remove { tenant, .. }
    | Command::Search { tenant, .. }) = cmd;
    let tenant = TenantId::parse(tenant)?;
    let doc = match cmd {
        Command::Remove { doc_id, .. } => Some(DocumentId::parse(doc_id)?),
        _ => None,
    };
    let filter = match cmd {
        Command::Search {
            document,
            kind,
            since,
            until,
            ..
        } => library::Filter::parse(
            document.as_deref(),
            kind.as_deref(),
            since.as_deref(),
            until.as_deref(),
        )?,
        _ => library::Filter::default(),
    };
    let app = Arc::new(open_app(cli)?);
    let result = door::open_blocking(&app, &tenant, Caller::operator(Realm::Tenant), None)
        .map_err(Failure::from)
        .and_then(|ctx| -> Result<ExitCode, Failure> {
            match cmd {
                Command::Add { files, json, .. } => {
                    let bar = progress(files.len() as u64);
                    let mut failed = 0;
                    for path in files {
                        let added = read(path).and_then(|(name, bytes)| {
                            library::add_blocking(&ctx, &name, &bytes).map_err(Failure::from)
                        });
                        bar.inc(1);
                        match added {
                            Ok(a) if *json => {
                                println!("{}", serde_json::to_string(&a).unwrap_or_default())
                            }
                            Ok(a) => println!("{}", a.id),
                            Err(f) => {
                                failed += 1;
                                bar.suspend(|| eprintln!("error: {} [{}]", f.message, f.code));
                            }
                        }
                    }
                    bar.finish_and_clear();
                    if failed > 0 {
                        return Err(Failure::new(
                            "KNW-0010",
                            format!("{failed} of {} files were not added", files.len()),
                        ));
                    }
                }
                Command::List { json, .. } => {
                    let list = library::list_blocking(&ctx)?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        print_table(&list);
                    }
                }
                Command::Remove { .. } => {
                    if let Some(id) = &doc {
                        library::remove_blocking(&ctx, id)?;
                        println!("removed {id}");
                    }
                }
                Command::Search {
                    query, limit, json, ..
                } => {
                    let hits = library::search_blocking(&ctx, query, &filter, usize::from(*limit))?;
                    for h in &hits {
                        if *json {
                            println!("{}", serde_json::to_string(h).unwrap_or_default());
                        } else {
                            println!(
                                "{:>7.3}  {}  {}\n         {}",
                                h.score,
                                h.citation,
                                h.document,
                                crate::text::one_line(&h.snippet)
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        });
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    result
}

/// A bar on stderr when it is a terminal; hidden otherwise (scripts read stdout).
fn progress(n: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n);
    if let Ok(style) = indicatif::ProgressStyle::with_template("adding [{bar:40}] {pos}/{len}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn print_table(list: &[Document]) {
    println!(
        "{:<32}  {:>8}  {:>9}  {:>10}  NAME",
        "ID", "VERSIONS", "PASSAGES", "BYTES"
    );
    for d in list {
        println!(
            "{:<32}  {:>8}  {:>9}  {:>10}  {}",
            d.id, d.versions, d.passages, d.latest_bytes, d.name
        );
    }
}
