//! Conversations with the assistant, in the tenant's own file: threads of one person, and
//! their turns (question, answer, model, citations kept and flagged, usage, latency,
//! outcome). Each turn is stored in the transaction of its audit entry, so an answer whose
//! entry cannot be written is not given.

use super::context::Context;
use super::extractive;
use super::model::{Message, Model, ModelError, Prompt, Reply, Role};
use crate::audit::{ActorKind, Outcome};
use crate::door::{Audit, TenantCtx};
use crate::identity::Permission;
use crate::ids::ThreadId;
use crate::knowledge::KnowledgeError;
use crate::policy::ai::{AiPolicy, Retention};
use crate::policy::redaction::RedactionPolicy;
use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The tenant file's conversation tables.
pub const SCHEMA: crate::store::migrate::Module = crate::store::migrate::Module {
    name: "assistant",
    steps: &["
CREATE TABLE threads (
    id         TEXT PRIMARY KEY,
    owner_kind TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    title      TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
) STRICT;
CREATE INDEX threads_by_owner ON threads(owner_kind, owner_id, updated_us);
CREATE TABLE turns (
    id            INTEGER PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES threads(id),
    question      TEXT NOT NULL,
    answer        TEXT NOT NULL,
    model         TEXT NOT NULL,
    endpoint      TEXT,
    outcome       TEXT NOT NULL,
    citations     TEXT NOT NULL,
    flagged       TEXT NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    latency_ms    INTEGER NOT NULL,
    created_us    INTEGER NOT NULL
) STRICT;
CREATE INDEX turns_by_thread ON turns(thread_id, id);
"],
};

/// Longest question taken, in characters.
pub const MAX_QUESTION: usize = 4000;
/// Longest conversation title, in characters.
pub const MAX_TITLE: usize = 200;
/// Most threads a person keeps; the oldest must be removed first.
pub const MAX_THREADS: i64 = 1000;
/// Most turns of a thread sent back to a model as the conversation so far.
const HISTORY: usize = 4;
/// Characters of a prompt or an answer an audit entry keeps under the preview rule.
pub const PREVIEW: usize = 200;
/// Longest answer asked of a model.
const MAX_TOKENS: u32 = 512;

/// What the person sees when an answer cited nothing and the tenant requires citations.
pub const UNGROUNDED: &str = "No answer: the model's reply cited none of your documents, and this tenant's policy (grounded_only) allows only answers that cite them. Try asking about something your documents cover.";

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("the question is empty")]
    EmptyQuestion,
    #[error("the question is longer than {MAX_QUESTION} characters")]
    QuestionTooLong,
    #[error("invalid title: {0}")]
    BadTitle(String),
    #[error("no conversation {0}")]
    NotFound(String),
    #[error("you already have {MAX_THREADS} conversations; remove some first")]
    TooMany,
    #[error("{0}")]
    BadBody(String),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    InvalidId(#[from] crate::ids::InvalidId),
    #[error(transparent)]
    Denied(#[from] crate::identity::Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

impl AssistantError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyQuestion => "AST-0001",
            Self::QuestionTooLong => "AST-0002",
            Self::BadTitle(_) => "AST-0003",
            Self::NotFound(_) => "AST-0004",
            Self::TooMany => "AST-0005",
            Self::BadBody(_) => "AST-0007",
            Self::Denied(_) => "AST-0006",
            Self::Model(e) => e.code(),
            Self::Knowledge(e) => e.code(),
            Self::Policy(e) => e.code(),
            Self::InvalidId(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Tenant(e) => e.code(),
        }
    }
}

crate::domain_error!(AssistantError, |e| {
    use crate::error::ErrorKind;
    match e {
        AssistantError::EmptyQuestion
        | AssistantError::QuestionTooLong
        | AssistantError::BadTitle(_)
        | AssistantError::BadBody(_)
        | AssistantError::InvalidId(_) => ErrorKind::Invalid,
        AssistantError::NotFound(_) => ErrorKind::NotFound,
        AssistantError::TooMany => ErrorKind::Conflict,
        AssistantError::Denied(_) => ErrorKind::Forbidden,
        AssistantError::Model(m) => m.kind(),
        AssistantError::Knowledge(e) => e.kind(),
        AssistantError::Policy(e) => e.kind(),
        AssistantError::Store(e) => e.kind(),
        AssistantError::Tenant(e) => e.kind(),
    }
});

