//! The gateway's HTTP contract, through the real router: a model endpoint behind it (the
//! fake that speaks both wire protocols), redaction on the way out, vendor-shaped errors
//! naming the field at fault, and one audit entry per call.

use crate::models::{endpoint, Ai, Backend, CONTACTS};
use crate::signin::text;
use crate::support::send_to;
use serde_json::{json, Value};

pub async fn post(
    ai: &Ai,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, axum::http::HeaderMap, Value, String) {
    post_on(&ai.s.router, path, headers, body).await
}

/// As [`post`], to one node of several (see `InProcess::node`).
pub async fn post_on(
    node: &axum::Router,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, axum::http::HeaderMap, Value, String) {
    let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let (st, headers, b) = send_to(node, "POST", path, &h, body.to_string().as_bytes()).await;
    let raw = text(&b);
    let json = serde_json::from_slice(&b).unwrap_or(Value::Null);
    (st, headers, json, raw)
}

pub fn gateway_calls(ai: &Ai) -> Vec<Value> {
    audit_entries(ai, "gateway.call")
}

/// The tenant's audit entries of `action`, oldest first.
pub fn audit_entries(ai: &Ai, action: &str) -> Vec<Value> {
    ai.s.env
        .ok(&["audit", "export", "--tenant", ai.tenant.as_str()])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == action)
        .collect()
}

/// Posts `body` as a chat completion and checks it is refused with 400 naming `param`;
/// returns the error body.
async fn refused_naming(ai: &Ai, auth: &str, body: &Value, param: &str) -> Value {
    let (st, _, v, raw) = post(ai, "/v1/chat/completions", &[("authorization", auth)], body).await;
    assert_eq!(st, 400, "{body}: {raw}");
    assert_eq!(v["error"]["param"], param, "{body}: {raw}");
    v
}

