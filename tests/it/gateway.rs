//! The model gateway driven by the vendors' own Python SDKs, used unchanged: PyPI `openai`
//! and `anthropic` (pinned in tests/model/requirements.txt) list the models, ask plainly and
//! streamed, and meet a wrong key, an unknown model and an empty request with the exception
//! classes their users catch (`tests/gateway/sdk_check.py`). Every answered call, and every
//! call for a model the tenant does not have, is in the tenant's journal. A token over its
//! rate limit meets the SDK's `RateLimitError` with a Retry-After, and is counted in the journal
//! apart from the calls.

use crate::support::{https, stderr, stdout, tool_missing, Env, Server};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/sdk_check.py");
const QUESTION: &str = "Where does the pilot board?";
const PILOTAGE: &str = "# Pilotage\n\nThe pilot boards at the outer buoy. Every vessel above ninety metres takes a harbour pilot.\n";
/// Each request of the script gives up after 30 s; the whole run after this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The test venv's python when both SDKs import there (`tests/model/setup.sh` installs them).
/// Outside CI a machine without them skips; under `CI=true` their absence fails.
pub fn sdk_python() -> Option<String> {
    let py = format!("{}/bin/python", crate::models::test_venv());
    let ok = Command::new(&py)
        .args(["-c", "import openai, anthropic, httpx2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    tool_missing(&format!(
        "{py} with the vendor SDKs (openai, anthropic; tests/model/setup.sh)"
    ));
    None
}

/// Runs `sdk_check.py` for one vendor, with `flags` (`--only-rate-limit`, say), and returns
/// its JSON object; killed after `RUN_LIMIT`.
fn sdk_check(
    py: &str,
    vendor: &str,
    base_url: &str,
    key: &str,
    ca: &Path,
    flags: &[&str],
) -> Value {
    let mut args = vec!["--model", "extractive", "--question", QUESTION];
    args.extend_from_slice(flags);
    run_script(py, SCRIPT, vendor, base_url, key, ca, &args)
}

/// Runs one of the SDK scripts for `vendor` and returns its JSON object; killed after
/// `RUN_LIMIT`.
pub fn run_script(
    py: &str,
    script: &str,
    vendor: &str,
    base_url: &str,
    key: &str,
    ca: &Path,
    args: &[&str],
) -> Value {
    let child = Command::new(py)
        .arg(script)
        .args([
            "--vendor",
            vendor,
            "--base-url",
            base_url,
            "--key",
            key,
            "--ca",
        ])
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {py}: {e}"));
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(RUN_LIMIT) else {
        // Not yet reaped, so the id is still the child's.
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("{script} --vendor {vendor} did not finish in {RUN_LIMIT:?}");
    };
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{script} --vendor {vendor} failed: {}",
        stderr(&out)
    );
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
        panic!(
            "{script} --vendor {vendor}: {e}: {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    })
}

/// A token count, or 0 when absent.
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// What every SDK must see. `finish` is the vendor's word for a complete answer.
fn assert_sdk_saw(vendor: &str, r: &Value, finish: &str) {
    let all = format!("{vendor}: {r:#}");
    assert!(
        r["models"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|id| id == "extractive")),
        "{all}"
    );
    // The extractive answer quotes the passage and cites it.
    let answer = r["answer"].as_str().unwrap_or_else(|| panic!("{all}"));
    assert!(
        answer.contains("outer buoy") && answer.contains("[1]"),
        "{all}"
    );
    assert!(count(&r["usage"]["input"]) > 0, "{all}");
    assert!(count(&r["usage"]["output"]) > 0, "{all}");
    assert_eq!(r["finish"], finish, "{all}");
    // Same question, same deterministic answer, in pieces.
    assert_eq!(r["streamed"].as_str(), Some(answer), "{all}");
    assert!(count(&r["stream_chunks"]) >= 1, "{all}");
    assert!(count(&r["stream_usage"]["output"]) > 0, "{all}");
    assert_eq!(r["stream_finish"], finish, "{all}");
    for (scenario, class, status) in [
        ("bad_key", "AuthenticationError", 401),
        ("unknown_model", "NotFoundError", 404),
        ("bad_request", "BadRequestError", 400),
    ] {
        assert_eq!(
            (
                r[scenario].as_str(),
                r[format!("{scenario}_status").as_str()].as_u64()
            ),
            (Some(class), Some(status)),
            "{scenario}: {all}"
        );
    }
    assert!(
        r["unknown_model_message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-model")),
        "{all}"
    );
}

