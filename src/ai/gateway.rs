//! The governed gateway's calls: a chat in a vendor's format, already parsed into a [`Call`],
//! answered by the model its id names for the caller's tenant (an endpoint the tenant's
//! policy allows, or `extractive`, which answers from the tenant's documents with
//! citations), through the one way out ([`super::outgoing`]: redaction where the policy
//! says so). Every call writes one audit entry, durable before the answer is complete; a
//! call whose entry cannot be written fails.

use super::assistant::{retained, Models};
use super::context::Context;
use super::extractive;
use super::limits::{CallLimiter, Denied, Held, Refusal, Scoped};
use super::model::{Deltas, Message, ModelError, Prompt, Protocol, Raw, Reply, Role, Stop};
use crate::audit::Outcome;
use crate::door::{Audit, TenantCtx};
use crate::identity::Permission;
use crate::knowledge::KnowledgeError;
use crate::policy::ai::AiPolicy;
use crate::policy::limits::LimitPolicy;
use crate::policy::redaction::RedactionPolicy;
use crate::store::StoreError;

/// Most tokens a call may ask for.
pub const MAX_TOKENS: u32 = 32_768;

/// One call, whatever the vendor format it came in.
#[derive(Debug, Clone)]
pub struct Call {
    /// `openai` or `anthropic`: the format, for the audit entry.
    pub protocol: &'static str,
    pub model: String,
    /// The system messages, joined.
    pub system: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub stream: bool,
    /// Tool definitions, tool calls and results, and fields the gateway does not read, in
    /// the caller's API: they go only to an endpoint of that API (see [`Raw`]).
    pub raw: Option<Raw>,
}

/// A call's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub stop: Option<Stop>,
    /// The tools the model called, in the caller's API (see [`Reply::tool_calls`]).
    pub tool_calls: Option<serde_json::Value>,
}

/// Fields of a call that are tool definitions: passed with the call's tool messages.
const TOOL_FIELDS: &[&str] = &["tools", "tool_choice", "parallel_tool_calls"];

/// What of a call's raw part goes to the endpoint `to` (its API, `None` for `extractive`),
/// and the names of the fields left behind: tool parts go only to an endpoint of the
/// caller's API (elsewhere the call is refused); fields the gateway does not read go only
/// where the tenant's policy lets them through, and also only to the caller's API.
///
/// # Errors
/// Tool parts for an endpoint of another API.
fn raw_for(
    call: &Call,
    to: Option<Protocol>,
    passthrough: bool,
) -> Result<(Option<Raw>, Vec<String>), GatewayError> {
    let Some(raw) = &call.raw else {
        return Ok((None, Vec::new()));
    };
    let same = to == Some(raw.protocol);
    if raw.has_tools() && to.is_some() && !same {
        return Err(GatewayError::Unsupported {
            param: "tools",
            message: format!(
                "the model {:?} speaks another API than this request's; tools and tool results pass only to a model of the API they are written for",
                call.model
            ),
        });
    }
    let mut kept = serde_json::Map::new();
    let mut dropped = Vec::new();
    for (k, v) in &raw.fields {
        let tool = TOOL_FIELDS.contains(&k.as_str());
        if same && (tool || passthrough) {
            kept.insert(k.clone(), v.clone());
        } else {
            dropped.push(k.clone());
        }
    }
    dropped.sort();
    let messages = if same { raw.messages.clone() } else { None };
    if messages.is_none() && kept.is_empty() {
        return Ok((None, dropped));
    }
    Ok((
        Some(Raw {
            protocol: raw.protocol,
            messages,
            fields: kept,
        }),
        dropped,
    ))
}

