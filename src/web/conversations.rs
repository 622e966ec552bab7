//! The assistant over HTTP: `/api/v1/conversations` (create, list, show), `.../ask` (one
//! JSON answer) and `.../stream` (server-sent events: `delta` pieces as they arrive, then
//! `turn` with the stored, checked answer, or `error`).

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::error::{api_error, ErrorBody};
use super::AppState;
use crate::ai::assistant::{self, AssistantError, Thread, Turn};
use crate::door::{self, TenantCtx};
use crate::identity::sessions::Place;
use crate::identity::Permission;
use crate::ids::ThreadId;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use std::net::IpAddr;

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/api/v1/conversations",
            Access::Allowed(Permission::AssistantUse),
            get(list).post(create),
        )
        .route(
            "/api/v1/conversations/{id}",
            Access::Allowed(Permission::AssistantUse),
            get(show),
        )
        .route(
            "/api/v1/conversations/{id}/ask",
            Access::Allowed(Permission::AssistantUse),
            post(ask),
        )
        .route(
            "/api/v1/conversations/{id}/stream",
            Access::Allowed(Permission::AssistantUse),
            post(stream),
        )
}

/// The caller's tenant, opened for the caller. A platform account has no conversations.
pub async fn tenant_of(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
) -> Result<TenantCtx, AssistantError> {
    match &p.place {
        Place::Tenant(t) => Ok(door::open(&state.app, t, p.caller(), ip).await?),
        Place::Platform => Err(AssistantError::Denied(crate::identity::Denied(
            "assistant.use",
        ))),
    }
}

/// A JSON body, or the error that names what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AssistantError> {
    serde_json::from_slice(bytes).map_err(|e| {
        AssistantError::BadBody(format!(
            "the body is not the JSON expected: {}",
            // serde's messages name the field and the line; they quote no more than a token.
            e.to_string().chars().take(200).collect::<String>()
        ))
    })
}

async fn bytes_of(req: Request) -> Result<axum::body::Bytes, AssistantError> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|_| AssistantError::BadBody("the body is too large or broke off".into()))
}

/// A new conversation; the body may be left out.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    /// Up to 200 characters; "New conversation" when left out.
    #[schema(max_length = 200)]
    title: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Up to 4000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    question: String,
}

/// One server-sent event of a streamed answer: `event` names it, `data` is JSON.
pub struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let event = |name: &str, data: &str| {
            ObjectBuilder::new()
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .description(Some(data)),
                )
                .required("event")
                .required("data")
        };
        OneOfBuilder::new()
            .item(event(
                "delta",
                "`{\"text\": ...}`: the next piece of the answer",
            ))
            .item(event("turn", "The stored turn, as `Turn`"))
            .item(event(
                "error",
                "`{\"error\": {\"code\", \"message\"}, \"status\": N}`: the turn failed",
            ))
            .into()
    }
}

impl utoipa::ToSchema for StreamEvent {}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    /// The caller's own conversations, most recently active first.
    pub conversations: Vec<Thread>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ConversationShow {
    pub conversation: Thread,
    /// Oldest first.
    pub turns: Vec<Turn>,
}