/// What every SDK must see of two calls back to back on a token whose limit allows one: the
/// first answered, the second refused as over the rate, and nothing else asked.
fn assert_rate_limited(vendor: &str, r: &Value) {
    let all = format!("{vendor}: {r:#}");
    assert_eq!(r["rate_first"], "ok", "{all}");
    assert_eq!(r["rate_second"], "RateLimitError", "{all}");
    assert_eq!(r["rate_status"].as_u64(), Some(429), "{all}");
    assert!(
        r["rate_retry_after"].as_u64().is_some_and(|s| s >= 1),
        "{all}"
    );
    assert!(
        r["rate_message"]
            .as_str()
            .is_some_and(|m| m.contains("requests per second")),
        "{all}"
    );
    assert!(
        r.get("models").is_none() && r.get("answer").is_none(),
        "{all}"
    );
}

/// The tenant journal's `gateway.call` entries, oldest first.
pub fn gateway_calls(journal: &str) -> Vec<Value> {
    entries_of(journal, "gateway.call")
}

/// The entries of `action` in an exported journal, oldest first.
fn entries_of(journal: &str, action: &str) -> Vec<Value> {
    journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|e| e["action"] == action)
        .collect()
}

/// The entries whose call ended with `outcome`.
fn with_outcome<'a>(calls: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    calls
        .iter()
        .filter(|e| e["params"]["outcome"] == outcome)
        .collect()
}

#[test]
fn the_vendor_sdks_work_unchanged_against_the_gateway() {
    let Some(py) = sdk_python() else {
        return;
    };
    let env = Env::init();
    let t = env.create_tenant("acme");
    let key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    let doc = env.tmp.path().join("pilotage.md");
    std::fs::write(&doc, PILOTAGE).unwrap();
    env.ok(&["knowledge", "add", "--tenant", &t, doc.to_str().unwrap()]);
    let server = Server::start(&env, &[]);
    let root = format!("https://127.0.0.1:{}", server.addr.port());

    // OpenAI's base URL carries the /v1; Anthropic's SDK adds it to every path itself.
    for (vendor, base_url, finish) in [
        ("openai", format!("{root}/v1"), "stop"),
        ("anthropic", root.clone(), "end_turn"),
    ] {
        let r = sdk_check(&py, vendor, &base_url, &key, &env.cert(), &[]);
        assert_sdk_saw(vendor, &r, finish);
    }

    // Plain and streamed for each vendor were answered; each unknown model was refused. A
    // wrong key names no tenant, and an empty request is refused before any model is chosen:
    // neither is a tenant's call.
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    let calls = gateway_calls(&journal);
    let answered = with_outcome(&calls, "answered");
    assert_eq!(answered.len(), 4, "{calls:#?}");
    for e in &answered {
        let p = &e["params"];
        assert_eq!(p["model"], "extractive", "{e}");
        assert!(count(&p["usage"]["output"]) > 0, "{e}");
        assert!(p["latency_ms"].is_number(), "{e}");
    }
    let not_found = with_outcome(&calls, "model_not_found");
    assert!(not_found.len() >= 2, "{calls:#?}");
    assert_eq!(
        calls.len(),
        answered.len() + not_found.len(),
        "only answered calls and unknown models are a tenant's calls: {calls:#?}"
    );
    assert!(!journal.contains(&key), "the key is in the journal");

    // Rate limits, read by the running server on every call. One request per 1000 s with a
    // burst of 1 lets a token make a single call; the second, at once, is refused before any
    // model is asked and is no call of the tenant's. Limits are per token, and each vendor's
    // run would use up the other's: the second vendor has a token of its own.
    let second_key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    for (vendor, base_url, key) in [
        ("openai", format!("{root}/v1"), &key),
        ("anthropic", root.clone(), &second_key),
    ] {
        env.limit_token_calls(&t, 1);
        let before = gateway_calls(&env.ok(&["audit", "export", "--tenant", &t]));
        let r = sdk_check(
            &py,
            vendor,
            &base_url,
            key,
            &env.cert(),
            &["--only-rate-limit"],
        );
        assert_rate_limited(vendor, &r);
        let after = gateway_calls(&env.ok(&["audit", "export", "--tenant", &t]));
        assert_eq!(
            after.len(),
            before.len() + 1,
            "{vendor}: only the answered call is in the journal: {:#?}",
            &after[before.len().min(after.len())..]
        );
        assert_eq!(
            after[before.len()]["params"]["outcome"],
            "answered",
            "{vendor}: {after:#?}"
        );
    }
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    assert!(
        !journal.contains(&second_key),
        "the second key is in the journal"
    );
}

