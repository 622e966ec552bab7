//! The assistant's pages: the caller's conversations, and one conversation whose answers'
//! citations are links to the passages they cite. Asking works as a plain form post (the
//! page is rendered once the answer is stored); `static/assistant.js` streams it instead.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::conversations::tenant_of;
use super::ui::{error_page, header_for, render, when, FieldError, Header};
use super::AppState;
use crate::ai::assistant::{self, AssistantError, Turn, TurnOutcome};
use crate::identity::Permission;
use crate::ids::ThreadId;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/assistant",
            Access::Allowed(Permission::AssistantUse),
            get(threads_show).post(thread_create),
        )
        .route(
            "/assistant/{id}",
            Access::Allowed(Permission::AssistantUse),
            get(thread_show),
        )
        .route(
            "/assistant/{id}/ask",
            Access::Allowed(Permission::AssistantUse),
            post(thread_ask),
        )
}

pub struct ThreadRow {
    pub id: String,
    pub title: String,
    pub turns: i64,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "assistant/threads.html")]
struct ThreadsPage {
    header: Option<Header>,
    threads: Vec<ThreadRow>,
    model_note: &'static str,
}

async fn threads_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = super::access::client_ip(req.extensions());
    let listed = async {
        let ctx = tenant_of(&state, &p, ip).await?;
        assistant::list(&ctx).await
    }
    .await;
    let threads = match listed {
        Ok(t) => t,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let page = ThreadsPage {
        header: header_for(&state, &p, "/assistant").await,
        threads: threads
            .into_iter()
            .map(|t| ThreadRow {
                id: t.id.to_string(),
                title: t.title,
                turns: t.turns,
                updated: when(t.updated_us),
            })
            .collect(),
        model_note: "each citation opens the passage it names.",
    };
    render(StatusCode::OK, &page)
}

