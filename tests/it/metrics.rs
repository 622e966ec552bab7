//! `/metrics`: read by the Prometheus project's own parser (PyPI `prometheus-client`, in the
//! test venv) from the real binary over TLS, before and after a few things happen, whose
//! counters must each move by exactly what happened; served to this host or with the
//! metrics token, never to a tenant's token; naming no tenant.

use crate::signin::text;
use crate::support::{https, stderr, tool_missing, Env, InProcess, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

const PARSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics/parse.py");

/// The test venv's python when `prometheus_client` imports there (`tests/model/setup.sh`
/// installs it). Outside CI a machine without it skips; under `CI=true` its absence fails.
fn parser_python() -> Option<String> {
    let py = format!("{}/bin/python", crate::models::test_venv());
    let ok = Command::new(&py)
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    tool_missing(&format!(
        "{py} with prometheus_client (tests/model/setup.sh)"
    ));
    None
}

/// The exposition as the parser reads it: `{"families": {name: type}, "samples": [...]}`.
fn parse(py: &str, exposition: &str) -> Value {
    let mut child = Command::new(py)
        .arg(PARSER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{exposition}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sum of the samples named `name` whose labels include all of `labels`.
fn value(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == name)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().unwrap())
        .sum()
}

#[test]
fn the_prometheus_parser_reads_the_metrics_and_each_counter_moves_by_what_happened() {
    let Some(py) = parser_python() else {
        return;
    };
    let env = Env::init();
    let t = env.create_tenant("acme-metrics");
    let key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    let doc = env.tmp.path().join("pilotage.md");
    std::fs::write(&doc, "# Pilotage\n\nThe pilot boards at the outer buoy.\n").unwrap();
    env.ok(&["knowledge", "add", "--tenant", &t, doc.to_str().unwrap()]);
    // An endpoint nobody listens on, whose breaker opens at its first failure.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &env.config,
        format!(
            "[[ai.endpoints]]\nname = \"down\"\nprotocol = \"openai\"\nurls = [\"http://127.0.0.1:{port}\"]\nmodel = \"m\"\nretries = 0\nbreaker_failures = 1\nbreaker_open_secs = 600\n"
        ),
    )
    .unwrap();
    env.ok(&["assistant", "policy", "--tenant", &t, "--endpoints", "down"]);
    // Two calls, then none for a long while.
    env.limit_token_calls(&t, 2);
    let server = Server::start(&env, &[]);
    let scrape = || {
        let r = https(server.addr, &server.cert, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
            "{:?}",
            r.headers
        );
        r.body
    };
    let first = scrape();
    let before = parse(&py, &first);

    let login = https(
        server.addr,
        &server.cert,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"email=nobody%40example.com&password=not-the-password",
    );
    assert_eq!(login.status, 401, "{}", login.body);
    let bearer = format!("Bearer {key}");
    let call = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "Where does the pilot board?"}]});
        https(
            server.addr,
            &server.cert,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(call("down").status, 503);
    assert_eq!(call("extractive").status, 200);
    let limited = call("extractive");
    assert_eq!(limited.status, 429, "{}", limited.body);

    let second = scrape();
    let after = parse(&py, &second);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let chat = ("route", "/v1/chat/completions");
    for (status, n) in [("200", 1.0), ("429", 1.0), ("503", 1.0)] {
        assert_eq!(
            moved(
                "strongroom_http_requests_total",
                &[chat, ("method", "POST"), ("status", status)]
            ),
            n,
            "status {status}:\n{second}"
        );
        assert_eq!(
            moved(
                "strongroom_http_request_duration_seconds_count",
                &[chat, ("status", status)]
            ),
            n,
            "{second}"
        );
    }
    // The first scrape is counted in the second.
    assert_eq!(
        moved(
            "strongroom_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "strongroom_http_requests_total",
            &[("route", "/login"), ("method", "POST"), ("status", "401")]
        ),
        1.0
    );
    for (name, labels) in [
        (
            "strongroom_sign_ins_total",
            &[("method", "password"), ("outcome", "bad_credentials")][..],
        ),
        ("strongroom_throttled_total", &[("reason", "rate")]),
        ("strongroom_gateway_calls_total", &[("outcome", "answered")]),
        ("strongroom_gateway_calls_total", &[("outcome", "limited")]),
        ("strongroom_gateway_calls_total", &[("outcome", "failed")]),
        (
            "strongroom_upstream_errors_total",
            &[("endpoint", "down"), ("error", "unreachable")],
        ),
        ("strongroom_upstream_calls_total", &[("endpoint", "down")]),
    ] {
        assert_eq!(moved(name, labels), 1.0, "{name} {labels:?}:\n{second}");
    }
    let breaker = [("endpoint", "down"), ("url", "0")];
    assert_eq!(
        value(&before, "strongroom_upstream_circuit_state", &breaker),
        0.0
    );
    assert_eq!(
        value(&after, "strongroom_upstream_circuit_state", &breaker),
        1.0,
        "the breaker opened at the first failure"
    );
    // Two gateway calls and a refused sign-in were journaled, in at least one group commit.
    assert!(
        moved("strongroom_audit_entries_total", &[]) >= 3.0,
        "{second}"
    );
    assert!(
        moved("strongroom_audit_commit_duration_seconds_count", &[]) >= 1.0,
        "{second}"
    );
    assert!(value(&after, "strongroom_tenant_files_open", &[]) >= 1.0);
    assert!(value(&after, "strongroom_uptime_seconds", &[]) > 0.0);
    for (family, kind) in [
        ("strongroom_http_requests", "counter"),
        ("strongroom_http_request_duration_seconds", "histogram"),
        ("strongroom_audit_commit_duration_seconds", "histogram"),
        ("strongroom_audit_queue_depth", "gauge"),
        ("strongroom_upstream_circuit_state", "gauge"),
        ("strongroom_upstream_in_flight", "gauge"),
        ("strongroom_upstream_waiting", "gauge"),
    ] {
        assert_eq!(after["families"][family], kind, "{family}");
    }
    // No tenant is named, by name or by id.
    assert!(!second.contains("acme") && !second.contains(&t), "{second}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_to_this_host_or_with_the_metrics_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-0123456789abcdef\n").unwrap();
    let s = InProcess::start(
        &format!(
            "[metrics]\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
        crate::support::now_us(),
    );
    let t = s.env.create_tenant("acme");
    let tenant_token = format!(
        "Bearer {}",
        s.env
            .ok(&["token", "create", "--tenant", &t, "--role", "admin"])
            .trim()
    );
    // From 192.0.2.10, a peer off this host.
    for (why, auth) in [
        ("no credentials", None),
        ("a tenant's token", Some(tenant_token.as_str())),
        ("a wrong token", Some("Bearer scrape-0123456789abcdeg")),
        (
            "the token without its scheme",
            Some("scrape-0123456789abcdef"),
        ),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (st, _, b) = s.send("GET", "/metrics", &headers, b"").await;
        assert_eq!(st, 403, "{why}");
        assert!(!text(&b).contains("strongroom_"), "{why}: {}", text(&b));
    }
    let (st, h, b) = s
        .send(
            "GET",
            "/metrics",
            &[("authorization", "Bearer scrape-0123456789abcdef")],
            b"",
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        h["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(text(&b).contains("# TYPE strongroom_http_requests_total counter"));
    for peer in ["127.0.0.1:40000", "[::1]:40000"] {
        let (st, _, b) = s
            .send("GET", "/metrics", &[("x-test-peer", peer)], b"")
            .await;
        assert_eq!(st, 200, "{peer}");
        assert!(text(&b).contains("strongroom_uptime_seconds"));
    }
    // A proxy on this host forwarding for someone else is a loopback peer too: the header
    // that says so asks for the token, whatever its case or value.
    for (name, value) in [
        ("X-Forwarded-For", "198.51.100.7"),
        ("forwarded", "for=198.51.100.7;proto=https"),
        ("X-Real-IP", "198.51.100.7"),
        ("x-forwarded-for", ""),
    ] {
        let (st, _, b) = s
            .send(
                "GET",
                "/metrics",
                &[("x-test-peer", "127.0.0.1:40000"), (name, value)],
                b"",
            )
            .await;
        assert_eq!(st, 403, "{name}: {value}");
        assert!(!text(&b).contains("strongroom_"), "{name}");
        let (st, _, b) = s
            .send(
                "GET",
                "/metrics",
                &[
                    ("x-test-peer", "[::1]:40000"),
                    (name, value),
                    ("authorization", "Bearer scrape-0123456789abcdef"),
                ],
                b"",
            )
            .await;
        assert_eq!(st, 200, "{name} with the token");
        assert!(text(&b).contains("strongroom_uptime_seconds"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_token_required_a_scraper_on_this_host_presents_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-0123456789abcdef\n").unwrap();
    let s = InProcess::start(
        &format!(
            "[metrics]\ntoken_file = {:?}\nrequire_token = true\n",
            token_file.display().to_string()
        ),
        crate::support::now_us(),
    );
    for peer in ["127.0.0.1:40000", "[::1]:40000", "192.0.2.10:40000"] {
        let (st, _, b) = s
            .send("GET", "/metrics", &[("x-test-peer", peer)], b"")
            .await;
        assert_eq!(st, 403, "{peer}");
        assert_eq!(
            text(&b),
            "metrics are served to a scraper with the metrics token\n",
            "{peer}"
        );
        let (st, _, b) = s
            .send(
                "GET",
                "/metrics",
                &[
                    ("x-test-peer", peer),
                    ("authorization", "Bearer scrape-0123456789abcdeg"),
                ],
                b"",
            )
            .await;
        assert_eq!(st, 403, "{peer} with a wrong token");
        assert!(!text(&b).contains("strongroom_"), "{peer}");
        let (st, _, b) = s
            .send(
                "GET",
                "/metrics",
                &[
                    ("x-test-peer", peer),
                    ("authorization", "Bearer scrape-0123456789abcdef"),
                ],
                b"",
            )
            .await;
        assert_eq!(st, 200, "{peer} with the token");
        assert!(text(&b).contains("strongroom_uptime_seconds"));
    }
}