/// The text of an OpenAI stream's content deltas, and whether it ended with `[DONE]`.
fn openai_stream_text(raw: &str) -> (String, bool, Option<Value>) {
    let mut text = String::new();
    let mut done = false;
    let mut usage = None;
    for data in raw.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, done, usage)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_endpoint_answers_through_the_gateway_redacted_and_audited() {
    let fake = Backend::fake(&[]);
    let mut config = String::new();
    for (name, proto, model) in [
        ("o-echo", "openai", "echo"),
        ("a-echo", "anthropic", "echo"),
        ("o-limited", "openai", "rate-limited-30"),
    ] {
        config.push_str(&endpoint(name, proto, &[&fake.url], model, ""));
    }
    let ai = Ai::new(&config);
    ai.use_model("o-echo");
    let tenant = ai.tenant.as_str().to_string();
    ai.s.env.ok(&[
        "assistant",
        "redaction",
        "--tenant",
        &tenant,
        "--all-endpoints",
        "true",
    ]);
    let auth = ai.op.clone();
    let key = auth.trim_start_matches("Bearer ").to_string();
    // One line: the fake reads a passage up to a blank line.
    let passage = String::from_utf8_lossy(CONTACTS)
        .replace("\n\n", " ")
        .replace('\n', " ");

    // The models this tenant may use: extractive first, then its allowed endpoints.
    let (st, _, b) =
        ai.s.send("GET", "/v1/models", &[("authorization", &auth)], b"")
            .await;
    assert_eq!(st, 200);
    let listed: Value = serde_json::from_slice(&b).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "extractive");
    assert!(
        ids.contains(&"o-echo") && ids.contains(&"a-echo"),
        "{ids:?}"
    );

    // A plain completion: the prompt leaves with placeholders, the answer comes back whole.
    let body = json!({
        "model": "o-echo",
        "messages": [
            { "role": "system", "content": format!("Passages:\n[1] {passage}") },
            { "role": "user", "content": [{ "type": "text", "text": "When are pilots booked?" }] },
        ],
    });
    let (st, _, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        answer.contains("+44 20 7946 0958") && answer.contains("pilots@harbour.example"),
        "{answer}"
    );
    let sent = fake.requests()["last"]["body"].to_string();
    assert!(
        !sent.contains("7946") && !sent.contains("pilots@"),
        "{sent}"
    );
    assert!(
        sent.contains("<PHONE_1>") && sent.contains("<EMAIL_1>"),
        "{sent}"
    );
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");

    // Streamed: chunks, the usage chunk asked for, then [DONE]; a placeholder split across
    // chunks is put back too.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let (st, headers, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &streamed,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (text, done, usage) = openai_stream_text(&raw);
    assert!(done, "{raw}");
    assert_eq!(text, answer);
    assert!(usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);

    // Anthropic's format, with x-api-key, streamed.
    let anthropic = json!({
        "model": "a-echo", "max_tokens": 200, "stream": true,
        "system": format!("Passages:\n[1] {passage}"),
        "messages": [{ "role": "user", "content": "When are pilots booked?" }],
    });
    let (st, _, _, raw) = post(
        &ai,
        "/v1/messages",
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
        &anthropic,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let events: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    let text: String = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|v| v["type"] == "content_block_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, answer);

    // An upstream that rate-limits: 429 with Retry-After, in the vendor's shape.
    let limited =
        json!({ "model": "o-limited", "messages": [{ "role": "user", "content": "hi" }] });
    let (st, headers, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &limited,
    )
    .await;
    assert_eq!(st, 429, "{raw}");
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // One entry per call: the model, the redaction counts, the usage, the outcome.
    let calls = gateway_calls(&ai);
    assert_eq!(calls.len(), 4, "{calls:?}");
    for c in &calls[..3] {
        assert_eq!(c["params"]["outcome"], "answered", "{c}");
        assert!(
            crate::support::redacted_count(&c["params"], "PHONE") >= 1,
            "{c}"
        );
        assert!(c["params"]["usage"]["output"].as_u64().unwrap() > 0, "{c}");
        assert!(!c.to_string().contains("<PHONE_1>"), "{c}");
    }
    assert_eq!(calls[0]["params"]["protocol"], "openai");
    assert_eq!(calls[2]["params"]["protocol"], "anthropic");
    assert_eq!(calls[3]["params"]["outcome"], "failed");
    assert_eq!(calls[3]["outcome"], "failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_name_the_field_in_each_vendors_shape_and_write_nothing() {
    let ai = Ai::new("");
    let auth = ai.op.clone();
    let openai_cases: Vec<(Value, &str)> = vec![
        (
            json!({ "messages": [{ "role": "user", "content": "x" }] }),
            "model",
        ),
        (json!({ "model": "extractive" }), "messages"),
        (json!({ "model": "extractive", "messages": [] }), "messages"),
        (
            json!({ "model": "extractive", "messages": "hi" }),
            "messages",
        ),
        (
            json!({ "model": "extractive", "messages": [{ "role": "wizard", "content": "x" }] }),
            "messages[0].role",
        ),
        (
            json!({ "model": "extractive", "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }),
            "messages[0].content[0]",
        ),
        (
            json!({ "model": "extractive", "messages": [{ "role": "user", "content": "x" }], "max_tokens": 0 }),
            "max_tokens",
        ),
        (
            json!({ "model": "extractive", "messages": [{ "role": "user", "content": "x" }], "stream": "yes" }),
            "stream",
        ),
        (
            json!({ "model": "extractive", "messages": [{ "role": "system", "content": "x" }] }),
            "messages",
        ),
    ];
    for (body, param) in openai_cases {
        let v = refused_naming(&ai, &auth, &body, param).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (st, _, b) =
        ai.s.send(
            "POST",
            "/v1/chat/completions",
            &[("authorization", &auth)],
            b"{not json",
        )
        .await;
    assert_eq!(st, 400, "{}", text(&b));
    assert!(text(&b).contains("not JSON"));

    let (st, _, v, raw) = post(
        &ai,
        "/v1/messages",
        &[("authorization", &auth)],
        &json!({
            "model": "extractive", "messages": [{ "role": "user", "content": "x" }],
        }),
    )
    .await;
    assert_eq!(st, 400, "{raw}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
            || raw.contains("max_tokens"),
        "{raw}"
    );

    // Keys: none, wrong, or a signed-in browser's cookie (the gateway takes tokens only).
    let ok = json!({ "model": "extractive", "messages": [{ "role": "user", "content": "x" }] });
    for headers in [
        vec![],
        vec![("authorization", "Bearer sr_nope")],
        vec![("x-api-key", "sr_nope")],
    ] {
        let (st, _, v, raw) = post(&ai, "/v1/chat/completions", &headers, &ok).await;
        assert_eq!(st, 401, "{raw}");
        assert_eq!(v["error"]["code"], "invalid_api_key", "{raw}");
    }
    let (st, _, v, raw) = post(&ai, "/v1/messages", &[("x-api-key", "sr_nope")], &ok).await;
    assert_eq!(st, 401, "{raw}");
    assert_eq!(v["error"]["type"], "authentication_error");

    // A model this tenant may not use: 404 naming it, and the refusal is on the record.
    let unknown = json!({ "model": "gpt-9", "messages": [{ "role": "user", "content": "x" }] });
    let (st, _, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &unknown,
    )
    .await;
    assert_eq!(st, 404, "{raw}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
    let calls = gateway_calls(&ai);
    assert_eq!(
        calls.len(),
        1,
        "only the refused model is recorded: {calls:?}"
    );
    assert_eq!(calls[0]["params"]["outcome"], "model_not_found");
    assert_eq!(calls[0]["outcome"], "denied");
}

/// The tenant's limits, on the router's clock (moved, not waited for): a burst then 429 with
/// `Retry-After` in the vendor's shape, a refill with time, a day's token budget, and each
/// token with its own bucket. Refused calls reach no model; the journal counts them.
#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_with_retry_after_and_refill_with_time() {
    let ai = Ai::new("");
    let tenant = ai.tenant.as_str().to_string();
    let set = |args: &[&str]| {
        let mut a = vec!["assistant", "limits", "--tenant", &tenant];
        for s in args {
            a.extend(["--set", s]);
        }
        ai.s.env.ok(&a)
    };
    // Broken assignments are refused before anything is stored.
    let e = ai.s.env.fails(&[
        "assistant",
        "limits",
        "--tenant",
        &tenant,
        "--set",
        "token.rps=0",
    ]);
    assert!(e.contains("0.001"), "{e}");
    let e = ai.s.env.fails(&[
        "assistant",
        "limits",
        "--tenant",
        &tenant,
        "--set",
        "team.rps=1",
    ]);
    assert!(e.contains("unknown scope"), "{e}");
    // A burst without a rate limits nothing: refused, naming what is missing.
    let e = ai.s.env.fails(&[
        "assistant",
        "limits",
        "--tenant",
        &tenant,
        "--set",
        "tenant.burst=5",
    ]);
    assert!(e.contains("tenant.burst is set without tenant.rps"), "{e}");
    let shown: Value = serde_json::from_str(&set(&["token.rps=0.5", "token.burst=2"])).unwrap();
    assert_eq!(shown["token"]["rps"], 0.5);
    // The change is in the journal with its values, the per-token ones too.
    let changed = audit_entries(&ai, "policy.limits.update");
    let p = &changed.last().unwrap()["params"];
    assert_eq!(p["per_caller"]["rps"], 0.5, "{p}");
    assert_eq!(p["per_caller"]["burst"], 2, "{p}");

    let call =
        json!({ "model": "extractive", "messages": [{ "role": "user", "content": "hello" }] });
    let auth = ai.op.clone();
    for _ in 0..2 {
        let (st, _, _, raw) = post(
            &ai,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &call,
        )
        .await;
        assert_eq!(st, 200, "{raw}");
    }
    let (st, headers, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &call,
    )
    .await;
    assert_eq!(st, 429, "{raw}");
    assert_eq!(
        headers["retry-after"], "2",
        "one call at half a call per second"
    );
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests per second"),
        "{raw}"
    );
    let (st, _, v, _) = post(&ai, "/v1/messages", &[("authorization", &auth)], &json!({
        "model": "extractive", "max_tokens": 50, "messages": [{ "role": "user", "content": "hello" }],
    })).await;
    assert_eq!(st, 429);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // A streamed call is refused the same way, with its own status before any event, so
    // the SDKs raise their rate-limit errors for it too.
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({ "model": "extractive", "stream": true, "messages": [{ "role": "user", "content": "hello" }] }),
        ),
        (
            "/v1/messages",
            json!({ "model": "extractive", "stream": true, "max_tokens": 50, "messages": [{ "role": "user", "content": "hello" }] }),
        ),
    ] {
        let (st, headers, v, raw) = post(&ai, path, &[("authorization", &auth)], &body).await;
        assert_eq!(st, 429, "{path}: {raw}");
        assert_eq!(headers["retry-after"], "2", "{path}");
        assert_eq!(v["error"]["type"], "rate_limit_error", "{path}: {raw}");
    }

    // Another token of the tenant has its own bucket.
    let other = format!(
        "Bearer {}",
        ai.s.env
            .ok(&["token", "create", "--tenant", &tenant, "--role", "operator"])
            .trim()
    );
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &other)],
        &call,
    )
    .await;
    assert_eq!(st, 200, "{raw}");

    // Two seconds later, one more call for the first token.
    ai.s.clock.advance_us(2_000_000);
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &call,
    )
    .await;
    assert_eq!(st, 200, "{raw}");

    // A day's tokens: the first call spends past the budget, the next waits for midnight UTC.
    set(&[
        "token.rps=off",
        "token.burst=off",
        "tenant.tokens_per_day=5",
    ]);
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &other)],
        &call,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let (st, headers, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &call,
    )
    .await;
    assert_eq!(st, 429, "{raw}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens per day"),
        "{raw}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    ai.s.clock.advance_us(wait as i64 * 1_000_000);
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &call,
    )
    .await;
    assert_eq!(st, 200, "a new day: {raw}");

    // Only the answered calls are on the record as calls.
    assert_eq!(gateway_calls(&ai).len(), 6);
    // The refused ones are counted in entries of their own: a caller's first refusal for a
    // reason at once, the ones after it in the same window together when it ends.
    let counted = |entries: &[Value], reason: &str| -> Vec<u64> {
        entries
            .iter()
            .filter(|e| e["params"]["reason"] == reason)
            .map(|e| e["params"]["refused"].as_u64().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let entries = loop {
        let entries = audit_entries(&ai, "gateway.refused");
        if counted(&entries, "rate").iter().sum::<u64>() >= 4
            || std::time::Instant::now() > deadline
        {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(counted(&entries, "rate"), [1, 3], "{entries:?}");
    assert_eq!(counted(&entries, "tokens"), [1], "{entries:?}");
    for e in &entries {
        assert_eq!(e["outcome"], "denied", "{e}");
        assert_eq!(
            e["params"]["scope"],
            if e["params"]["reason"] == "rate" {
                "token"
            } else {
                "tenant"
            },
            "{e}"
        );
    }
}

/// Tools and the fields the gateway does not read: broken tool parts are refused naming the
/// field, before any model is asked; tools reach only a model of the caller's own API (a
/// model of the other is refused, and recorded); other fields reach the model only where the
/// tenant's policy lets them through, and the entry names the ones left behind.
#[tokio::test(flavor = "multi_thread")]
async fn tools_and_unread_fields_pass_only_where_the_api_and_the_policy_allow() {
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&format!(
        "{}{}",
        endpoint("oa", "openai", &[&fake.url], "echo", ""),
        endpoint("an", "anthropic", &[&fake.url], "echo", "")
    ));
    ai.use_model("oa");
    let auth = ai.op.clone();
    let user = json!({ "role": "user", "content": "Send it" });
    let tool = json!({ "type": "function", "function": { "name": "send_note", "parameters": {} } });
    let openai_bad: Vec<(Value, &str)> = vec![
        (
            json!({ "model": "oa", "messages": [user], "tools": "all" }),
            "tools",
        ),
        (
            json!({ "model": "oa", "messages": [user], "tools": [{ "type": "function", "function": { "name": "send note" } }] }),
            "tools[0].function.name",
        ),
        (
            json!({ "model": "oa", "messages": [user], "tools": [7] }),
            "tools[0]",
        ),
        (
            json!({ "model": "oa", "messages": [user, { "role": "tool", "content": "done" }] }),
            "messages[1].tool_call_id",
        ),
        (
            json!({ "model": "oa", "messages": [user, { "role": "assistant", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "send_note", "arguments": { "to": "x" } } }] }] }),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({ "model": "oa", "messages": [user, { "role": "assistant", "tool_calls": [{ "type": "function", "function": { "name": "send_note", "arguments": "{}" } }] }] }),
            "messages[1].tool_calls[0].id",
        ),
        (
            json!({ "model": "oa", "messages": [user, { "role": "function", "name": "f", "content": "x" }] }),
            "messages[1].role",
        ),
    ];
    for (body, param) in openai_bad {
        refused_naming(&ai, &auth, &body, param).await;
    }
    let anthropic_bad: Vec<(Value, &str)> = vec![
        (
            json!({ "model": "an", "max_tokens": 50, "messages": [user], "tools": [{ "name": "" }] }),
            "tools[0].name",
        ),
        (
            json!({ "model": "an", "max_tokens": 50, "messages": [user, { "role": "assistant", "content": [{ "type": "tool_use", "name": "send_note", "input": {} }] }] }),
            "messages.1.content.0.id",
        ),
        (
            json!({ "model": "an", "max_tokens": 50, "messages": [{ "role": "user", "content": [{ "type": "tool_use", "id": "t", "name": "send_note", "input": {} }] }] }),
            "messages.0.content.0.type",
        ),
        (
            json!({ "model": "an", "max_tokens": 50, "messages": [{ "role": "user", "content": [{ "type": "tool_result", "content": "x" }] }] }),
            "messages.0.content.0.tool_use_id",
        ),
        (
            json!({ "model": "an", "max_tokens": 50, "messages": [{ "role": "user", "content": [{ "type": "image", "source": {} }] }] }),
            "messages.0.content.0.type",
        ),
    ];
    for (body, param) in anthropic_bad {
        let (st, _, v, raw) = post(&ai, "/v1/messages", &[("authorization", &auth)], &body).await;
        assert_eq!(st, 400, "{body}: {raw}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{raw}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(param),
            "{param}: {raw}"
        );
    }
    assert_eq!(
        fake.requests()["count"],
        0,
        "no broken request reached the model"
    );
    assert!(gateway_calls(&ai).is_empty());

    // Tools written for one API, to a model of the other: refused, naming `tools`, recorded.
    let (st, _, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &json!({ "model": "an", "messages": [user], "tools": [tool] }),
    )
    .await;
    assert_eq!(st, 400, "{raw}");
    assert_eq!(v["error"]["param"], "tools", "{raw}");
    assert!(raw.contains("another API"), "{raw}");
    assert_eq!(fake.requests()["count"], 0);
    let calls = gateway_calls(&ai);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["params"]["outcome"], "unsupported");
    assert_eq!(calls[0]["params"]["error"], "GW-0005");

    // Fields the gateway does not read: left out by default, and named in the entry.
    let tuned = json!({
        "model": "oa", "messages": [user], "temperature": 0.7, "seed": 11,
        "metadata": { "ticket": "anna.schmidt@example.org" },
    });
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &tuned,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let sent = fake.requests()["last"]["body"].clone();
    assert_eq!(sent["temperature"], 0, "{sent}");
    assert!(
        sent.get("seed").is_none() && sent.get("metadata").is_none(),
        "{sent}"
    );
    let entry = gateway_calls(&ai).pop().unwrap();
    assert_eq!(
        entry["params"]["dropped"],
        json!(["metadata", "seed", "temperature"]),
        "{entry}"
    );

    // Let through by the policy: they reach a model of the caller's API, never one of the
    // other; the gateway's own fields are never the caller's to set.
    let tenant = ai.tenant.as_str().to_string();
    let e = ai.s.env.fails(&[
        "assistant",
        "policy",
        "--tenant",
        &tenant,
        "--gateway-passthrough",
        "sometimes",
    ]);
    assert!(e.contains("--gateway-passthrough"), "{e}");
    let shown = ai.s.env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        &tenant,
        "--gateway-passthrough",
        "true",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["gateway_passthrough"],
        true
    );
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &tuned,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let sent = fake.requests()["last"]["body"].clone();
    assert_eq!(sent["temperature"], 0.7, "{sent}");
    assert_eq!(sent["seed"], 11, "{sent}");
    assert_eq!(sent["model"], "echo", "{sent}");
    assert_eq!(sent["stream"], false, "{sent}");
    assert_eq!(
        gateway_calls(&ai).pop().unwrap()["params"]["dropped"],
        json!([])
    );
    let (st, _, _, raw) = post(
        &ai,
        "/v1/messages",
        &[("authorization", &auth)],
        &json!({ "model": "oa", "max_tokens": 50, "messages": [user], "top_k": 5 }),
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let sent = fake.requests()["last"]["body"].clone();
    assert!(
        sent.get("top_k").is_none(),
        "an Anthropic field went to an OpenAI model: {sent}"
    );
    assert_eq!(
        gateway_calls(&ai).pop().unwrap()["params"]["dropped"],
        json!(["top_k"])
    );

    // The extractive answerer calls no tools: it answers in text, and the entry says the
    // tools stayed behind.
    let before = fake.requests()["count"].clone();
    let (st, _, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &json!({ "model": "extractive", "messages": [user], "tools": [tool] }),
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{raw}");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{raw}"
    );
    assert_eq!(fake.requests()["count"], before);
    let entry = gateway_calls(&ai).pop().unwrap();
    assert_eq!(entry["params"]["dropped"], json!(["tools"]), "{entry}");
    assert_eq!(entry["params"]["tools"]["offered"], 1, "{entry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_models_odd_tool_calls_and_impossible_token_counts_end_cleanly() {
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&format!(
        "{}{}",
        endpoint("odd", "openai", &[&fake.url], "odd-tool-calls", ""),
        endpoint("big", "openai", &[&fake.url], "huge-usage", "")
    ));
    ai.use_model("odd");
    let auth = ai.op.clone();
    let user = json!({ "role": "user", "content": "Send it" });
    let tool = json!({ "type": "function", "function": { "name": "send_note", "parameters": {} } });
    // Calls that are not calls: a clear error, plain or streamed, and the call recorded.
    for stream in [false, true] {
        let body = json!({ "model": "odd", "messages": [user], "tools": [tool], "stream": stream });
        let (st, _, _, raw) = post(
            &ai,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &body,
        )
        .await;
        assert!(raw.contains("not a call"), "{stream}: {st} {raw}");
        assert!(!raw.contains("[DONE]"), "{raw}");
        if !stream {
            assert_eq!(st, 503, "{raw}");
        }
    }
    let calls = gateway_calls(&ai);
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["outcome"] != "success"), "{calls:?}");
    // Counts past any model's context are believed up to 2^32 each, and add up without
    // wrapping, plain and streamed.
    let bound = 1u64 << 32;
    let body = json!({ "model": "big", "messages": [user] });
    let (st, _, v, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(v["usage"]["prompt_tokens"], bound);
    assert_eq!(v["usage"]["total_tokens"], 2 * bound);
    let body = json!({ "model": "big", "messages": [user], "stream": true,
        "stream_options": { "include_usage": true } });
    let (st, _, _, raw) = post(
        &ai,
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    let (_, done, usage) = openai_stream_text(&raw);
    assert!(done, "{raw}");
    assert_eq!(usage.unwrap()["total_tokens"], 2 * bound);
}

/// The limits are for each token or person however they reach a model: assistant turns are
/// admitted like gateway calls, and a refused one gets 429 with `Retry-After`, plain and
/// streamed, before any model is asked. Before, the assistant reached models unlimited.
#[tokio::test(flavor = "multi_thread")]
async fn assistant_turns_are_held_to_the_same_limits() {
    let ai = Ai::new("");
    ai.s.env.limit_token_calls(ai.tenant.as_str(), 1);
    ai.upload(&[("pilotage.md", crate::models::PILOTAGE)]).await;
    let thread = ai.thread().await;
    let (st, turn) = ai.ask(&thread, "Where does the pilot board?").await;
    assert_eq!(st, 200, "{turn}");
    let turns = ai.turns().len();
    for path in ["ask", "stream"] {
        let (st, headers, b) =
            ai.s.send(
                "POST",
                &format!("/api/v1/conversations/{thread}/{path}"),
                &[
                    ("authorization", &ai.op),
                    ("content-type", "application/json"),
                ],
                br#"{"question":"And the fees?"}"#,
            )
            .await;
        let body = String::from_utf8_lossy(&b);
        assert_eq!(st, 429, "{path}: {body}");
        assert!(body.contains("GW-0003"), "{path}: {body}");
        assert!(headers.get("retry-after").is_some(), "{path}");
    }
    assert_eq!(ai.turns().len(), turns, "a refused turn asks no model");
}
