//! Tools through the gateway: each vendor's own SDK offers a tool to a model behind the
//! gateway (`tests/gateway/sdk_tools.py` against the fake of `tests/fakemodel/server.py`),
//! gets the model's tool call back as its API writes it, plain and streamed, and sends the
//! tool's result back. The values of the call leave as placeholders, in the question, in the
//! tool call's arguments sent back and in the tool's result, and are put back in what the
//! caller gets.

use crate::gateway::{gateway_calls, run_script, sdk_python};
use crate::models::{endpoint, Backend};
use crate::support::{Env, Server};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/sdk_tools.py");
const QUESTION: &str = "Send the minutes to anna.schmidt@example.org please";
const RESULT: &str = "Sent to anna.schmidt@example.org at 10:02";

#[test]
fn tool_calls_go_through_each_vendors_sdk_with_their_values_put_back() {
    let Some(py) = sdk_python() else {
        return;
    };
    let fake = Backend::fake(&[]);
    let env = Env::init();
    std::fs::write(
        &env.config,
        format!(
            "{}{}",
            endpoint("oa", "openai", &[&fake.url], "echo", ""),
            endpoint("an", "anthropic", &[&fake.url], "echo", "")
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
        "oa,an",
    ]);
    // The fake is on loopback: redaction is asked for every endpoint.
    env.ok(&[
        "assistant",
        "redaction",
        "--tenant",
        &t,
        "--all-endpoints",
        "true",
    ]);
    let key = env
        .ok(&["token", "create", "--tenant", &t, "--role", "operator"])
        .trim()
        .to_string();
    let server = Server::start(&env, &[]);
    let root = format!("https://127.0.0.1:{}", server.addr.port());

    for (vendor, base_url, model, finish) in [
        ("openai", format!("{root}/v1"), "oa", "tool_calls"),
        ("anthropic", root.clone(), "an", "tool_use"),
    ] {
        let r = run_script(
            &py,
            SCRIPT,
            vendor,
            &base_url,
            &key,
            &env.cert(),
            &["--model", model, "--question", QUESTION, "--result", RESULT],
        );
        let all = format!("{vendor}: {r:#}");
        // The model was given the question with a placeholder and called the tool with it;
        // the caller's SDK reads the call with the address put back.
        for (scenario, finish_key, calls_key) in [
            ("plain", "finish", "calls"),
            ("streamed", "stream_finish", "stream_calls"),
        ] {
            let got = &r[scenario];
            assert_eq!(got[finish_key], finish, "{scenario}: {all}");
            let calls = got[calls_key].as_array().unwrap_or_else(|| panic!("{all}"));
            assert_eq!(calls.len(), 1, "{scenario}: {all}");
            assert_eq!(calls[0]["name"], "send_note", "{scenario}: {all}");
            assert_eq!(calls[0]["input"]["to"], QUESTION, "{scenario}: {all}");
            assert!(
                calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{scenario}: {all}"
            );
        }
        if vendor == "anthropic" {
            // The text block before the tool call comes along, in the stream too.
            assert_eq!(r["plain"]["text"], "Calling send_note.", "{all}");
            assert_eq!(r["streamed"]["stream_text"], "Calling send_note.", "{all}");
        } else {
            assert_eq!(r["plain"]["text"], Value::Null, "{all}");
        }
        assert_eq!(
            r["result"]["result_answer"],
            format!("Tool said: {RESULT}"),
            "{all}"
        );

        // What the model was sent: never the address; the tool definition as the caller
        // wrote it; the tool's result and the call's arguments as placeholders; and a call
        // that may end in a tool call asked whole.
        let seen = fake.requests()["recent"].clone();
        let bodies: Vec<&Value> = seen.as_array().unwrap().iter().rev().take(3).collect();
        assert_eq!(bodies.len(), 3, "{seen:#}");
        for b in &bodies {
            let text = b.to_string();
            assert!(!text.contains("anna.schmidt"), "{vendor}: {text}");
            assert_eq!(b["stream"], false, "{vendor}: {text}");
            let name = if vendor == "openai" {
                &b["tools"][0]["function"]["name"]
            } else {
                &b["tools"][0]["name"]
            };
            assert_eq!(name, "send_note", "{vendor}: {text}");
        }
        // Newest first: streamed, result, plain. The result's round trip sent the tool
        // call's arguments and the tool's answer with the placeholder in place of the value.
        let round = bodies[1]["messages"].as_array().unwrap();
        if vendor == "openai" {
            let args = round
                .iter()
                .find_map(|m| m["tool_calls"][0]["function"]["arguments"].as_str())
                .unwrap_or_else(|| panic!("{round:#?}"));
            let args: Value = serde_json::from_str(args).unwrap();
            assert_eq!(
                args["to"], "Send the minutes to <EMAIL_1> please",
                "{round:#?}"
            );
            let tool = round.iter().find(|m| m["role"] == "tool").unwrap();
            assert_eq!(tool["content"], "Sent to <EMAIL_1> at 10:02", "{round:#?}");
        } else {
            assert_eq!(
                round[1]["content"][1]["input"]["to"], "Send the minutes to <EMAIL_1> please",
                "{round:#?}"
            );
            assert_eq!(
                round[2]["content"][0]["content"], "Sent to <EMAIL_1> at 10:02",
                "{round:#?}"
            );
        }
    }

    // Every call is one entry: one tool offered, the tool called by the first calls, values
    // replaced by kind.
    let calls = gateway_calls(&env.ok(&["audit", "export", "--tenant", &t]));
    assert_eq!(calls.len(), 6, "{calls:#?}");
    for e in &calls {
        let p = &e["params"];
        assert_eq!(p["outcome"], "answered", "{e}");
        assert_eq!(p["tools"]["offered"], 1, "{e}");
        assert!(crate::support::redacted_count(p, "EMAIL") >= 1, "{e}");
        assert_eq!(p["dropped"], serde_json::json!([]), "{e}");
    }
    let called: Vec<&Value> = calls
        .iter()
        .map(|e| &e["params"]["tools"]["called"])
        .collect();
    assert_eq!(
        called
            .iter()
            .filter(|c| **c == &serde_json::json!(["send_note"]))
            .count(),
        4,
        "{called:?}"
    );
}
