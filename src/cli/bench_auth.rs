//! `strongroom bench auth`: authenticated `GET /api/v1/me` with an API token through real
//! TLS on loopback, at 1 and 16 connections (requests/s, p50 and p99 latency), and the
//! in-process check of a token and of a session cookie (p50 and p99). Every loop is bounded
//! in count and time; the data directory is temporary.

use super::{Cli, Failure};
use crate::app::App;
use crate::config::Config;
use crate::door;
use crate::identity::{accounts, signin, tokens, Caller, Password, Realm};
use crate::web::{self, AppState};
use axum::http::{HeaderMap, HeaderValue};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bench::{figure, work_dir};
use super::bench_load::{client_config, fail, percentile, run, Target};

/// Most requests one load run makes, whatever the time allows.
const MAX_REQUESTS: usize = 2_000_000;
/// Checks made in process per credential kind.
const IN_PROCESS: usize = 50_000;

pub fn bench_auth(
    _cli: &Cli,
    dir: Option<&std::path::Path>,
    seconds: u64,
) -> Result<ExitCode, Failure> {
    super::logging::init_cli();
    let work = work_dir(dir)?;
    let config = Config::default();
    App::init(&config, work.path(), &crate::audit::Actor::system())?;
    web::tls::ensure_self_signed(work.path())?;
    let app = Arc::new(App::open(&config, work.path())?);
    let tenant = crate::tenants::create(&app, &crate::audit::Actor::system(), "bench", None)?;
    let ctx = door::open_blocking(&app, &tenant.id, Caller::operator(Realm::Tenant), None)?;
    let (_, token) = tokens::create_blocking(
        &ctx,
        app.directory(),
        &tokens::NewToken {
            name: Some("bench".into()),
            role: "auditor".into(),
            lifetime_secs: None,
        },
    )?;
    let input = accounts::NewAccount {
        email: "bench@example.com".into(),
        name: None,
        role: "operator".into(),
    };
    let (_, otp) = accounts::create_blocking(&ctx, app.directory(), &input)?;
    drop(ctx);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("runtime")(e.to_string()))?;
    let state = {
        let _entered = runtime.enter();
        AppState::new(app.clone()).map_err(fail("models"))?
    };
    let bearer = format!("Bearer {}", token.expose());
    runtime.block_on(async {
        // In process: the guard's check, served from memory after the first request.
        let signed = signin::sign_in(
            &app,
            &state.auth.throttle,
            &state.auth.settings,
            "bench@example.com",
            Password::new(otp.expose().to_string()),
            crate::identity::sessions::Client::new(None, "bench"),
        )
        .await?;
        let cookie = format!(
            "{}={}",
            crate::identity::sessions::COOKIE,
            signed.secret.cookie_value(&signed.place).expose()
        );
        for (name, header, value) in [
            (
                "auth_check_token",
                axum::http::header::AUTHORIZATION,
                bearer.as_str(),
            ),
            (
                "auth_check_session",
                axum::http::header::COOKIE,
                cookie.as_str(),
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header,
                HeaderValue::from_str(value).map_err(|e| fail("header")(e.to_string()))?,
            );
            let mut times = Vec::with_capacity(IN_PROCESS);
            let deadline = Instant::now() + Duration::from_secs(seconds.max(1) * 2);
            for _ in 0..IN_PROCESS {
                let start = Instant::now();
                let found = state.auth.authenticate(&app, &headers, None).await;
                times.push(start.elapsed());
                if !matches!(found, Ok(Some(_))) {
                    return Err(Failure::new(
                        "BEN-0003",
                        format!("{name}: the credential did not authenticate"),
                    ));
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            times.sort();
            figure(&format!("{name}_p50"), percentile(&times, 0.50) * 1e6, "us");
            figure(&format!("{name}_p99"), percentile(&times, 0.99) * 1e6, "us");
        }

        // Over TLS, with the real router and accept loop.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| fail("listen")(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| fail("listen")(e.to_string()))?;
        let (cert, key) = web::tls::default_cert_paths(work.path());
        let tls = web::tls::server_config(&cert, &key)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = web::app(state.clone());
        let server = tokio::spawn(web::server::serve(
            listener,
            tls,
            router,
            async {
                let _ = stop_rx.await;
            },
            web::server::Timeouts {
                header: Duration::from_secs(30),
                grace: Duration::from_secs(1),
                idle: web::server::IDLE_TIMEOUT,
            },
        ));
        let target = Arc::new(Target {
            addr,
            tls: Some(client_config(&cert)?),
            method: axum::http::Method::GET,
            path: "/api/v1/me".into(),
            headers: Vec::new(),
            bearers: vec![
                HeaderValue::from_str(&bearer).map_err(|e| fail("header")(e.to_string()))?
            ],
            body: axum::body::Bytes::new(),
            expect: 200,
        });
        for conns in [1usize, 16] {
            let (times, rps) = run(&target, conns, seconds, MAX_REQUESTS).await?;
            figure(&format!("me_token_tls_{conns}conn_rps"), rps, "req/s");
            figure(
                &format!("me_token_tls_{conns}conn_p50"),
                percentile(&times, 0.50) * 1e3,
                "ms",
            );
            figure(
                &format!("me_token_tls_{conns}conn_p99"),
                percentile(&times, 0.99) * 1e3,
                "ms",
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
