//! One way out to a model endpoint for every part that calls one (the assistant, the
//! gateway): before a call that may leave the host (or any call, when the tenant says so)
//! the prompt's values are replaced by placeholders, and the answer, streamed or not, gets
//! them back. The mapping lives in this call only.

use super::model::{Deltas, Message, Model, ModelError, Pending, Prompt, Raw, Reply};
use crate::policy::redaction::RedactionPolicy;
use crate::redact::pseudonym::Pseudonyms;
use crate::redact::Detector;
use std::collections::BTreeMap;

/// Values replaced, by kind; `None` when the call was not redacted.
pub type Redacted = Option<BTreeMap<String, u32>>;

/// The counts of `redacted` as an audit entry keeps them: a list of `{"kind", "count"}`, not
/// an object keyed by kind, since the journal blanks the value of any key that names a
/// secret (`API_KEY`, `PRIVATE_KEY`, `URL_PASSWORD`, a tenant's `*_TOKEN` rule): the counts
/// of the most sensitive kinds were the ones lost.
pub fn counts_param(redacted: &Redacted) -> serde_json::Value {
    match redacted {
        None => serde_json::Value::Null,
        Some(counts) => counts
            .iter()
            .map(|(kind, n)| serde_json::json!({ "kind": kind, "count": n }))
            .collect(),
    }
}

/// Calls `model` with `prompt`, redacted where the tenant's rules say so.
pub async fn call(
    calls: &super::calls::Calls,
    model: &dyn Model,
    prompt: &Prompt,
    egress_allow: &[String],
    rules: &RedactionPolicy,
    deltas: Deltas<'_>,
) -> (Result<Reply, ModelError>, Redacted) {
    if !(model.upstream() || rules.all_endpoints) {
        return (
            unless_stopping(calls, model.complete(prompt, egress_allow, deltas)).await,
            None,
        );
    }
    // Fail closed: rules that cannot be built stop the call, not the redaction.
    let detector = match rules.shared_detector() {
        Ok(d) => d,
        Err(e) => return (Err(ModelError::Unredactable(e.to_string())), None),
    };
    let mut names = Pseudonyms::new();
    let sent = pseudonymise(&mut names, &detector, prompt);
    let reply = {
        let mut restorer = names.stream();
        let mut shown = |piece: &str| {
            let text = restorer.push(piece);
            if !text.is_empty() {
                deltas(&text);
            }
        };
        let reply = unless_stopping(calls, model.complete(&sent, egress_allow, &mut shown)).await;
        let rest = restorer.finish();
        if !rest.is_empty() {
            deltas(&rest);
        }
        reply
    };
    let counts = names.counts().clone();
    let reply = reply.map(|mut r| {
        if let Some(calls) = &mut r.tool_calls {
            walk(calls, false, &mut |s| *s = names.restore(s));
        }
        Reply {
            text: names.restore(&r.text),
            ..r
        }
    });
    (reply, Some(counts))
}

/// The model's reply, or [`ModelError::Stopped`] once the server stops: a call not yet made
/// is not made, one waiting on its answer stops waiting (and is audited as cut).
async fn unless_stopping(
    calls: &super::calls::Calls,
    reply: Pending<'_>,
) -> Result<Reply, ModelError> {
    tokio::select! {
        biased;
        () = calls.stopping() => Err(ModelError::Stopped),
        r = reply => r,
    }
}

/// Keys whose strings the APIs need as they are (roles, kinds, ids, tool names), outside a
/// tool's input: never data, never replaced.
const STRUCTURAL: &[&str] = &[
    "role",
    "type",
    "id",
    "tool_call_id",
    "tool_use_id",
    "name",
    "cache_control",
];

/// Top-level fields of a call that are the caller's code, not data: passed as they are.
const DEFINITIONS: &[&str] = &["tools", "tool_choice", "parallel_tool_calls"];

/// Calls `f` on every string of `v` that may hold data. `data` is set inside a tool's input
/// (Anthropic's `input`, OpenAI's `arguments`, JSON in a string), where every string is data
/// whatever its key. Arguments that are JSON are changed as JSON and written back, so a
/// value put back never breaks their quoting.
fn walk(v: &mut serde_json::Value, data: bool, f: &mut dyn FnMut(&mut String)) {
    use serde_json::Value;
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => {
            for x in items {
                walk(x, data, f);
            }
        }
        Value::Object(fields) => {
            for (k, x) in fields.iter_mut() {
                if !data && STRUCTURAL.contains(&k.as_str()) {
                    continue;
                }
                if let (Value::String(s), "arguments") = (&mut *x, k.as_str()) {
                    if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                        if inner.is_object() || inner.is_array() {
                            walk(&mut inner, true, f);
                            *s = inner.to_string();
                            continue;
                        }
                    }
                }
                walk(x, data || k == "input", f);
            }
        }
        _ => {}
    }
}

/// Calls `f` on every string of a call's raw part that may hold data: its messages, and its
/// fields other than tool definitions.
fn walk_raw(raw: &mut Raw, f: &mut dyn FnMut(&mut String)) {
    if let Some(messages) = &mut raw.messages {
        for m in messages {
            walk(m, false, f);
        }
    }
    for (k, v) in raw.fields.iter_mut() {
        if !DEFINITIONS.contains(&k.as_str()) {
            walk(v, true, f);
        }
    }
}

/// The prompt as it leaves: the system prompt and every message with its values replaced,
/// one value one placeholder across all of them.
fn pseudonymise(names: &mut Pseudonyms, detector: &Detector, prompt: &Prompt) -> Prompt {
    names.reserve(&prompt.system);
    for m in &prompt.messages {
        names.reserve(&m.content);
    }
    let mut raw = prompt.raw.clone();
    if let Some(r) = &mut raw {
        walk_raw(r, &mut |s| names.reserve(s));
        walk_raw(r, &mut |s| *s = names.redact(detector, s));
    }
    Prompt {
        system: names.redact(detector, &prompt.system),
        messages: prompt
            .messages
            .iter()
            .map(|m| Message {
                role: m.role,
                content: names.redact(detector, &m.content),
            })
            .collect(),
        raw,
        ..prompt.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_every_kind_survive_the_journals_secret_scrub() {
        let counts: BTreeMap<String, u32> = [
            ("API_KEY", 2),
            ("PRIVATE_KEY", 1),
            ("URL_PASSWORD", 3),
            ("SERVICE_TOKEN", 4),
            ("EMAIL", 5),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
        // As an object keyed by kind, the scrub blanked four of the five.
        let mut keyed = serde_json::json!({ "redacted": counts });
        crate::audit::entry::redact(&mut keyed);
        assert_eq!(keyed["redacted"]["API_KEY"], "[redacted]");
        let mut params = serde_json::json!({ "redacted": counts_param(&Some(counts.clone())) });
        crate::audit::entry::redact(&mut params);
        let kept: BTreeMap<String, u32> = params["redacted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap().to_string(),
                    u32::try_from(c["count"].as_u64().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(kept, counts);
        assert_eq!(counts_param(&None), serde_json::Value::Null);
    }
}
