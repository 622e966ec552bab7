//! The real server over real TLS on loopback.

use crate::support::{client_config, https, https_with, Env, Server};

#[test]
fn serves_health_status_and_security_headers_over_tls() {
    let mut env = Env::init();
    env.extra_env.push((
        "STRONGROOM_SECURITY__CONTACT".into(),
        "mailto:security@example.com".into(),
    ));
    let server = Server::start(&env, &[]);

    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");
    for (h, v) in [
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(health.header(h), Some(v), "{h}");
    }
    assert!(health
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(health.header("x-request-id").map(str::len), Some(16));

    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200);
    let v: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["checks"]["system_store"], true);
    assert_eq!(v["checks"]["root_key_current"], true);
    assert_eq!(v["checks"]["system_writer"], true);

    let status = server.get("/status");
    assert_eq!(status.status, 200);
    assert!(status
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        status.body.contains("All systems operational"),
        "{}",
        status.body
    );
    assert!(
        !status.body.contains(env.dir.to_str().unwrap()),
        "no paths on a public page"
    );
    // Nor the version or uptime: they tell a stranger which fixes this host lacks.
    for hidden in [env!("CARGO_PKG_VERSION"), "Version", " up "] {
        assert!(!status.body.contains(hidden), "{hidden}: {}", status.body);
    }
    let json: serde_json::Value = serde_json::from_str(&server.get("/status.json").body).unwrap();
    assert_eq!(json["status"], "operational");
    assert!(
        json.get("version").is_none() && json.get("uptime_secs").is_none(),
        "{json}"
    );
    let css = server.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    let sec = server.get("/.well-known/security.txt");
    assert_eq!(sec.status, 200);
    assert!(
        sec.body
            .starts_with("Contact: mailto:security@example.com\nExpires: "),
        "{}",
        sec.body
    );

    let missing = server.get("/no/such/page?token=abc");
    assert_eq!(missing.status, 404);
    let v: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(v["error"]["code"], "WEB-0404");
    assert!(missing.header("strict-transport-security").is_some());

    // Body limit: refused from the declared length, before reading it.
    let big = https(
        server.addr,
        &server.cert,
        "POST",
        "/healthz",
        &[("Content-Length", "5000000")],
        b"",
    );
    assert_eq!(big.status, 413);

    // TLS 1.2 alone is still accepted (older clients); the certificate verifies as localhost.
    let tls12 = https_with(
        server.addr,
        client_config(&server.cert, &[&rustls::version::TLS12]),
        "GET",
        "/healthz",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(tls12.status, 200);

    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    // The log file got the request lines, and the token in the query string stayed out.
    let logs: String = crate::support::all_files(&env.dir.join("logs"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(logs.contains("/no/such/page"), "{logs}");
    assert!(!logs.contains("token=abc"), "{logs}");
    let root_key = std::fs::read_to_string(env.dir.join("root.key")).unwrap();
    assert!(
        !logs.contains(root_key.trim()),
        "the root key must never be logged"
    );
    // The key sits in the data directory here, and the server says so at start.
    assert!(logs.contains("inside the data directory"), "{logs}");
}

#[test]
fn a_plain_http_client_gets_no_answer_in_clear() {
    use std::io::{Read, Write};
    let env = Env::init();
    let server = Server::start(&env, &[]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("ok\n"));
    assert!(
        server.get("/healthz").status == 200,
        "the server survives garbage"
    );
}

#[test]
fn refuses_public_listen_without_opt_in_and_json_logs_work() {
    let env = Env::init();
    let text = env.fails(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(text.contains("allow_public_listen"), "{text}");
    let text = env.fails(&["serve", "--listen", "localhost:8443"]);
    assert!(text.contains("IP:PORT"), "{text}");

    let server = Server::start(&env, &["--log-format", "json"]);
    assert_eq!(server.get("/healthz").status, 200);
    server.terminate();
    let logs: Vec<String> = crate::support::all_files(&env.dir.join("logs"))
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!logs.is_empty());
    let request = logs.iter().find(|l| l.contains("/healthz")).unwrap();
    let v: serde_json::Value = serde_json::from_str(request).unwrap();
    assert_eq!(v["fields"]["status"], 200);
}

#[test]
fn cli_works_while_the_server_runs_and_shutdown_flushes() {
    let env = Env::init();
    let server = Server::start(&env, &[]);
    let id = env.create_tenant("Concurrent");
    env.ok(&["tenant", "suspend", &id]);
    assert_eq!(server.get("/readyz").status, 200);
    env.ok(&["audit", "verify"]);
    assert!(server.terminate().success());
    let out = env.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    // system.init, the platform owner, the tenant and its suspension.
    assert_eq!(v["files"][0]["chain"]["entries"], 4);
}

#[test]
fn a_configured_certificate_is_served_and_a_broken_one_refused() {
    let env = Env::init();
    // Use a second installation's certificate as "the configured one".
    let other = Env::init();
    let cert = other.dir.join("tls/cert.pem");
    let key = other.dir.join("tls/key.pem");
    std::fs::write(
        &env.config,
        format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", cert, key),
    )
    .unwrap();
    let mut server = Server::start(&env, &[]);
    server.cert = cert.clone();
    assert_eq!(server.get("/healthz").status, 200);
    // A client trusting only this installation's own self-signed cert must now fail.
    let wrong = https_with(
        server.addr,
        client_config(&env.cert(), &[&rustls::version::TLS13]),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert!(wrong.is_err());
    server.terminate();

    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let text = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        text.contains("TLS private key") && text.contains("key.pem"),
        "{text}"
    );
    assert!(!text.contains("nope"));
}

#[test]
fn a_client_that_trickles_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let env = Env::init();
    std::fs::write(&env.config, "[server]\nheader_timeout_secs = 1\n").unwrap();
    let server = Server::start(&env, &[]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(
        client_config(&server.cert, &[&rustls::version::TLS13]),
        name,
    )
    .unwrap();
    let sock = std::net::TcpStream::connect(server.addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: local")
        .unwrap();
    tls.flush().unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf);
    // The server hung up (possibly with a 408) instead of waiting for the rest forever.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(19),
        "connection was kept open"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("ok\n"));
    assert_eq!(
        server.get("/healthz").status,
        200,
        "other clients are served"
    );
}

/// A client that finishes its handshake and then says nothing, or opens HTTP/2 and goes
/// quiet, is closed after the header timeout: before, both were held forever.
#[test]
fn a_client_that_connects_and_says_nothing_is_closed() {
    use std::io::{Read, Write};
    let env = Env::init();
    std::fs::write(&env.config, "[server]\nheader_timeout_secs = 1\n").unwrap();
    let server = Server::start(&env, &[]);
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut cfg = (*client_config(&server.cert, &[&rustls::version::TLS13])).clone();
        if !opening.is_empty() {
            cfg.alpn_protocols = vec![b"h2".to_vec()];
        }
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let sock = std::net::TcpStream::connect(server.addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        // Completes the handshake, then the opening (if any), then silence.
        tls.write_all(opening).unwrap();
        tls.flush().unwrap();
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "a silent connection was kept open ({} bytes of opening)",
            opening.len()
        );
    }
    assert_eq!(server.get("/healthz").status, 200, "others are served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_root_key_is_no_longer_current() {
    use tower::ServiceExt;
    let env = Env::init();
    let app = std::sync::Arc::new(env.app());
    let router = strongroom::web::app(strongroom::web::AppState::new(app.clone()).unwrap());
    let get = |router: axum::Router| async move {
        let res = router
            .oneshot(
                axum::http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };
    let (status, v) = get(router.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["checks"]["root_key_current"], true);

    // As if the root key had been rotated by another process while this one kept the old.
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        a.system()
            .writer()
            .bookkeeping(|tx| {
                strongroom::store::system::meta_set(tx.conn(), "root_key_id", "0000000000000000")
                    .map_err(|e| tx.err(&e))
            })
            .wait()
            .unwrap()
    })
    .await
    .unwrap();
    let (status, v) = get(router.clone()).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["root_key_current"], false);
    assert_eq!(v["checks"]["system_store"], true);

    tokio::task::spawn_blocking(move || app.shutdown())
        .await
        .unwrap();
    let (status, v) = get(router).await;
    assert_eq!(status, 503);
    assert_eq!(v["checks"]["system_writer"], false);
}