fn db(e: rusqlite::Error) -> AssistantError {
    AssistantError::Store(StoreError::from_sqlite("assistant", 0, &e))
}

impl Turn {
    /// The tokens the turn used, as the model counted them (0 where it did not say).
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.output_tokens.unwrap_or(0))
    }
}

/// The configured model endpoints, by name.
#[derive(Default, Clone)]
pub struct Models {
    by_name: HashMap<String, Arc<dyn Model>>,
    calls: super::calls::Calls,
}

impl Models {
    pub fn new(models: Vec<Arc<dyn Model>>) -> Self {
        Self {
            by_name: models
                .into_iter()
                .map(|m| (m.name().to_string(), m))
                .collect(),
            calls: super::calls::Calls::default(),
        }
    }

    /// The calls in progress to these endpoints.
    pub fn calls(&self) -> &super::calls::Calls {
        &self.calls
    }

    /// Names of every configured endpoint, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Model>> {
        self.by_name.get(name)
    }

    /// Each endpoint's calls in progress and waiting and its breakers, by name.
    pub fn states(&self) -> Vec<crate::metrics::EndpointState> {
        let mut v: Vec<_> = self.by_name.values().filter_map(|m| m.state()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// An answer that cites the documents (or any answer, where grounding is not required).
    Answered,
    /// Nothing relevant was found; said so.
    NothingFound,
    /// The answer cited nothing and the tenant requires citations: refused.
    Ungrounded,
    /// The model failed; the answer is the error.
    Failed,
}

impl TurnOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::NothingFound => "nothing_found",
            Self::Ungrounded => "ungrounded",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        [
            Self::Answered,
            Self::NothingFound,
            Self::Ungrounded,
            Self::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .unwrap_or(Self::Failed)
    }
}

/// A passage an answer cites: the number it had in the prompt and its citation id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Citation {
    pub n: usize,
    pub citation: String,
    pub document: String,
}

/// One question and its answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Turn {
    pub id: i64,
    pub thread: ThreadId,
    pub question: String,
    pub answer: String,
    pub model: String,
    pub endpoint: Option<String>,
    pub outcome: TurnOutcome,
    pub citations: Vec<Citation>,
    /// Numbers the model cited that named no passage given; removed from the answer.
    pub flagged: Vec<usize>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: u64,
    pub created_us: i64,
}

/// A thread as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Thread {
    pub id: ThreadId,
    pub title: String,
    pub created_us: i64,
    pub updated_us: i64,
    pub turns: i64,
}

/// The question, trimmed, if it is one: not empty, and at most [`MAX_QUESTION`]
/// characters as given.
///
/// # Errors
/// Empty (or only spaces), or too long.
pub fn check_question(question: &str) -> Result<String, AssistantError> {
    if question.chars().count() > MAX_QUESTION {
        return Err(AssistantError::QuestionTooLong);
    }
    let question = question.trim();
    if question.is_empty() {
        return Err(AssistantError::EmptyQuestion);
    }
    Ok(question.to_string())
}

fn owner(ctx: &TenantCtx) -> (&'static str, String) {
    let a = &ctx.caller().actor;
    (a.kind.as_str(), a.id.clone())
}

fn require(ctx: &TenantCtx) -> Result<(), AssistantError> {
    ctx.caller().require(Permission::AssistantUse)?;
    // The assistant reads the tenant's documents for its caller, so it needs both.
    ctx.caller().require(Permission::KnowledgeRead)?;
    if ctx.caller().actor.kind == ActorKind::System {
        return Err(AssistantError::Denied(crate::identity::Denied(
            "assistant.use",
        )));
    }
    Ok(())
}