/// The names of the tools a reply called, for the audit entry.
fn called(tool_calls: Option<&serde_json::Value>) -> Vec<String> {
    tool_calls
        .and_then(serde_json::Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| {
                    c["function"]["name"].as_str().or_else(|| {
                        (c["type"] == "tool_use")
                            .then(|| c["name"].as_str())
                            .flatten()
                    })
                })
                .map(|n| n.chars().take(64).collect())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the model {0:?} does not exist or this tenant may not use it")]
    ModelNotFound(String),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Limited(Refusal),
    #[error("{param}: {message}")]
    Unsupported {
        param: &'static str,
        message: String,
    },
    #[error("the limits on calls to models could not be checked (the shared limit store does not answer), so the call was not made; retry in a moment")]
    LimitsUnavailable,
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error(transparent)]
    Denied(#[from] crate::identity::Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::ModelNotFound(_) => "GW-0001",
            Self::Model(e) => e.code(),
            Self::Limited(_) => "GW-0003",
            Self::LimitsUnavailable => "GW-0004",
            Self::Unsupported { .. } => "GW-0005",
            Self::Knowledge(e) => e.code(),
            Self::Denied(_) => "GW-0002",
            Self::Store(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

fn db(e: &rusqlite::Error) -> GatewayError {
    GatewayError::Store(StoreError::from_sqlite("gateway", 0, e))
}

/// The models the caller's tenant may use: `extractive` first, then the configured
/// endpoints its policy allows.
///
/// # Errors
/// Permission or a storage fault.
pub async fn models(
    ctx: &TenantCtx,
    models: &Models,
    rules: &RulesCache,
    now: Now,
) -> Result<Vec<String>, GatewayError> {
    ctx.caller().require(Permission::AssistantUse)?;
    let rules = rules.get(ctx, now).await?;
    let mut out = vec![extractive::MODEL.to_string()];
    out.extend(
        rules
            .policy
            .endpoints
            .iter()
            .filter(|e| models.get(e).is_some())
            .cloned(),
    );
    Ok(out)
}

/// A tenant's rules for calls to models, as one read gives them.
#[derive(Debug)]
pub struct Rules {
    policy: AiPolicy,
    redaction: RedactionPolicy,
    limits: LimitPolicy,
}

/// How long kept rules are trusted before they are read again, whatever else holds.
pub const RULES_REVALIDATE_US: i64 = 10_000_000;

/// Most tenants whose rules are kept; past it the whole set is read again as used.
const RULES_KEPT: usize = 100_000;

/// When a call looks at the kept rules: the clock, and the data directory's identity epoch
/// (see [`crate::app::IDENTITY_EPOCH`]), which the CLI replaces after it changed a tenant's
/// rules.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub us: i64,
    pub epoch: u64,
}

/// Each tenant's rules, kept between calls. Read on every call, they were a fifth of its
/// time: a reader handed the call, and the rules' pages decrypted again after every commit
/// of an audit entry. Kept rules are used while this process has changed no policy since
/// they were read ([`crate::policy::generation`]), the identity epoch is the one they were
/// read under, and they are younger than [`RULES_REVALIDATE_US`]; otherwise they are read
/// again.
#[derive(Default)]
pub struct RulesCache {
    kept: std::sync::RwLock<std::collections::HashMap<crate::ids::TenantId, Kept>>,
}

struct Kept {
    rules: std::sync::Arc<Rules>,
    generation: u64,
    epoch: u64,
    read_us: i64,
}

impl RulesCache {
    /// The caller's tenant's rules, kept or read now (as the caller, through the door).
    ///
    /// # Errors
    /// A storage fault.
    pub async fn get(
        &self,
        ctx: &TenantCtx,
        now: Now,
    ) -> Result<std::sync::Arc<Rules>, GatewayError> {
        // Taken before the read: a change committed after this is not in what is read, and
        // the number it moves marks the rules read here as stale.
        let generation = crate::policy::generation();
        if let Ok(kept) = self.kept.read() {
            if let Some(k) = kept.get(ctx.tenant()) {
                let age = now.us - k.read_us;
                if k.generation == generation
                    && k.epoch == now.epoch
                    && (0..RULES_REVALIDATE_US).contains(&age)
                {
                    return Ok(k.rules.clone());
                }
            }
        }
        let rules = std::sync::Arc::new(
            ctx.read(|c| {
                Ok::<_, GatewayError>(Rules {
                    policy: AiPolicy::read(c).map_err(|e| db(&e))?,
                    redaction: RedactionPolicy::read(c).map_err(|e| db(&e))?,
                    limits: LimitPolicy::read(c).map_err(|e| db(&e))?,
                })
            })
            .await?,
        );
        if let Ok(mut kept) = self.kept.write() {
            if kept.len() >= RULES_KEPT {
                kept.clear();
            }
            kept.insert(
                ctx.tenant().clone(),
                Kept {
                    rules: rules.clone(),
                    generation,
                    epoch: now.epoch,
                    read_us: now.us,
                },
            );
        }
        Ok(rules)
    }
}

/// Words, as the extractive answerer counts tokens.
fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A call let in by its tenant's limits, with the tenant's rules read for it. The call is
/// in progress (for the concurrency limits) until this is dropped.
#[derive(Debug)]
pub struct Admitted {
    rules: std::sync::Arc<Rules>,
    scopes: Vec<Scoped>,
    now_us: i64,
    _held: Held,
}

impl Admitted {
    /// Counts `tokens` of an admitted call that did not go through [`answer`] (an
    /// assistant turn) against the day's budgets.
    pub async fn spend(&self, limiter: &CallLimiter, tokens: u64) {
        limiter.spend(self.now_us, &self.scopes, tokens).await;
    }
}

/// Lets a call of the caller in, or refuses it, by its tenant's limits on `limiter` (this
/// node's, or shared through Redis) at `now_us`. A refused call reaches no model and writes
/// no `gateway.call` entry (the web layer counts it in a `gateway.refused` entry, see
/// [`super::refusals`]). Done before a streamed answer
/// begins, so a refusal is a status of its own (429, 503), not an event inside a stream.
///
/// # Errors
/// Permission, a limit, limits that could not be checked (shared, closed policy), or a
/// storage fault.
pub async fn admit(
    ctx: &TenantCtx,
    limiter: &CallLimiter,
    rules: &RulesCache,
    now: Now,
) -> Result<Admitted, GatewayError> {
    ctx.caller().require(Permission::AssistantUse)?;
    let now_us = now.us;
    let rules = rules.get(ctx, now).await?;
    let limits = rules.limits;
    let actor = ctx.actor();
    let scopes = vec![
        (
            format!("tenant:{}", ctx.tenant().as_str()),
            limits.tenant,
            "tenant",
        ),
        (
            format!(
                "caller:{}:{}:{}",
                ctx.tenant().as_str(),
                actor.kind.as_str(),
                actor.id
            ),
            limits.token,
            "token",
        ),
    ];
    let held = limiter
        .admit(now_us, &scopes, limits.on_shared_failure)
        .await
        .map_err(|d| match d {
            Denied::Limited(r) => GatewayError::Limited(r),
            Denied::Unavailable => GatewayError::LimitsUnavailable,
        })?;
    Ok(Admitted {
        rules,
        scopes,
        now_us,
        _held: held,
    })
}

/// Answers `call` for the caller's tenant, [`admit`]ted first, handing text to `deltas` as
/// it arrives.
///
/// # Errors
/// As [`admit`] and [`answer`].
pub async fn complete(
    ctx: &TenantCtx,
    models: &Models,
    limiter: &CallLimiter,
    rules: &RulesCache,
    now: Now,
    call: &Call,
    deltas: Deltas<'_>,
) -> Result<Answer, GatewayError> {
    let admitted = admit(ctx, limiter, rules, now).await?;
    answer(ctx, models, limiter, admitted, call, deltas).await
}

/// Answers an admitted `call`, handing text to `deltas` as it arrives, and writes the
/// call's audit entry before returning; the tokens it used count against the day's budgets.
///
/// # Errors
/// An unknown model or one of another API for its tools (audited), the model's failure
/// (audited), or a storage fault (the entry could not be written: the call fails).
pub async fn answer(
    ctx: &TenantCtx,
    models: &Models,
    limiter: &CallLimiter,
    admitted: Admitted,
    call: &Call,
    deltas: Deltas<'_>,
) -> Result<Answer, GatewayError> {
    let started = std::time::Instant::now();
    let Admitted {
        rules,
        scopes,
        now_us,
        _held,
    } = admitted;
    let (policy, redaction) = (&rules.policy, &rules.redaction);
    let prompt = Prompt {
        system: call.system.clone(),
        messages: call.messages.clone(),
        max_tokens: call.max_tokens,
        stream: call.stream,
        raw: call.raw.clone(),
    };
    let mut redacted = None;
    // Fields of the call that stayed behind, and whether any tools were offered.
    let mut dropped: Vec<String> = Vec::new();
    let mut tools_sent = false;
    let offered = call
        .raw
        .as_ref()
        .and_then(|r| r.fields.get("tools"))
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    let mut endpoint = None;
    // Citation ids of the tenant's passages the model was given, if any.
    let mut retrieved: Vec<String> = Vec::new();
    let reply: Result<Reply, GatewayError> = if call.model == extractive::MODEL {
        // The extractive answerer reads the question alone and calls no tools.
        dropped = call
            .raw
            .as_ref()
            .map(|r| {
                let mut keys: Vec<String> = r.fields.keys().cloned().collect();
                keys.sort();
                keys
            })
            .unwrap_or_default();
        extractive_reply(ctx, call, deltas).await.map(|(r, ids)| {
            retrieved = ids;
            r
        })
    } else if !policy.endpoints.contains(&call.model) {
        Err(GatewayError::ModelNotFound(call.model.clone()))
    } else if let Some(m) = models.get(&call.model) {
        // The tenant's knowledge goes along only where its policy says so: by default the
        // gateway passes the caller's own messages and nothing of the tenant's documents.
        let raw = raw_for(call, m.protocol(), policy.gateway_passthrough);
        let context = match &raw {
            Err(_) => Ok(None),
            Ok(_) if policy.gateway_context => retrieve(ctx, &question_of(call)).await.map(Some),
            Ok(_) => Ok(None),
        };
        match raw.and_then(|raw| context.map(|c| (raw, c))) {
            Err(e) => Err(e),
            Ok(((raw, left), context)) => {
                dropped = left;
                tools_sent = raw.as_ref().is_some_and(Raw::has_tools);
                // Built field by field: the prompt's own raw part (the whole call, for the
                // entry) is not copied only to be replaced.
                let mut sent = Prompt {
                    system: prompt.system.clone(),
                    messages: prompt.messages.clone(),
                    max_tokens: prompt.max_tokens,
                    stream: prompt.stream,
                    raw,
                };
                if let Some(c) = &context {
                    retrieved = c.citation_ids();
                    sent.system = if call.system.is_empty() {
                        c.system_prompt()
                    } else {
                        format!("{}\n\n{}", c.system_prompt(), call.system)
                    };
                }
                let (reply, counts) = super::outgoing::call(
                    models.calls(),
                    m.as_ref(),
                    &sent,
                    &policy.egress_allow,
                    redaction,
                    deltas,
                )
                .await;
                redacted = counts;
                reply.map_err(GatewayError::from)
            }
        }
    } else {
        Err(GatewayError::ModelNotFound(call.model.clone()))
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let answer: Result<Answer, GatewayError> = reply.map(|r| {
        endpoint.clone_from(&r.endpoint);
        // Tool calls go back only to a caller that offered tools, in its own API.
        let tool_calls = r.tool_calls.filter(|_| tools_sent);
        let stop = match r.stop {
            Some(Stop::ToolUse) if tool_calls.is_none() => Some(Stop::End),
            s => s,
        };
        Answer {
            input_tokens: r.input_tokens.unwrap_or_else(|| words(&prompt.full_text())),
            output_tokens: r.output_tokens.unwrap_or_else(|| words(&r.text)),
            text: r.text,
            stop,
            tool_calls,
        }
    });
    if let Ok(a) = &answer {
        limiter
            .spend(
                now_us,
                &scopes,
                a.input_tokens.saturating_add(a.output_tokens),
            )
            .await;
    }
    let (outcome, kind) = match &answer {
        Ok(_) => ("answered", Outcome::Success),
        Err(GatewayError::ModelNotFound(_)) => ("model_not_found", Outcome::Denied),
        Err(GatewayError::Unsupported { .. }) => ("unsupported", Outcome::Denied),
        Err(_) => ("failed", Outcome::Failure),
    };
    let ok = answer.as_ref().ok();
    let params = serde_json::json!({
        "protocol": call.protocol,
        "model": call.model,
        "endpoint": endpoint,
        "redacted": super::outgoing::counts_param(&redacted),
        "retrieved": retrieved,
        "tools": {
            "offered": offered,
            "called": called(ok.and_then(|a| a.tool_calls.as_ref())),
        },
        "dropped": dropped,
        "usage": {
            "input": ok.map(|a| a.input_tokens),
            "output": ok.map(|a| a.output_tokens),
        },
        "latency_ms": latency_ms,
        "stream": call.stream,
        "outcome": outcome,
        "error": answer.as_ref().err().map(GatewayError::code),
        "prompt": retained(policy.retention, &prompt.full_text()),
        "answer": retained(policy.retention, ok.map_or("", |a| a.text.as_str())),
    });
    let audit = Audit::new("gateway.call", &call.model)
        .params(params)
        .outcome(kind);
    // Fail closed: an answer whose entry cannot be written is not given.
    ctx.change(move |_| Ok::<_, GatewayError>(((), audit.clone())))
        .await?;
    answer
}

/// The question of a call: its last user message.
fn question_of(call: &Call) -> String {
    call.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// The passages of `question` from the caller's tenant, and only from it.
async fn retrieve(ctx: &TenantCtx, question: &str) -> Result<Context, GatewayError> {
    ctx.caller().require(Permission::KnowledgeRead)?;
    // A question's quotes are not a phrase search: every word counts.
    let q = question.replace('"', " ");
    ctx.read(move |c| {
        Ok::<_, GatewayError>(Context {
            passages: crate::knowledge::library::search_in(
                c,
                &q,
                &Default::default(),
                super::context::PASSAGES,
            )?,
        })
    })
    .await
}

/// The extractive answerer: the last user message is the question, the tenant's documents
/// the only source.
async fn extractive_reply(
    ctx: &TenantCtx,
    call: &Call,
    deltas: Deltas<'_>,
) -> Result<(Reply, Vec<String>), GatewayError> {
    let question = question_of(call);
    let context = retrieve(ctx, &question).await?;
    let text = extractive::answer(&question, &context);
    deltas(&text);
    let reply = Reply {
        input_tokens: Some(words(&question) + words(&context.system_prompt())),
        output_tokens: Some(words(&text)),
        text,
        model: extractive::MODEL.into(),
        stop: Some(Stop::End),
        ..Reply::default()
    };
    Ok((reply, context.citation_ids()))
}

crate::domain_error!(GatewayError, |e| {
    use crate::error::ErrorKind;
    match e {
        GatewayError::ModelNotFound(_) => ErrorKind::NotFound,
        GatewayError::Model(m) => m.kind(),
        GatewayError::Limited(_) => ErrorKind::Throttled,
        GatewayError::LimitsUnavailable => ErrorKind::Busy,
        GatewayError::Unsupported { .. } => ErrorKind::Invalid,
        GatewayError::Knowledge(e) => crate::error::DomainError::kind(e),
        GatewayError::Denied(_) => ErrorKind::Forbidden,
        GatewayError::Store(e) => crate::error::DomainError::kind(e),
        GatewayError::Tenant(e) => crate::error::DomainError::kind(e),
    }
});