#[test]
fn serve_dev_is_self_contained_and_runs_under_cargo_s_environment() {
    // The README's first command: no --data-dir, no --config, the environment cargo gives a
    // binary it runs. It must create ./strongroom-data and serve.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::support::BIN)
        .current_dir(tmp.path())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env_remove("STRONGROOM_DATA_DIR")
        .env_remove("STRONGROOM_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let data = tmp.path().join("strongroom-data");
    assert_eq!(crate::support::healthz_of(&mut child, &data), 200);
    assert!(data.join("root.key").exists() && data.join("system.db").exists());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_says_when_a_key_is_past_its_age_policy() {
    use std::sync::Arc;
    use tower::ServiceExt;
    let env = Env::init();
    let open = |days_later: i64| Arc::new(crate::support::app_days_later(&env, days_later, 90));
    for (days, due) in [(0, false), (400, true)] {
        let app = open(days);
        let router = strongroom::web::app(strongroom::web::AppState::new(app.clone()).unwrap());
        let get = |path: &'static str| {
            let router = router.clone();
            async move {
                let res = router
                    .oneshot(
                        axum::http::Request::get(path)
                            .body(axum::body::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                String::from_utf8(bytes.to_vec()).unwrap()
            }
        };
        let page = get("/status").await;
        assert_eq!(
            page.contains("Key rotation due"),
            due,
            "{days} days: {page}"
        );
        let json: serde_json::Value = serde_json::from_str(&get("/status.json").await).unwrap();
        assert_eq!(json["keys_within_policy"], !due);
        tokio::task::spawn_blocking(move || app.shutdown())
            .await
            .unwrap();
    }
}

#[test]
fn a_stop_right_after_the_server_says_it_listens_is_graceful() {
    // systemd may stop a Type=notify service the moment it is ready: SIGTERM must already be
    // caught by then, or the default action kills the process without its final checkpoint.
    let env = Env::init();
    for round in 0..10 {
        let server = Server::start(&env, &[]);
        let status = server.terminate();
        assert!(status.success(), "round {round}: {status:?}");
    }
    env.ok(&["audit", "verify"]);
}
