//! `strongroom serve`: HTTPS until SIGTERM, then a graceful drain and a flush of every writer.

use super::{data_dir, load_config_for, Cli, Failure};
use crate::app::App;
use crate::config::LogFormat;
use crate::web::{self, tls, AppState};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (IP:PORT). Default from config: 127.0.0.1:8443.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Development mode: data directory ./strongroom-data, created on first start.
    #[arg(long)]
    pub(crate) dev: bool,
    /// Initialize the data directory first if it holds no installation (containers).
    #[arg(long)]
    init: bool,
    /// Log format on stderr and in the log file.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

/// First start: the platform owner, and with `--dev` a tenant `demo` with its own owner, so a
/// newcomer reaches both the platform's view and a tenant's in a minute.
fn provision(app: &Arc<App>, config: &crate::config::Config, dev: bool) -> Result<(), Failure> {
    let owner = super::init::first_owner(app, None)?;
    super::init::print_first_owner(config, &owner);
    if dev {
        let demo = crate::tenants::create(app, &crate::audit::Actor::system(), "demo", None)?;
        let owner = super::init::first_owner(app, Some((&demo.id, "owner@demo.localhost")))?;
        super::init::print_first_owner(config, &owner);
    }
    Ok(())
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode, Failure> {
    let loaded = load_config_for(cli, args.dev)?;
    let mut config = loaded.config;
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    config.validate()?;
    let addr = config.listen_addr()?;
    let dir = data_dir(cli, &loaded_with(&config), args.dev);

    let fresh = (args.dev || args.init) && !dir.join("system.db").exists();
    if fresh {
        let report = super::init::initialize(&config, &dir)?;
        super::init::print_report(&report);
    }
    let log_dir = config.log.dir.clone().unwrap_or_else(|| dir.join("logs"));
    let _guard = super::logging::init_server(&config.log, &log_dir)?;

    // Fail closed: without the root key and a readable system.db there is no service.
    let app = Arc::new(App::open(&config, &dir)?);
    if !args.dev && app.root_key_beside_data() {
        tracing::warn!(
            "root key {}: {}",
            app.keyring().source(),
            crate::doctor::ROOT_KEY_BESIDE_DATA
        );
    }
    let _single = lock_server(&dir)?;
    if fresh {
        provision(&app, &config, args.dev)?;
    }
    match crate::keys::finish_root_rotation(&app, &crate::audit::Actor::system()) {
        Ok(Some(retired)) => {
            tracing::warn!(
                retired,
                "finished the root-key rotation a crash interrupted"
            );
        }
        Ok(None) => {}
        // Not fatal: the new key opens everything; /readyz says the rotation is unfinished.
        Err(e) => tracing::error!(error = %e, "cannot finish an interrupted root-key rotation"),
    }
    // Copies left by a tenant rotation or restore that a crash interrupted: the registry
    // decides which replace their file and which go. Verify and export only read, so this is
    // where a stopped installation is tidied.
    crate::tenants::remove_leftovers(&app);
    if let Err(e) = crate::tenants::settle_all(&app) {
        tracing::error!(error = %e, "cannot settle an interrupted tenant rotation or restore");
    }
    // Journal entries an interrupted tenant rotation or restore still owes its tenant.
    match crate::tenants::deliver_all_owed(&app) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            tenants = n,
            "wrote journal entries owed since an interrupted operation"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot write owed tenant journal entries; they stay queued")
        }
    }
    let (cert, key) = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => tls::default_cert_paths(&dir),
    };
    let tls_config = tls::server_config(&cert, &key)?;
    let timeouts = web::server::Timeouts {
        header: Duration::from_secs(config.server.header_timeout_secs),
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        // A streamed answer is silent at most until its endpoint's total timeout.
        idle: config
            .ai
            .endpoints
            .iter()
            .map(|e| Duration::from_millis(e.total_timeout_ms) + Duration::from_secs(30))
            .fold(web::server::IDLE_TIMEOUT, Duration::max),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strongroom-rt")
        .build()
        .map_err(|e| Failure::new("SRV-0001", format!("cannot start the runtime: {e}")))?;
    // Model endpoints are made with the runtime entered (the resolver belongs to it); one
    // whose key cannot be read keeps the server from starting.
    let state = {
        let _entered = runtime.enter();
        AppState::new(app.clone()).map_err(|e| Failure::new("SRV-0007", e))?
    };
    let served = runtime.block_on(async {
        let signals = web::server::ShutdownSignals::install().map_err(|e| {
            Failure::new("SRV-0006", format!("cannot catch SIGTERM and SIGINT: {e}"))
        })?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::new("SRV-0002", format!("cannot listen on {addr}: {e}"))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure::new("SRV-0002", format!("cannot read listen address: {e}")))?;
        let admin_socket = crate::admin::bind(&dir).map_err(|e| {
            Failure::new("SRV-0005", format!("cannot bind the admin socket: {e}"))
        })?;
        let admin = {
            let app = app.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::admin::serve(app, admin_socket).await {
                    tracing::error!(error = %e, "the admin socket stopped");
                }
            })
        };
        tracing::info!(address = %local, data_dir = %dir.display(), root_key = %app.keyring().source(), "listening");
        println!("strongroom: listening on https://{local}");
        web::notify::notify(&format!("READY=1\nSTATUS=listening on https://{local}"));
        let watchdog = web::notify::watchdog_interval().map(|every| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    web::notify::notify("WATCHDOG=1");
                }
            })
        });

        let closer = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    let app = app.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        app.tenant_stores().close_idle();
                        app.flush_witness();
                    })
                    .await;
                }
            })
        };
        let accepting = state.accepting.clone();
        let shutdown = async move {
            signals.recv().await;
            accepting.store(false, Ordering::SeqCst);
            web::notify::notify("STOPPING=1");
            tracing::info!("shutting down: draining connections");
        };
        let refusals = state.refusals.clone();
        let calls = state.models.calls().clone();
        web::server::serve(listener, tls_config, web::app(state), shutdown, timeouts).await;
        // Model calls outlive their connections: those still waiting on a model are cut, and
        // every one's audit entry is written before the stores close.
        calls.stop(CALLS_END_WITHIN).await;
        // Refused calls still counted are written before the stores close.
        web::flush_refusals(&app, &refusals).await;
        closer.abort();
        admin.abort();
        let _ = std::fs::remove_file(crate::admin::socket_path(&dir));
        if let Some(w) = watchdog {
            w.abort();
        }
        Ok::<(), Failure>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    // Every request task is gone: flush and close the stores (final checkpoints included),
    // even if a stray handle to the app survived the runtime.
    app.shutdown();
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// How long a stopping server waits for cut model calls to write their audit entries.
const CALLS_END_WITHIN: Duration = Duration::from_secs(10);

fn loaded_with(config: &crate::config::Config) -> crate::config::Loaded {
    crate::config::Loaded {
        config: config.clone(),
        ..Default::default()
    }
}

/// One server per data directory: a second one would start a second writer per file.
fn lock_server(dir: &std::path::Path) -> Result<std::fs::File, Failure> {
    let file = crate::fsutil::open_lock_file(&dir.join("server.lock"))
        .map_err(|e| Failure::new("SRV-0003", format!("cannot open server.lock: {}", e.kind())))?;
    file.try_lock().map_err(|_| {
        Failure::new(
            "SRV-0004",
            format!("another strongroom server is running on {}", dir.display()),
        )
    })?;
    Ok(file)
}
