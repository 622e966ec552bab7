//! `strongroom bench audit`: durable append and verify throughput, one JSON line per figure:
//! `{"figure": "...", "value": N, "unit": "..."}`. Every loop is bounded in count and time.
//! Runs in a fresh temporary data directory with an ephemeral root key, removed afterwards.

use super::{Cli, Failure};
use crate::app::App;
use crate::audit::verify::{verify_chain_parallel, TrustedKey};
use crate::audit::{Actor, JournalConfig, NewEntry};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::keyring::{Key32, Keyring, RootKeySource, Signer};
use crate::store::{self, FileKind, OpenSpec, Store, StoreError};
use crate::tenants::{self, TenantId};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Durable audit appends/s (1 writer, 64 writers, 100 tenants), verify entries/s, and
    /// SQLCipher against plain SQLite on the same workload.
    Audit {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Smaller counts, for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Root-key rotation time with 1,000 tenants.
    Keys {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
    },
    /// Backup create, verify and restore throughput over a data set spread across tenants.
    Backup {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Size of the data set in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        #[arg(long, default_value_t = 100)]
        tenants: usize,
    },
    /// Authenticated GET /api/v1/me over TLS at 1 and 16 connections, and the in-process
    /// check of a token and of a session.
    Auth {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds per load run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The gateway's whole path against an upstream on loopback that answers at once: the
    /// latency it adds at one connection (p50, p99), and requests/s at 16 connections in one
    /// tenant and spread over many, each call audited durably.
    Gateway {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds per load run.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Tenants the spread run's calls go to, each with its own token.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        tenants: u64,
    },
    /// Knowledge: ingest MB/s (Markdown, CSV), search p50/p99 over 100,000 passages, hit@1
    /// and hit@3 on a question set against a plain FTS5 baseline, extractive answer p50/p99.
    Knowledge {
        /// Directory for the temporary data (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The question set: `questions.json` and a `corpus/` folder.
        #[arg(long, default_value = "benches/knowledge")]
        corpus: PathBuf,
        /// Passages in the search index.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..=2_000_000))]
        chunks: u64,
    },
    /// Redaction recall and precision per kind on a labelled corpus, hard negatives flagged,
    /// and MB/s on one core.
    Redact {
        /// The labelled corpus (NDJSON); `python3 tests/redact/corpus.py > FILE` writes one.
        #[arg(long)]
        corpus: PathBuf,
        /// Seconds of the throughput run.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
    },
    /// Appends to a tenant's journal until killed, printing each acknowledged sequence
    /// number on its own line. Used by the crash test.
    #[command(hide = true)]
    AppendLoop {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Stop after this many entries (bounded even if nobody kills it).
        #[arg(long, default_value_t = 1_000_000)]
        max: u64,
    },
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    match cmd {
        Command::Audit { dir, quick } => bench_audit(dir.as_deref(), *quick),
        Command::Keys { dir, tenants } => bench_keys(dir.as_deref(), *tenants),
        Command::Backup { dir, mib, tenants } => bench_backup(dir.as_deref(), *mib, *tenants),
        Command::Auth { dir, seconds } => {
            super::bench_auth::bench_auth(cli, dir.as_deref(), *seconds)
        }
        Command::Gateway {
            dir,
            seconds,
            tenants,
        } => super::bench_gateway::bench_gateway(dir.as_deref(), *seconds, *tenants as usize),
        Command::Knowledge {
            dir,
            corpus,
            chunks,
        } => super::bench_knowledge::bench_knowledge(cli, dir.as_deref(), corpus, *chunks as usize),
        Command::Redact { corpus, seconds } => super::bench_redact::bench_redact(corpus, *seconds),
        Command::AppendLoop {
            tenant,
            threads,
            max,
        } => append_loop(cli, tenant, *threads, *max),
    }
}

/// A fresh temporary directory under `dir` (default: the system temp directory), removed when
/// the benchmark ends.
pub(super) fn work_dir(dir: Option<&Path>) -> Result<tempfile::TempDir, Failure> {
    let base = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("strongroom-bench-")
        .tempdir_in(&base)
        .map_err(|e| Failure::new("BEN-0002", format!("cannot create bench dir: {e}")))
}

pub(super) fn figure(name: &str, value: f64, unit: &str) {
    let v = (value * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({ "figure": name, "value": v, "unit": unit })
    );
}

fn entry(actor: &Actor, n: u64) -> NewEntry {
    NewEntry::new(actor.clone(), "bench.append", "bench").params(serde_json::json!({
        "n": n,
        "note": "benchmark entry with a realistic amount of parameter text"
    }))
}

/// Runs `threads` client threads, each appending `per_thread` entries (or until `limit`),
/// each waiting for its durable acknowledgement; returns (entries, seconds).
fn hammer(
    threads: usize,
    per_thread: u64,
    limit: Duration,
    store_for: impl Fn(usize, u64) -> Arc<Store> + Send + Sync + 'static,
) -> Result<(u64, f64), Failure> {
    let store_for = Arc::new(store_for);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store_for = store_for.clone();
            std::thread::spawn(move || -> Result<u64, StoreError> {
                let mut done = 0;
                while done < per_thread && start.elapsed() < limit {
                    let store = store_for(t, done);
                    store
                        .writer()
                        .change(move |_tx| -> Result<_, StoreError> {
                            Ok(((), entry(&Actor::system(), done)))
                        })
                        .wait()?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| Failure::new("BEN-0001", "a benchmark thread panicked"))??;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

fn bench_audit(dir: Option<&Path>, quick: bool) -> Result<ExitCode, Failure> {
    super::logging::init_cli();
    let work = work_dir(dir)?;
    let scale = if quick { 10 } else { 1 };
    let limit = Duration::from_secs(if quick { 3 } else { 20 });
    let keyring = Arc::new(Keyring::new(Key32::random()?, RootKeySource::Test)?);
    let mut config = Config::default();
    // Checkpoints at their default cadence, so the figure includes signing.
    config.store.max_open_tenants = 200;
    let app = App::with_keyring(
        &config,
        work.path(),
        keyring.clone(),
        Arc::new(SystemClock),
        true,
    )?;
    std::fs::create_dir_all(work.path().join("tenants"))
        .map_err(|e| Failure::new("BEN-0002", e.to_string()))?;
    let actor = Actor::system();
    let app = Arc::new(app);

    // One writer: every append waits for its own fsync.
    let one = tenants::create(&app, &actor, "bench-one", None)?;
    let store = tenants::open_store(&app, &one.id)?;
    let (n, secs) = hammer(1, 3000 / scale, limit, move |_, _| store.clone())?;
    figure("audit_append_1_writer", n as f64 / secs, "appends/s");

    // 64 writers on one tenant: group commit shares each fsync.
    let many = tenants::create(&app, &actor, "bench-64", None)?;
    let store = tenants::open_store(&app, &many.id)?;
    let s2 = store.clone();
    let (n, secs) = hammer(64, 3000 / scale, limit, move |_, _| s2.clone())?;
    figure("audit_append_64_writers", n as f64 / secs, "appends/s");

    // 100 tenants, 64 writers spread over them.
    let mut ids: Vec<TenantId> = Vec::new();
    for i in 0..100 {
        ids.push(tenants::create(&app, &actor, &format!("bench-t{i}"), None)?.id);
    }
    let stores: Vec<Arc<Store>> = ids
        .iter()
        .map(|id| tenants::open_store(&app, id))
        .collect::<Result<_, _>>()?;
    let stores = Arc::new(stores);
    let (n, secs) = hammer(64, 1500 / scale, limit, move |t, i| {
        stores[(t + i as usize * 64) % stores.len()].clone()
    })?;
    figure(
        "audit_append_100_tenants_64_writers",
        n as f64 / secs,
        "appends/s",
    );

    // Verify the big journal.
    let (_, many_keys) = tenants::tenant_keys(&app, &many.id)?;
    let many_path = store::tenants::tenant_path(work.path(), &many.id);
    let verify_spec = OpenSpec {
        path: &many_path,
        label: "bench",
        key: many_keys.dek(),
        key_version: 1,
        kind: FileKind::Tenant,
        create: false,
        busy_timeout: Duration::from_secs(10),
        plaintext: false,
    };
    let conn = store::open_connection(&verify_spec, true)?;
    let keys = [TrustedKey {
        id: app.signer().signing_key_id(),
        public_key: app.signer().signing_public_key(),
    }];
    let start = Instant::now();
    let mut verified = 0u64;
    let mut rounds = 0;
    while rounds < 5 && (rounds == 0 || start.elapsed() < Duration::from_secs(5)) {
        let second = store::open_connection(&verify_spec, true)?;
        let r = verify_chain_parallel(&conn, many.id.as_str(), &keys, second)
            .map_err(|e| Failure::new("BEN-0003", e.to_string()))?;
        if let Some(p) = r.problem {
            return Err(Failure::new(
                "BEN-0003",
                format!("benchmark journal failed to verify: {}", p.detail),
            ));
        }
        verified += r.entries;
        rounds += 1;
    }
    figure(
        "audit_verify",
        verified as f64 / start.elapsed().as_secs_f64(),
        "entries/s",
    );
    figure(
        "audit_verify_journal_size",
        (verified / rounds) as f64,
        "entries",
    );
    drop(conn);

    // The same 64-writer workload on SQLCipher and on plain SQLite.
    let signer = Arc::new(Signer::from_system_dek(&Key32::random()?)?);
    let cipher = cipher_vs_plain(work.path(), &signer, false, scale)?;
    let plain = cipher_vs_plain(work.path(), &signer, true, scale)?;
    figure("sqlcipher_append_64_writers", cipher, "appends/s");
    figure("plain_sqlite_append_64_writers", plain, "appends/s");
    figure("sqlcipher_time_ratio", plain / cipher, "x");

    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    Ok(ExitCode::SUCCESS)
}

fn cipher_vs_plain(
    dir: &Path,
    signer: &Arc<Signer>,
    plaintext: bool,
    scale: u64,
) -> Result<f64, Failure> {
    let path = dir.join(if plaintext { "plain.db" } else { "cipher.db" });
    let key = Key32::random()?;
    let spec = OpenSpec {
        path: &path,
        label: "bench",
        key: &key,
        key_version: 1,
        kind: FileKind::Tenant,
        create: true,
        busy_timeout: Duration::from_secs(10),
        plaintext,
    };
    let journal = JournalConfig {
        journal_id: "bench".into(),
        signer: signer.clone(),
        clock: Arc::new(SystemClock),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        on_checkpoint: None,
    };
    let store = Arc::new(Store::open(&spec, journal)?);
    let s = store.clone();
    let (n, secs) = hammer(64, 3000 / scale, Duration::from_secs(20), move |_, _| {
        s.clone()
    })?;
    drop(store);
    Ok(n as f64 / secs)
}

fn append_loop(cli: &Cli, tenant: &str, threads: usize, max: u64) -> Result<ExitCode, Failure> {
    let id = TenantId::parse(tenant)?;
    let app = Arc::new(super::open_app(cli)?);
    // The same status check as the door: a suspended tenant takes no writes.
    tenants::usable(&app, &id)?;
    let store = tenants::open_store(&app, &id)?;
    let per_thread = max.div_ceil(threads.max(1) as u64);
    // Attributed to the operator who ran it, like every other CLI write.
    let actor = Actor::cli();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (store, actor) = (store.clone(), actor.clone());
            std::thread::spawn(move || -> Result<(), StoreError> {
                for i in 0..per_thread {
                    let e = entry(&actor, i);
                    let ((), receipt) = store
                        .writer()
                        .change_recorded(move |_tx| -> Result<_, StoreError> { Ok(((), e)) })
                        .wait()?;
                    let seq = receipt.seq;
                    // Whoever reads the numbers went away: stop quietly.
                    if writeln!(std::io::stdout().lock(), "{seq}").is_err() {
                        break;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| Failure::new("BEN-0001", "an append thread panicked"))??;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_keys(dir: Option<&Path>, count: usize) -> Result<ExitCode, Failure> {
    super::logging::init_cli();
    let work = work_dir(dir)?;
    let config = Config::default();
    let actor = Actor::system();
    App::init(&config, work.path(), &actor)?;
    let app = App::open(&config, work.path())?;
    for i in 0..count {
        tenants::create(&app, &actor, &format!("bench-{i}"), None)?;
    }
    app.tenant_stores().close_everything();
    let start = Instant::now();
    let r = crate::keys::rotate_root(&app, &actor)?;
    let secs = start.elapsed().as_secs_f64();
    figure(&format!("rotate_root_{count}_tenants"), secs, "s");
    figure("rotate_root_rewrapped", r.rewrapped as f64, "keys");
    app.close();
    Ok(ExitCode::SUCCESS)
}

fn bench_backup(dir: Option<&Path>, mib: u64, count: usize) -> Result<ExitCode, Failure> {
    use crate::backup::{self, Opening, Scope, Sealing};
    super::logging::init_cli();
    let work = work_dir(dir)?;
    let config = Config::default();
    let actor = Actor::system();
    let source = work.path().join("source");
    App::init(&config, &source, &actor)?;
    let app = App::open(&config, &source)?;
    // Entries of 8 KiB of incompressible text, written one transaction per tenant.
    let per_tenant = (mib << 20) / count.max(1) as u64;
    let entries = (per_tenant / 8192).max(1);
    let mut noise = vec![0u8; 4096];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut noise)
        .map_err(|_| Failure::new("BEN-0004", "random source failed"))?;
    let blob = hex::encode(&noise);
    for i in 0..count {
        let t = tenants::create(&app, &actor, &format!("bench-{i}"), None)?;
        let store = tenants::open_store(&app, &t.id)?;
        let blob = blob.clone();
        store
            .writer()
            .change_or_nothing(move |tx| -> Result<_, StoreError> {
                for n in 0..entries {
                    tx.audit(
                        NewEntry::new(Actor::system(), "bench.fill", "bench")
                            .params(serde_json::json!({ "n": n, "blob": blob })),
                    )?;
                }
                Ok(((), None))
            })
            .wait()?;
    }
    app.tenant_stores().close_everything();
    let out = work.path().join("bench.srb");
    let start = Instant::now();
    let manifest = backup::create(
        &app,
        &actor,
        &out,
        &Scope::All,
        &Sealing::Root,
        &backup::quiet,
    )?;
    let create_s = start.elapsed().as_secs_f64();
    let bytes: u64 = manifest.members.iter().map(|m| m.size).sum();
    let mb = bytes as f64 / 1e6;
    figure("backup_data_set", mb, "MB");
    figure("backup_create", mb / create_s, "MB/s");

    let keyring = app.keyring().duplicate()?;
    let start = Instant::now();
    let unpacked = backup::unpack(&out, Opening::Root(&keyring), work.path(), &backup::quiet)?;
    let report = backup::check_unpacked(&unpacked)?;
    let verify_s = start.elapsed().as_secs_f64();
    if !report.ok {
        return Err(Failure::new(
            "BEN-0005",
            "the benchmark archive did not verify",
        ));
    }
    figure("backup_verify", mb / verify_s, "MB/s");
    drop(unpacked);
    app.close();

    let target = work.path().join("restored");
    let start = Instant::now();
    backup::restore(
        &out,
        &target,
        &config,
        backup::RestoreOptions {
            opening: Opening::Root(&keyring),
            root_key_out: None,
            force: false,
        },
        &actor,
        &backup::quiet,
    )?;
    figure("backup_restore", mb / start.elapsed().as_secs_f64(), "MB/s");
    Ok(ExitCode::SUCCESS)
}