/// Starts a thread of the caller's.
///
/// # Errors
/// Permission, a bad title, too many threads, or a storage fault.
pub async fn create(ctx: &TenantCtx, title: Option<&str>) -> Result<Thread, AssistantError> {
    require(ctx)?;
    // Also measured as given, as the API documents it (200 characters at most).
    if title.is_some_and(|t| t.chars().count() > MAX_TITLE) {
        return Err(AssistantError::BadTitle(format!(
            "longer than {MAX_TITLE} characters"
        )));
    }
    let title = match title.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => crate::text::display_name(t, MAX_TITLE)
            .map_err(|p| AssistantError::BadTitle(p.to_string()))?,
        None => "New conversation".to_string(),
    };
    let id = ThreadId::from_trusted(crate::keyring::random_id().map_err(|e| StoreError::Io {
        what: "assistant".into(),
        reason: e.to_string(),
    })?);
    let (kind, who) = owner(ctx);
    ctx.change(move |tx| {
        let c = tx.conn();
        let now = tx.now_us();
        let count: i64 = c
            .query_row(
                "SELECT count(*) FROM threads WHERE owner_kind = ?1 AND owner_id = ?2",
                params![kind, who],
                |r| r.get(0),
            )
            .map_err(db)?;
        if count >= MAX_THREADS {
            return Err(AssistantError::TooMany);
        }
        c.execute(
            "INSERT INTO threads (id, owner_kind, owner_id, title, created_us, updated_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![id.as_str(), kind, who, title, now],
        )
        .map_err(db)?;
        let thread = Thread {
            id: id.clone(),
            title: title.clone(),
            created_us: now,
            updated_us: now,
            turns: 0,
        };
        Ok((thread, Audit::new("assistant.thread.create", id.as_str())))
    })
    .await
}

/// The caller's threads, most recent first.
///
/// # Errors
/// Permission or a storage fault.
pub async fn list(ctx: &TenantCtx) -> Result<Vec<Thread>, AssistantError> {
    require(ctx)?;
    let (kind, who) = owner(ctx);
    ctx.read(move |c| {
        let mut st = c
            .prepare(
                "SELECT t.id, t.title, t.created_us, t.updated_us, \
                   (SELECT count(*) FROM turns u WHERE u.thread_id = t.id) \
                 FROM threads t WHERE owner_kind = ?1 AND owner_id = ?2 \
                 ORDER BY updated_us DESC, id",
            )
            .map_err(db)?;
        let rows = st.query_map(params![kind, who], thread_row).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    })
    .await
}

/// A thread from a row of `id, title, created_us, updated_us, turns`.
fn thread_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Thread> {
    Ok(Thread {
        id: ThreadId::from_trusted(r.get(0)?),
        title: r.get(1)?,
        created_us: r.get(2)?,
        updated_us: r.get(3)?,
        turns: r.get(4)?,
    })
}

/// The thread if it is the caller's; another person's thread is not found, not forbidden,
/// so threads cannot be probed.
fn own_thread(
    c: &Connection,
    id: &ThreadId,
    kind: &str,
    who: &str,
) -> Result<Thread, AssistantError> {
    c.query_row(
        "SELECT t.id, t.title, t.created_us, t.updated_us, \
           (SELECT count(*) FROM turns u WHERE u.thread_id = t.id) \
         FROM threads t WHERE id = ?1 AND owner_kind = ?2 AND owner_id = ?3",
        params![id.as_str(), kind, who],
        thread_row,
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| AssistantError::NotFound(id.to_string()))
}

/// A query of turns: the columns a [`Turn`] is read from, in the order [`turn_of`] takes
/// them, then `$rest`.
macro_rules! select_turns {
    ($rest:literal) => {
        concat!(
            "SELECT id, question, answer, model, endpoint, outcome, citations, flagged, \
             input_tokens, output_tokens, latency_ms, created_us FROM turns ",
            $rest
        )
    };
}