/// The real server counts refused calls in the journal: the first at once, the ones after
/// it together when their window ends, or, when the server stops first, at its shutdown.
#[test]
fn refused_calls_are_counted_in_the_journal_also_when_the_server_stops() {
    let env = Env::init();
    let t = env.create_tenant("acme");
    let key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    env.limit_token_calls(&t, 1);
    let server = Server::start(&env, &[]);
    let bearer = format!("Bearer {key}");
    let body = br#"{"model":"extractive","messages":[{"role":"user","content":"hello"}]}"#;
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            https(
                server.addr,
                &server.cert,
                "POST",
                "/v1/chat/completions",
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 429, 429, 429]);
    assert!(server.terminate().success());
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    let refused: Vec<u64> = entries_of(&journal, "gateway.refused")
        .iter()
        .map(|e| e["params"]["refused"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, [1, 2], "{journal}");
    assert!(!journal.contains(&key), "the key is in the journal");
}

/// `bench gateway` prints its figures as JSON lines: the latency the gateway adds, and
/// requests/s in one tenant and spread, with every answered call audited. Broken flags are
/// refused before anything runs.
#[test]
fn bench_gateway_prints_its_figures_and_audits_every_call() {
    let env = Env::new();
    let out = env.ok(&[
        "bench",
        "gateway",
        "--seconds",
        "1",
        "--tenants",
        "3",
        "--dir",
        env.tmp.path().to_str().unwrap(),
    ]);
    let figures: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let get = |name: &str| {
        figures
            .iter()
            .find(|f| f["figure"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"))["value"]
            .as_f64()
            .unwrap()
    };
    for name in [
        "gateway_1conn_p50",
        "gateway_1conn_p99",
        "gateway_16conn_one_tenant_rps",
        "gateway_16conn_3_tenants_rps",
    ] {
        assert!(get(name) > 0.0, "{name}: {out}");
    }
    assert!(
        get("gateway_1conn_p99") >= get("gateway_1conn_p50"),
        "{out}"
    );
    for name in [
        "gateway_16conn_one_tenant_audited_per_call",
        "gateway_16conn_3_tenants_audited_per_call",
    ] {
        assert!(get(name) >= 1.0, "{name}: {out}");
    }
    for (flag, value) in [
        ("--seconds", "0"),
        ("--tenants", "0"),
        ("--tenants", "many"),
    ] {
        let e = env.fails(&["bench", "gateway", flag, value]);
        assert!(e.contains(flag), "{flag} {value}: {e}");
    }
}

/// A server that stops while calls wait on a slow model cuts them and writes each one's
/// audit entry before it exits: a plain and a streamed gateway call and an assistant turn,
/// whose prompts had all left. Before, the connections closed at the end of the grace
/// period took their calls, and the entries, with them.
#[test]
fn calls_waiting_on_a_model_when_the_server_stops_are_cut_and_audited() {
    let fake = crate::models::Backend::fake(&[]);
    let env = Env::init();
    std::fs::write(
        &env.config,
        format!(
            "[server]\nshutdown_grace_secs = 1\n\n[[ai.endpoints]]\nname = \"slow\"\nprotocol = \"openai\"\nurls = [{:?}]\nmodel = \"slow-first-byte-120000\"\nfirst_byte_timeout_ms = 150000\ntotal_timeout_ms = 170000\nretries = 0\n",
            fake.url
        ),
    )
    .unwrap();
    let t = env.create_tenant("acme");
    env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        &t,
        "--endpoints",
        "slow",
        "--model",
        "slow",
    ]);
    let doc = env.tmp.path().join("pilotage.md");
    std::fs::write(&doc, PILOTAGE).unwrap();
    env.ok(&["knowledge", "add", "--tenant", &t, doc.to_str().unwrap()]);
    let key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    let server = Server::start(&env, &[]);
    let bearer = format!("Bearer {key}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let thread = https(
        server.addr,
        &server.cert,
        "POST",
        "/api/v1/conversations",
        &headers,
        b"",
    );
    assert_eq!(thread.status, 201, "{thread:?}");
    let thread: Value = serde_json::from_str(&thread.body).unwrap();
    let ask = format!(
        "/api/v1/conversations/{}/ask",
        thread["id"].as_str().unwrap()
    );
    let calls: Vec<(String, Vec<u8>)> =
        vec![
        (
            "/v1/chat/completions".into(),
            br#"{"model":"slow","messages":[{"role":"user","content":"plain"}]}"#.to_vec(),
        ),
        (
            "/v1/chat/completions".into(),
            br#"{"model":"slow","stream":true,"messages":[{"role":"user","content":"streamed"}]}"#
                .to_vec(),
        ),
        (ask, br#"{"question":"Where does the pilot board?"}"#.to_vec()),
    ];
    let clients: Vec<_> = calls
        .into_iter()
        .map(|(path, body)| {
            let (addr, cert, bearer) = (server.addr, server.cert.clone(), bearer.clone());
            std::thread::spawn(move || {
                let headers = [
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                ];
                // Cut off by the stop: whatever it gets, if anything, is not checked here.
                let _ = crate::support::https_with(
                    addr,
                    crate::support::client_config(&cert, &[&rustls::version::TLS13]),
                    "POST",
                    &path,
                    &headers,
                    &body,
                );
            })
        })
        .collect();
    // Every prompt has left before the stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fake.requests()["count"].as_u64().unwrap_or(0) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the model was not called: {}",
            fake.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = std::time::Instant::now();
    assert!(server.terminate().success());
    // Cut, not waited for: the model would have answered after two minutes.
    assert!(stopped.elapsed() < Duration::from_secs(60));
    for c in clients {
        c.join().unwrap();
    }
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    let calls = gateway_calls(&journal);
    assert_eq!(calls.len(), 2, "{journal}");
    for e in &calls {
        assert_eq!(e["params"]["outcome"], "failed", "{e}");
        assert_eq!(e["params"]["error"], "AI-0013", "{e}");
        assert_eq!(e["params"]["endpoint"], Value::Null, "{e}");
    }
    assert_eq!(
        calls
            .iter()
            .map(|e| e["params"]["stream"].as_bool().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2,
        "one plain, one streamed: {calls:#?}"
    );
    let turns = entries_of(&journal, "assistant.turn");
    assert_eq!(turns.len(), 1, "{journal}");
    assert_eq!(turns[0]["params"]["error"], "AI-0013", "{}", turns[0]);
}