async fn thread_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let form = match super::ui::Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let made = async {
        let ctx = tenant_of(&state, &p, form.ip).await?;
        assistant::create(&ctx, None).await
    }
    .await;
    match made {
        Ok(t) => Redirect::to(&format!("/assistant/{}", t.id)).into_response(),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

pub struct TurnView {
    pub id: i64,
    pub question: String,
    /// The answer in parts: text, or a citation mark with the link to its passage.
    pub parts: Vec<(Option<String>, String)>,
    pub sources: Vec<(usize, String, String)>,
    pub flagged: String,
    pub model: String,
    pub outcome: &'static str,
    pub latency_ms: u64,
    pub failed: bool,
}

/// The link of a passage page.
fn passage_href(citation: &str) -> String {
    format!("/passages/{citation}")
}

/// An answer cut into text and `[n]` marks; a mark of a cited passage becomes a link.
pub fn answer_parts(t: &Turn) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    let mut rest = t.answer.as_str();
    let mut text = String::new();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let cited = (digits > 0 && after[digits..].starts_with(']'))
            .then(|| after[..digits].parse::<usize>().ok())
            .flatten()
            .and_then(|n| t.citations.iter().find(|c| c.n == n));
        match cited {
            Some(c) => {
                text.push_str(&rest[..open]);
                if !text.is_empty() {
                    out.push((None, std::mem::take(&mut text)));
                }
                out.push((Some(passage_href(&c.citation)), format!("[{}]", c.n)));
                rest = &after[digits + 1..];
            }
            None => {
                text.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push((None, text));
    }
    out
}

fn view(t: Turn) -> TurnView {
    TurnView {
        id: t.id,
        parts: answer_parts(&t),
        sources: t
            .citations
            .iter()
            .map(|c| (c.n, passage_href(&c.citation), c.document.clone()))
            .collect(),
        flagged: t
            .flagged
            .iter()
            .map(|n| format!("[{n}]"))
            .collect::<Vec<_>>()
            .join(", "),
        question: t.question,
        model: t.model,
        outcome: match t.outcome {
            TurnOutcome::Answered => "answered",
            TurnOutcome::NothingFound => "nothing found",
            TurnOutcome::Ungrounded => "refused: cited nothing",
            TurnOutcome::Failed => "failed",
        },
        latency_ms: t.latency_ms,
        failed: t.outcome == TurnOutcome::Failed,
    }
}

#[derive(Template)]
#[template(path = "assistant/thread.html")]
struct ThreadPage {
    header: Option<Header>,
    id: String,
    title: String,
    turns: Vec<TurnView>,
    errors: Vec<FieldError>,
}

async fn thread_page(
    state: &AppState,
    p: &Principal,
    id: &str,
    status: StatusCode,
    errors: Vec<FieldError>,
) -> Response {
    let found = async {
        let id = ThreadId::parse(id)?;
        let ctx = tenant_of(state, p, None).await?;
        assistant::get(&ctx, &id).await
    }
    .await;
    let (thread, turns) = match found {
        Ok(f) => f,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let page = ThreadPage {
        header: header_for(state, p, "/assistant").await,
        id: thread.id.to_string(),
        title: thread.title,
        turns: turns.into_iter().map(view).collect(),
        errors,
    };
    render(status, &page)
}

async fn thread_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
) -> Response {
    thread_page(&state, &p, &id, StatusCode::OK, Vec::new()).await
}

/// Asks without JavaScript: the answer is stored (or the failed turn is), then the page.
async fn thread_ask(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let form = match super::ui::Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ready = async {
        let thread = ThreadId::parse(&id)?;
        let question = form.field("question");
        assistant::check_question(&question)?;
        let ctx = tenant_of(&state, &p, form.ip).await?;
        Ok::<_, AssistantError>((thread, question, ctx))
    }
    .await;
    let (thread, question, ctx) = match ready {
        Ok(r) => r,
        Err(e @ (AssistantError::EmptyQuestion | AssistantError::QuestionTooLong)) => {
            let errors = FieldError::new("question", super::ui::capitalise(&e.to_string()));
            return thread_page(&state, &p, &id, StatusCode::BAD_REQUEST, errors).await;
        }
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    // The tenant's limits hold for people as for tokens.
    let admitted = match super::gateway::admit_turn(&state, &ctx).await {
        Ok(a) => a,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let asked = async {
        let (models, limits) = (state.models.clone(), state.limits.clone());
        // On a task of its own: a browser that goes away does not cut an audited turn.
        state
            .models
            .calls()
            .run(async move {
                let turn =
                    assistant::ask(&ctx, &models, &thread, &question, false, &mut |_| {}).await;
                if let Ok(t) = &turn {
                    admitted.spend(&limits, t.tokens()).await;
                }
                turn
            })
            .await
            .unwrap_or_else(|| Err(crate::ai::model::ModelError::Internal.into()))
    }
    .await;
    match asked {
        Ok(turn) => Redirect::to(&format!("/assistant/{id}#turn-{}", turn.id)).into_response(),
        // The failed turn is stored and shown on the page, with its error.
        Err(AssistantError::Model(_)) => Redirect::to(&format!("/assistant/{id}")).into_response(),
        Err(e @ (AssistantError::EmptyQuestion | AssistantError::QuestionTooLong)) => {
            let errors = FieldError::new("question", super::ui::capitalise(&e.to_string()));
            thread_page(&state, &p, &id, StatusCode::BAD_REQUEST, errors).await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::assistant::Citation;

    #[test]
    fn cited_marks_become_links_and_others_stay_text() {
        let t = Turn {
            id: 1,
            thread: ThreadId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            question: "q".into(),
            answer: "Pilots board [1]. See [2] and [x][3].".into(),
            model: "m".into(),
            endpoint: None,
            outcome: TurnOutcome::Answered,
            citations: vec![
                Citation {
                    n: 1,
                    citation: "c1".into(),
                    document: "d".into(),
                },
                Citation {
                    n: 3,
                    citation: "c3".into(),
                    document: "d".into(),
                },
            ],
            flagged: vec![],
            input_tokens: None,
            output_tokens: None,
            latency_ms: 0,
            created_us: 0,
        };
        assert_eq!(
            answer_parts(&t),
            [
                (None, "Pilots board ".to_string()),
                (Some("/passages/c1".to_string()), "[1]".to_string()),
                (None, ". See [2] and [x]".to_string()),
                (Some("/passages/c3".to_string()), "[3]".to_string()),
                (None, ".".to_string()),
            ]
        );
    }
}