fn turns_of(c: &Connection, id: &ThreadId) -> Result<Vec<Turn>, AssistantError> {
    let mut st = c
        .prepare_cached(select_turns!("WHERE thread_id = ?1 ORDER BY id"))
        .map_err(db)?;
    let rows = st
        .query_map([id.as_str()], |r| turn_of(id, r))
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// The last `n` answered turns of a thread, oldest first: the history a model is given,
/// read backwards through the (thread, id) index so a long thread is not read whole.
fn answered_history(c: &Connection, id: &ThreadId, n: usize) -> Result<Vec<Turn>, AssistantError> {
    let mut st = c
        .prepare_cached(select_turns!(
            "WHERE thread_id = ?1 AND outcome = ?2 ORDER BY id DESC LIMIT ?3"
        ))
        .map_err(db)?;
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = st
        .query_map(
            params![id.as_str(), TurnOutcome::Answered.as_str(), limit],
            |r| turn_of(id, r),
        )
        .map_err(db)?;
    let mut turns = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
    turns.reverse();
    Ok(turns)
}

fn turn_of(id: &ThreadId, r: &rusqlite::Row<'_>) -> rusqlite::Result<Turn> {
    let citations: String = r.get(6)?;
    let flagged: String = r.get(7)?;
    Ok(Turn {
        id: r.get(0)?,
        thread: id.clone(),
        question: r.get(1)?,
        answer: r.get(2)?,
        model: r.get(3)?,
        endpoint: r.get(4)?,
        outcome: TurnOutcome::parse(&r.get::<_, String>(5)?),
        citations: serde_json::from_str(&citations).unwrap_or_default(),
        flagged: serde_json::from_str(&flagged).unwrap_or_default(),
        input_tokens: r.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
        output_tokens: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        latency_ms: r.get::<_, i64>(10)?.max(0) as u64,
        created_us: r.get(11)?,
    })
}

/// A thread of the caller's with its turns, oldest first.
///
/// # Errors
/// Permission, not the caller's or no such thread, or a storage fault.
pub async fn get(ctx: &TenantCtx, id: &ThreadId) -> Result<(Thread, Vec<Turn>), AssistantError> {
    require(ctx)?;
    let (kind, who) = owner(ctx);
    let id = id.clone();
    ctx.read(move |c| {
        let t = own_thread(c, &id, kind, &who)?;
        Ok((t, turns_of(c, &id)?))
    })
    .await
}

/// `text` as an audit entry keeps it under `retention`.
pub(crate) fn retained(retention: Retention, text: &str) -> serde_json::Value {
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
    match retention {
        Retention::Full => serde_json::json!({ "text": text, "sha256": sha }),
        Retention::Preview => serde_json::json!({
            "preview": text.chars().take(PREVIEW).collect::<String>(),
            "chars": text.chars().count(),
            "sha256": sha,
        }),
    }
}

/// Asks a question in a thread of the caller's: retrieves passages from the caller's tenant
/// only, answers with the tenant's model (or the extractive answerer), reads the citations
/// back, applies `grounded_only`, and stores the turn with its audit entry. Text is handed
/// to `deltas` as it arrives; the stored (checked) answer is in the returned turn.
///
/// A model that fails yields a turn with outcome `failed` (stored and audited) and its
/// error; a turn whose entry cannot be written yields only the storage error.
///
/// # Errors
/// Permission, a bad question, not the caller's thread, the model's failure, or a storage
/// fault.
pub async fn ask(
    ctx: &TenantCtx,
    models: &Models,
    thread: &ThreadId,
    question: &str,
    stream: bool,
    deltas: super::model::Deltas<'_>,
) -> Result<Turn, AssistantError> {
    require(ctx)?;
    let question = check_question(question)?;
    let started = std::time::Instant::now();
    let (kind, who) = owner(ctx);
    let (thread_id, q) = (thread.clone(), question.clone());
    let (policy, redaction, history, context) = ctx
        .read(move |c| -> Result<_, AssistantError> {
            own_thread(c, &thread_id, kind, &who)?;
            let policy = AiPolicy::read(c).map_err(db)?;
            let redaction = RedactionPolicy::read(c).map_err(db)?;
            let history = answered_history(c, &thread_id, HISTORY)?;
            let context = Context {
                passages: crate::knowledge::library::search_in(
                    c,
                    // A question's quotes are not a phrase search: every word counts.
                    &q.replace('"', " "),
                    &Default::default(),
                    super::context::PASSAGES,
                )?,
            };
            Ok((policy, redaction, history, context))
        })
        .await?;

    let prompt = Prompt {
        system: context.system_prompt(),
        messages: history
            .iter()
            .flat_map(|t| {
                [
                    Message {
                        role: Role::User,
                        content: t.question.clone(),
                    },
                    Message {
                        role: Role::Assistant,
                        content: t.answer.clone(),
                    },
                ]
            })
            .chain(std::iter::once(Message {
                role: Role::User,
                content: question.clone(),
            }))
            .collect(),
        max_tokens: MAX_TOKENS,
        stream,
        raw: None,
    };

    // Under `grounded_only`, nothing of an answer is streamed until it has cited a passage
    // it was given: an answer that never does is refused, and must not have been shown on
    // its way to the refusal.
    let (mut shown_yet, mut held) = (!policy.grounded_only, String::new());
    let mut gate = |t: &str| {
        if shown_yet {
            return deltas(t);
        }
        held.push_str(t);
        if t.contains(']') && !context.check(&held).cited.is_empty() {
            shown_yet = true;
            deltas(&std::mem::take(&mut held));
        }
    };
    // Values replaced before the call, by kind; `None` when the call was not redacted.
    let mut redacted: Option<std::collections::BTreeMap<String, u32>> = None;
    let reply: Result<Reply, ModelError> = if policy.model == extractive::MODEL {
        let text = extractive::answer(&question, &context);
        gate(&text);
        Ok(Reply {
            text,
            model: extractive::MODEL.into(),
            ..Reply::default()
        })
    } else if !policy.endpoints.contains(&policy.model) {
        Err(ModelError::NotAllowed(policy.model.clone()))
    } else {
        match models.get(&policy.model) {
            None => Err(ModelError::NotConfigured(policy.model.clone())),
            Some(m) => {
                let (reply, counts) = super::outgoing::call(
                    models.calls(),
                    m.as_ref(),
                    &prompt,
                    &policy.egress_allow,
                    &redaction,
                    &mut gate,
                )
                .await;
                redacted = counts;
                reply
            }
        }
    };

    let latency_ms = started.elapsed().as_millis() as u64;
    let (answer, outcome, checked, model_name, endpoint, usage, failure) = match reply {
        Ok(r) => {
            let checked = context.check(&r.text);
            let outcome = if r.model == extractive::MODEL && r.text == extractive::NOTHING_FOUND {
                TurnOutcome::NothingFound
            } else if checked.cited.is_empty() && policy.grounded_only {
                TurnOutcome::Ungrounded
            } else {
                TurnOutcome::Answered
            };
            let shown = if outcome == TurnOutcome::Ungrounded {
                UNGROUNDED.to_string()
            } else {
                checked.text.clone()
            };
            (
                shown,
                outcome,
                Some(checked),
                r.model,
                r.endpoint,
                (r.input_tokens, r.output_tokens),
                None,
            )
        }
        Err(e) => (
            e.to_string(),
            TurnOutcome::Failed,
            None,
            policy.model.clone(),
            None,
            (None, None),
            Some(e),
        ),
    };
    let raw_answer = checked.as_ref().map(|c| c.text.clone()).unwrap_or_default();
    let citations: Vec<Citation> = checked
        .as_ref()
        .filter(|_| matches!(outcome, TurnOutcome::Answered))
        .map(|c| {
            c.cited
                .iter()
                .filter_map(|id| {
                    let i = context.passages.iter().position(|p| &p.citation == id)?;
                    Some(Citation {
                        n: i + 1,
                        citation: id.clone(),
                        document: context.passages[i].document.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let flagged = checked.map(|c| c.flagged).unwrap_or_default();
    let audit_params = serde_json::json!({
        "thread": thread.as_str(),
        "model": model_name,
        "endpoint": endpoint,
        "retrieved": context.citation_ids(),
        "cited": citations.iter().map(|c| &c.citation).collect::<Vec<_>>(),
        "flagged": flagged,
        "usage": { "input": usage.0, "output": usage.1 },
        "latency_ms": latency_ms,
        "stream": stream,
        "redacted": super::outgoing::counts_param(&redacted),
        "outcome": outcome.as_str(),
        "error": failure.as_ref().map(ModelError::code),
        "prompt": retained(policy.retention, &prompt.full_text()),
        "answer": retained(policy.retention, if raw_answer.is_empty() { &answer } else { &raw_answer }),
    });
    let turn = Turn {
        id: 0,
        thread: thread.clone(),
        question,
        answer,
        model: model_name,
        endpoint,
        outcome,
        citations,
        flagged,
        input_tokens: usage.0,
        output_tokens: usage.1,
        latency_ms,
        created_us: 0,
    };
    let stored = ctx
        .change(move |tx| {
            let c = tx.conn();
            let now = tx.now_us();
            let t = &turn;
            c.execute(
                "INSERT INTO turns (thread_id, question, answer, model, endpoint, outcome, \
                   citations, flagged, input_tokens, output_tokens, latency_ms, created_us) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    t.thread.as_str(),
                    t.question,
                    t.answer,
                    t.model,
                    t.endpoint,
                    t.outcome.as_str(),
                    serde_json::to_string(&t.citations).unwrap_or_else(|_| "[]".into()),
                    serde_json::to_string(&t.flagged).unwrap_or_else(|_| "[]".into()),
                    t.input_tokens.map(|v| v as i64),
                    t.output_tokens.map(|v| v as i64),
                    t.latency_ms as i64,
                    now
                ],
            )
            .map_err(db)?;
            let id = c.last_insert_rowid();
            // The first question names a thread that has no name of its own.
            c.execute(
                "UPDATE threads SET updated_us = ?2, title = CASE \
                   WHEN title = 'New conversation' THEN ?3 ELSE title END WHERE id = ?1",
                params![
                    t.thread.as_str(),
                    now,
                    crate::text::name_from(&t.question, 80)
                        .unwrap_or_else(|| "New conversation".into())
                ],
            )
            .map_err(db)?;
            let outcome = match t.outcome {
                TurnOutcome::Failed => Outcome::Failure,
                TurnOutcome::Ungrounded => Outcome::Denied,
                _ => Outcome::Success,
            };
            let audit = Audit::new("assistant.turn", t.thread.as_str())
                .params(audit_params.clone())
                .outcome(outcome);
            let mut stored = t.clone();
            stored.id = id;
            stored.created_us = now;
            Ok::<_, AssistantError>((stored, audit))
        })
        .await?;
    match failure {
        Some(e) => Err(AssistantError::Model(e)),
        None => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_the_last_answered_turns_oldest_first() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA.steps[0]).unwrap();
        for t in ["a", "b"] {
            c.execute(
                "INSERT INTO threads VALUES (?1, 'user', 'u', 't', 0, 0)",
                [t],
            )
            .unwrap();
        }
        let outcomes = [
            "answered",
            "failed",
            "answered",
            "answered",
            "ungrounded",
            "answered",
            "answered",
            "nothing_found",
        ];
        for (i, o) in outcomes.iter().enumerate() {
            for t in ["a", "b"] {
                c.execute(
                    "INSERT INTO turns (thread_id, question, answer, model, outcome, citations, \
                       flagged, latency_ms, created_us) \
                     VALUES (?1, ?2, 'x', 'extractive', ?3, '[]', '[]', 0, 0)",
                    params![t, format!("{t}{i}"), o],
                )
                .unwrap();
            }
        }
        let a = ThreadId::from_trusted("a".into());
        let asked = |turns: Vec<Turn>| turns.into_iter().map(|t| t.question).collect::<Vec<_>>();
        assert_eq!(
            asked(answered_history(&c, &a, HISTORY).unwrap()),
            ["a2", "a3", "a5", "a6"]
        );
        assert_eq!(asked(answered_history(&c, &a, 1).unwrap()), ["a6"]);
        let all = asked(turns_of(&c, &a).unwrap());
        assert_eq!(all, (0..8).map(|i| format!("a{i}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_question_is_checked_as_given_and_kept_trimmed() {
        assert_eq!(check_question("  where?  ").unwrap(), "where?");
        assert!(matches!(
            check_question(" \n "),
            Err(AssistantError::EmptyQuestion)
        ));
        let long = "a".repeat(MAX_QUESTION);
        assert!(check_question(&long).is_ok());
        assert!(matches!(
            check_question(&format!(" {long}")),
            Err(AssistantError::QuestionTooLong)
        ));
    }
}
