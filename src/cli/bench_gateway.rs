//! `strongroom bench gateway`: the gateway's whole path (TLS, the token, limits, policy,
//! redaction, the call to a model endpoint, the durable audit entry) against an upstream on
//! loopback that answers at once, driven by the bench's own load generator. Figures: the
//! latency the gateway adds at one connection (p50, p99: through the gateway less straight
//! to the upstream), and requests per second at 16 connections with every call in one
//! tenant and spread over 100. Every loop is bounded in count and time; the data directory
//! is temporary.

use super::bench::{figure, work_dir};
use super::bench_load::{client_config, fail, percentile, run, Target};
use super::Failure;
use crate::app::App;
use crate::config::{Config, EndpointConfig};
use crate::door;
use crate::identity::{tokens, Caller, Realm};
use crate::policy::ai::AiPolicy;
use crate::policy::redaction::RedactionPolicy;
use crate::web::{self, AppState};
use axum::http::{HeaderName, HeaderValue, Method};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Most requests one load run makes, whatever the time allows.
const MAX_REQUESTS: usize = 2_000_000;

/// A call as a tool would make it, with a value for redaction to replace.
const CALL: &str = r#"{"model":"fast","max_tokens":64,"messages":[{"role":"user","content":"Summarise the ticket from jane.doe@example.com about invoice 4411."}]}"#;

/// The upstream's answer: at once, always the same.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Answered <EMAIL_1> about the invoice."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":7,"total_tokens":31}}"#;

/// Processor time this process has used, on all its threads.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// An OpenAI-compatible upstream on loopback that answers every request with [`ANSWER`].
async fn upstream() -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail("upstream")(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail("upstream")(e.to_string()))?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let _ =
                        axum::body::to_bytes(axum::body::Body::new(req.into_body()), 1 << 20).await;
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(ANSWER))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

pub fn bench_gateway(
    dir: Option<&std::path::Path>,
    seconds: u64,
    tenants: usize,
) -> Result<ExitCode, Failure> {
    super::logging::init_cli();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("runtime")(e.to_string()))?;
    let up = runtime.block_on(upstream())?;
    let work = work_dir(dir)?;
    let mut config = Config::default();
    let endpoint: EndpointConfig = toml::from_str(&format!(
        "name = \"fast\"\nprotocol = \"openai\"\nurls = [\"http://{up}\"]\nmodel = \"bench\"\nretries = 0\nmax_concurrent = 1024\nqueue = 4096\n"
    ))
    .map_err(|e| fail("endpoint")(e.to_string()))?;
    config.ai.endpoints.push(endpoint);
    let system = crate::audit::Actor::system();
    App::init(&config, work.path(), &system)?;
    web::tls::ensure_self_signed(work.path())?;
    let app = Arc::new(App::open(&config, work.path())?);
    let mut bearers = Vec::with_capacity(tenants);
    for i in 0..tenants.max(1) {
        let tenant = crate::tenants::create(&app, &system, &format!("bench-{i}"), None)?;
        let ctx = door::open_blocking(&app, &tenant.id, Caller::operator(Realm::Tenant), None)?;
        crate::policy::ai::update_blocking(
            &ctx,
            &AiPolicy {
                endpoints: vec!["fast".into()],
                ..AiPolicy::default()
            },
            &["fast".into()],
        )?;
        // A loopback endpoint is redacted only when the tenant asks: the bench asks, so the
        // figures include redaction and putting the values back.
        crate::policy::redaction::update_blocking(
            &ctx,
            &RedactionPolicy {
                all_endpoints: true,
                ..RedactionPolicy::default()
            },
        )?;
        let (_, token) = tokens::create_blocking(
            &ctx,
            app.directory(),
            &tokens::NewToken {
                name: Some("bench".into()),
                role: "operator".into(),
                lifetime_secs: None,
            },
        )?;
        bearers.push(
            HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|e| fail("token")(e.to_string()))?,
        );
    }
    let state = {
        let _entered = runtime.enter();
        AppState::new(app.clone()).map_err(fail("models"))?
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| fail("listen")(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| fail("listen")(e.to_string()))?;
        let (cert, key) = web::tls::default_cert_paths(work.path());
        let tls = web::tls::server_config(&cert, &key)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(web::server::serve(
            listener,
            tls,
            web::app(state.clone()),
            async {
                let _ = stop_rx.await;
            },
            web::server::Timeouts {
                header: Duration::from_secs(30),
                grace: Duration::from_secs(1),
                idle: web::server::IDLE_TIMEOUT,
            },
        ));
        let json = (
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        );
        let target = |addr, tls, bearers: Vec<HeaderValue>| {
            Arc::new(Target {
                addr,
                tls,
                method: Method::POST,
                path: "/v1/chat/completions".into(),
                headers: vec![json.clone()],
                bearers,
                body: axum::body::Bytes::from_static(CALL.as_bytes()),
                expect: 200,
            })
        };
        let client = client_config(&cert)?;
        let direct = target(up, None, Vec::new());
        let one = target(addr, Some(client.clone()), bearers[..1].to_vec());
        let spread = target(addr, Some(client), bearers.clone());
        // Warm both paths (connections, the tenant files, the writer threads).
        run(&direct, 1, 1, 200).await?;
        run(&spread, 4, 2, 4 * bearers.len()).await?;

        let (base, _) = run(&direct, 1, seconds, MAX_REQUESTS).await?;
        let (through, _) = run(&one, 1, seconds, MAX_REQUESTS).await?;
        for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
            let (b, t) = (percentile(&base, p), percentile(&through, p));
            figure(&format!("upstream_direct_1conn_{name}"), b * 1e3, "ms");
            figure(&format!("gateway_1conn_{name}"), t * 1e3, "ms");
            figure(&format!("gateway_added_1conn_{name}"), (t - b) * 1e3, "ms");
        }
        let metrics = crate::metrics::global();
        let entries = &metrics.audit_entries;
        for (name, t) in [("one_tenant", &one), ("spread", &spread)] {
            let before = entries.load(Ordering::Relaxed);
            let commits_before = metrics.audit_commit.count();
            let cpu_before = process_cpu();
            let (times, rps) = run(t, 16, seconds, MAX_REQUESTS).await?;
            let cpu = process_cpu() - cpu_before;
            let audited = entries.load(Ordering::Relaxed) - before;
            let commits = metrics.audit_commit.count() - commits_before;
            let name = if name == "spread" {
                format!("gateway_16conn_{}_tenants", bearers.len())
            } else {
                "gateway_16conn_one_tenant".to_string()
            };
            figure(&format!("{name}_rps"), rps, "req/s");
            figure(&format!("{name}_p99"), percentile(&times, 0.99) * 1e3, "ms");
            // Processor time of the whole process (server, load generator and upstream) per
            // call: what bounds the rate on two cores (10,000 calls/s is at most 200 µs),
            // and steadier than the rate on a host whose neighbours come and go.
            figure(
                &format!("{name}_cpu_per_call"),
                cpu.as_secs_f64() * 1e6 / times.len().max(1) as f64,
                "us",
            );
            // Each answered call wrote its entry before its answer was sent.
            figure(
                &format!("{name}_audited_per_call"),
                audited as f64 / times.len().max(1) as f64,
                "entries",
            );
            // How many entries one commit (one fsync) carried: group commit at work.
            figure(
                &format!("{name}_entries_per_commit"),
                audited as f64 / commits.max(1) as f64,
                "entries",
            );
        }
        let _ = stop_tx.send(());
        let _ = server.await;
        Ok::<_, Failure>(())
    })?;
    drop(state);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.close();
    }
    Ok(ExitCode::SUCCESS)
}