/// Starts a conversation of the caller's.
#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    tag = "assistant",
    operation_id = "createConversation",
    request_body(content = Option<NewThread>, content_type = "application/json"),
    responses(
        (status = 201, description = "The conversation", body = Thread, links(
            ("getConversation" = (operation_id = "getConversation", parameters(("id" = "$response.body#/id")))),
            ("ask" = (operation_id = "ask", parameters(("id" = "$response.body#/id")))),
            ("askStreamed" = (operation_id = "askStreamed", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "The body or the title is malformed", body = ErrorBody),
        (status = 409, description = "The caller has the most conversations one may keep", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let made = async {
        let bytes = bytes_of(req).await?;
        let new: NewThread = if bytes.is_empty() {
            NewThread { title: None }
        } else {
            body(&bytes)?
        };
        let ctx = tenant_of(&state, &p, ip).await?;
        assistant::create(&ctx, new.title.as_deref()).await
    }
    .await;
    match made {
        Ok(t) => (StatusCode::CREATED, Json(t)).into_response(),
        Err(e) => api_error(e),
    }
}

/// The caller's conversations.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "assistant",
    operation_id = "listConversations",
    responses((status = 200, description = "The conversations", body = ConversationList))
)]
async fn list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let listed = async {
        let ctx = tenant_of(&state, &p, ip).await?;
        assistant::list(&ctx).await
    }
    .await;
    match listed {
        Ok(conversations) => Json(ConversationList { conversations }).into_response(),
        Err(e) => api_error(e),
    }
}

/// A conversation of the caller's with its turns.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "assistant",
    operation_id = "getConversation",
    params(("id" = ThreadId, Path, description = "The conversation")),
    responses(
        (status = 200, description = "The conversation and its turns", body = ConversationShow),
        (status = 400, description = "Not a conversation id", body = ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let found = async {
        let id = ThreadId::parse(&id)?;
        let ctx = tenant_of(&state, &p, ip).await?;
        assistant::get(&ctx, &id).await
    }
    .await;
    match found {
        Ok((thread, turns)) => Json(ConversationShow {
            conversation: thread,
            turns,
        })
        .into_response(),
        Err(e) => api_error(e),
    }
}

/// Asks a question in a conversation; the answer comes whole, stored and audited. An
/// answer that failed (the model could not be reached, say) is a turn too, with outcome
/// `failed`; it is not an error of the request.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/ask",
    tag = "assistant",
    operation_id = "ask",
    params(("id" = ThreadId, Path, description = "The conversation")),
    request_body(content = Question, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored turn", body = Turn, links(
            ("getPassage" = (operation_id = "getPassage", parameters(("citation" = "$response.body#/citations/0/citation")))),
        )),
        (status = 400, description = "The body or the question is malformed, or the tenant's model settings refuse it", body = ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = ErrorBody),
    )
)]
async fn ask(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (id, q, ctx, admitted) = match ready_turn(&state, &p, &id, req).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let (models, limits) = (state.models.clone(), state.limits.clone());
    // On a task of its own: a client that goes away does not cut an audited turn.
    let answered = state
        .models
        .calls()
        .run(async move {
            let turn = assistant::ask(&ctx, &models, &id, &q.question, false, &mut |_| {}).await;
            if let Ok(t) = &turn {
                admitted.spend(&limits, t.tokens()).await;
            }
            turn
        })
        .await
        .unwrap_or_else(|| Err(crate::ai::model::ModelError::Internal.into()));
    match answered {
        Ok(turn) => Json(turn).into_response(),
        Err(e) => api_error(e),
    }
}

/// A turn that may start: its thread, its question and the tenant, admitted under the
/// tenant's limits. Everything that can be refused at once is refused here, with a plain
/// JSON error of its own status (400, 404, 429 with `Retry-After`): before a stream starts.
async fn ready_turn(
    state: &AppState,
    p: &Principal,
    id: &str,
    req: Request,
) -> Result<(ThreadId, Question, TenantCtx, crate::ai::gateway::Admitted), Response> {
    let ip = client_ip(req.extensions());
    let ready = async {
        let id = ThreadId::parse(id)?;
        let q: Question = body(&bytes_of(req).await?)?;
        assistant::check_question(&q.question)?;
        let ctx = tenant_of(state, p, ip).await?;
        Ok::<_, AssistantError>((id, q, ctx))
    }
    .await;
    let (id, q, ctx) = ready.map_err(api_error)?;
    let admitted = super::gateway::admit_turn(state, &ctx)
        .await
        .map_err(super::gateway::turn_refused)?;
    Ok((id, q, ctx, admitted))
}

/// What the stream's task reports.
enum Piece {
    Delta(String),
    Done(Box<assistant::Turn>),
    Failed(AssistantError),
}

/// Asks a question and streams the answer as server-sent events: `delta` events
/// (`{"text": ...}`) as the answer is written, then one `turn` event with the stored,
/// checked turn, or one `error` event (`{"error": {...}, "status": N}`).
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/stream",
    tag = "assistant",
    operation_id = "askStreamed",
    params(("id" = ThreadId, Path, description = "The conversation")),
    request_body(content = Question, content_type = "application/json"),
    responses(
        (status = 200, description = "The events: `delta`, then `turn` or `error`", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "The body or the question is malformed", body = ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = ErrorBody),
    )
)]
async fn stream(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (id, q, ctx, admitted) = match ready_turn(&state, &p, &id, req).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
    let (models, limits) = (state.models.clone(), state.limits.clone());
    // The turn runs to its end (stored and audited) even if the client goes away.
    state.models.calls().spawn(async move {
        let deltas = tx.clone();
        let mut send = move |t: &str| {
            let _ = deltas.send(Piece::Delta(t.to_string()));
        };
        let piece = match assistant::ask(&ctx, &models, &id, &q.question, true, &mut send).await {
            Ok(turn) => {
                admitted.spend(&limits, turn.tokens()).await;
                Piece::Done(Box::new(turn))
            }
            Err(e) => Piece::Failed(e),
        };
        let _ = tx.send(piece);
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?;
        let event = match piece {
            Piece::Delta(text) => Event::default()
                .event("delta")
                .data(serde_json::json!({ "text": text }).to_string()),
            Piece::Done(turn) => Event::default()
                .event("turn")
                .data(serde_json::to_string(&turn).unwrap_or_default()),
            Piece::Failed(e) => {
                let res = api_error(e);
                let status = res.status().as_u16();
                let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
                    .await
                    .unwrap_or_default();
                let mut value: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or_default();
                value["status"] = status.into();
                Event::default().event("error").data(value.to_string())
            }
        };
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(events).into_response()
}
