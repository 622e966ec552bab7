//! One way out to a model endpoint for every part that calls one (the assistant, the
//! gateway): before a call that may leave the host (or any call, when the tenant says so)
//! the prompt's values are replaced by placeholders, and the answer, streamed or not, gets
//! them back. The mapping lives in this call only.

use super::model::{Deltas, Message, Model, ModelError, Prompt, Reply};
use crate::policy::redaction::RedactionPolicy;
use crate::redact::pseudonym::Pseudonyms;
use crate::redact::Detector;
use std::collections::BTreeMap;

/// Values replaced, by kind; `None` when the call was not redacted.
pub type Redacted = Option<BTreeMap<String, u32>>;

/// Calls `model` with `prompt`, redacted where the tenant's rules say so.
pub async fn call(
    model: &dyn Model,
    prompt: &Prompt,
    egress_allow: &[String],
    rules: &RedactionPolicy,
    deltas: Deltas<'_>,
) -> (Result<Reply, ModelError>, Redacted) {
    if !(model.upstream() || rules.all_endpoints) {
        return (model.complete(prompt, egress_allow, deltas).await, None);
    }
    // Fail closed: rules that cannot be built stop the call, not the redaction.
    let detector = match rules.detector() {
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
        let reply = model.complete(&sent, egress_allow, &mut shown).await;
        let rest = restorer.finish();
        if !rest.is_empty() {
            deltas(&rest);
        }
        reply
    };
    let counts = names.counts().clone();
    let reply = reply.map(|r| Reply {
        text: names.restore(&r.text),
        ..r
    });
    (reply, Some(counts))
}

/// The prompt as it leaves: the system prompt and every message with its values replaced,
/// one value one placeholder across all of them.
fn pseudonymise(names: &mut Pseudonyms, detector: &Detector, prompt: &Prompt) -> Prompt {
    names.reserve(&prompt.system);
    for m in &prompt.messages {
        names.reserve(&m.content);
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
        ..prompt.clone()
    }
}
