//! The governed gateway over HTTP, in the vendors' own formats so their SDKs work unchanged:
//! `GET /v1/models`, `POST /v1/chat/completions` (OpenAI, plain and streamed) and
//! `POST /v1/messages` (Anthropic, plain and streamed). A tenant API token is the key, as
//! `Authorization: Bearer` or Anthropic's `x-api-key`. Errors come in each vendor's error
//! shape and status, so each SDK raises its usual exception.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::{Refused, Via};
use super::AppState;
use crate::ai::gateway::{self, Answer, Call, GatewayError, Now, MAX_TOKENS};
use crate::ai::model::{Message, Protocol, Raw, Role, Stop, GATEWAY_FIELDS};
use crate::ai::refusals;
use crate::door;
use crate::error::{DomainError, ErrorKind};
use crate::identity::sessions::Place;
use crate::identity::Permission;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/v1/models",
            Access::Allowed(Permission::AssistantUse),
            get(models),
        )
        .route(
            "/v1/chat/completions",
            Access::Allowed(Permission::AssistantUse),
            post(chat),
        )
        .route(
            "/v1/messages",
            Access::Allowed(Permission::AssistantUse),
            post(messages),
        )
}

/// Whose format a request speaks, and so whose error shape it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    OpenAi,
    Anthropic,
}

impl Vendor {
    /// By the route; on a route both share (`/v1/models`), by Anthropic's own headers.
    fn of(path: &str, headers: &HeaderMap) -> Self {
        match path {
            "/v1/messages" => Vendor::Anthropic,
            "/v1/chat/completions" => Vendor::OpenAi,
            _ if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") => {
                Vendor::Anthropic
            }
            _ => Vendor::OpenAi,
        }
    }

    /// An error in the vendor's shape. `param` names the offending field (OpenAI's `param`).
    fn error(self, status: StatusCode, message: &str, param: Option<&str>) -> Response {
        let body = match self {
            Vendor::OpenAi => {
                let (kind, code) = match status.as_u16() {
                    401 => ("invalid_request_error", Some("invalid_api_key")),
                    403 => ("permission_error", None),
                    404 => ("invalid_request_error", Some("model_not_found")),
                    429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                    400..=499 => ("invalid_request_error", None),
                    _ => ("server_error", None),
                };
                json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
            }
            Vendor::Anthropic => {
                let kind = match status.as_u16() {
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    400..=499 => "invalid_request_error",
                    503 | 529 => "overloaded_error",
                    _ => "api_error",
                };
                json!({ "type": "error", "error": { "type": kind, "message": message } })
            }
        };
        (status, Json(body)).into_response()
    }

    fn bad_request(self, bad: &Bad) -> Response {
        let message = format!("{}: {}", bad.param, bad.message);
        self.error(StatusCode::BAD_REQUEST, &message, Some(&bad.param))
    }

    /// A domain error: its kind's status; its own message where the request is at fault, a
    /// fixed one for faults on our side (their details go to the log only).
    fn domain(self, e: &GatewayError) -> Response {
        let kind = e.kind();
        let (status, fixed) = super::error::status_for(kind);
        let message = match kind {
            ErrorKind::Internal | ErrorKind::Unauthenticated => {
                tracing::error!(code = e.code(), error = %e, "gateway call failed");
                fixed.to_string()
            }
            _ => {
                tracing::info!(code = e.code(), error = %e, "gateway call refused");
                e.to_string()
            }
        };
        let param = match e {
            GatewayError::Unsupported { param, .. } => Some(*param),
            _ => None,
        };
        let mut res = self.error(status, &message, param);
        let retry = match e {
            GatewayError::Model(m) => m.retry_after(),
            GatewayError::Limited(r) => Some(r.retry_after()),
            GatewayError::LimitsUnavailable => Some(1),
            _ => None,
        };
        if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// The key a request carries: `Authorization: Bearer K` or `x-api-key: K`.
fn key_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let text = v.to_str().ok()?;
        return text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "));
    }
    headers.get("x-api-key")?.to_str().ok()
}

/// The guard of every `/v1/` route, in place of the one for pages and `/api/`: tenant API
/// tokens only (no cookies, so no CSRF to check), the tenant's address lists, the route's
/// permission, and refusals in the vendor's shape.
pub async fn guard(state: AppState, access: Access, mut req: Request, next: Next) -> Response {
    let vendor = Vendor::of(req.uri().path(), req.headers());
    let ip = client_ip(req.extensions());
    let unauthenticated = || {
        vendor.error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key; send a Strongroom API token as the key",
            None,
        )
    };
    let Some(bearer) = key_of(req.headers())
        .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())).ok())
    else {
        return unauthenticated();
    };
    let mut only_key = HeaderMap::new();
    only_key.insert(header::AUTHORIZATION, bearer);
    let p = match state.auth.authenticate(&state.app, &only_key, ip).await {
        Ok(Some((p, Via::Bearer))) => p,
        Ok(_) | Err(Refused::Invalid) => return unauthenticated(),
        Err(Refused::Tenant(e)) => {
            return vendor.error(StatusCode::FORBIDDEN, &e.to_string(), None);
        }
        Err(Refused::Internal(e)) => {
            tracing::error!(error = %e, "cannot check an API key");
            return vendor.error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None);
        }
    };
    let Place::Tenant(tenant) = &p.place else {
        return vendor.error(
            StatusCode::FORBIDDEN,
            "platform accounts have no models; use a tenant API token",
            None,
        );
    };
    match state.auth.policy(&state.app, tenant).await {
        Ok(policy) if policy.admits(ip) => {}
        Ok(_) => {
            // Journaled as the pages' guard does: a key used from a refused address (a
            // stolen one, say) leaves its trace.
            let path = req.uri().path().to_string();
            super::access::record_refusal(&state, &p, "auth.address_refused", &path, ip).await;
            return vendor.error(
                StatusCode::FORBIDDEN,
                "requests from this address are not allowed by your organisation's policy",
                None,
            );
        }
        Err(_) => {
            return vendor.error(
                StatusCode::FORBIDDEN,
                "this tenant cannot be used now",
                None,
            )
        }
    }
    if let Access::Allowed(perm) = access {
        if !p.permissions.contains(perm) {
            return vendor.error(
                StatusCode::FORBIDDEN,
                "not allowed for this token's role",
                None,
            );
        }
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

/// What is wrong with a request body, and which field.
#[derive(Debug)]
struct Bad {
    param: String,
    message: String,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> Bad {
    Bad {
        param: param.into(),
        message: message.into(),
    }
}

/// Text of a message's content: a string, or text blocks (`{"type": "text", "text": ...}`).
fn text_of(content: &Value, param: &str) -> Result<String, Bad> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push(t.as_str()),
                    _ => return Err(bad(
                        format!("{param}[{i}]"),
                        "only text content is supported: {\"type\": \"text\", \"text\": \"...\"}",
                    )),
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(bad(param, "must be a string or a list of text blocks")),
    }
}

fn model_of(body: &Value) -> Result<String, Bad> {
    match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() && m.len() <= 200 => Ok(m.trim().into()),
        Some(_) => Err(bad("model", "must be a model id of 1 to 200 characters")),
        None => Err(bad("model", "is required; GET /v1/models lists the ids")),
    }
}

fn tokens_of(body: &Value, names: &[&str], required: bool) -> Result<u32, Bad> {
    for name in names {
        match body.get(*name) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                return v
                    .as_u64()
                    .filter(|n| (1..=u64::from(MAX_TOKENS)).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        bad(
                            *name,
                            format!("must be a whole number from 1 to {MAX_TOKENS}"),
                        )
                    });
            }
        }
    }
    if required {
        return Err(bad(names[0], "is required"));
    }
    Ok(1024)
}

fn flag(body: &Value, name: &str) -> Result<bool, Bad> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(name, "must be true or false")),
    }
}

fn messages_of(body: &Value) -> Result<&Vec<Value>, Bad> {
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => Ok(m),
        Some(Value::Array(_)) => Err(bad("messages", "must hold at least one message")),
        Some(_) => Err(bad("messages", "must be a list of messages")),
        None => Err(bad("messages", "is required")),
    }
}

fn json_body(bytes: &[u8]) -> Result<Value, Bad> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        bad(
            "body",
            format!(
                "the body is not JSON: {}",
                e.to_string().chars().take(200).collect::<String>()
            ),
        )
    })?;
    if !v.is_object() {
        return Err(bad("body", "the body must be a JSON object"));
    }
    Ok(v)
}

/// Most tools a call may offer, and most tool calls one message may hold.
const MAX_TOOLS: usize = 128;

/// A tool's name as both APIs allow it.
fn tool_name_ok(name: Option<&Value>) -> bool {
    name.and_then(Value::as_str).is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// An id that ties a tool call to its result.
fn id_ok(id: Option<&Value>) -> bool {
    id.and_then(Value::as_str)
        .is_some_and(|i| !i.is_empty() && i.len() <= 200)
}

/// The top-level fields of a body the gateway does not set itself (tool definitions and
/// fields it does not read), `null`s left out.
fn raw_fields(body: &Value) -> serde_json::Map<String, Value> {
    body.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| !v.is_null() && !GATEWAY_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// `tools`, where given: a list of at most [`MAX_TOOLS`] tool objects; `name_at` finds a
/// tool's name (`None`: a kind of tool without one the gateway checks).
fn tools_of(
    body: &Value,
    name_at: impl Fn(&Value) -> Option<(&'static str, Option<&Value>)>,
) -> Result<(), Bad> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(t)) if t.len() <= MAX_TOOLS => t,
        Some(Value::Array(_)) => return Err(bad("tools", format!("at most {MAX_TOOLS} tools"))),
        Some(_) => return Err(bad("tools", "must be a list of tools")),
    };
    for (i, t) in tools.iter().enumerate() {
        if !t.is_object() {
            return Err(bad(format!("tools[{i}]"), "must be a tool object"));
        }
        if let Some((path, name)) = name_at(t) {
            if !tool_name_ok(name) {
                return Err(bad(
                    format!("tools[{i}].{path}"),
                    "must be a name of 1 to 64 letters, digits, '_' or '-'",
                ));
            }
        }
    }
    Ok(())
}

/// An assistant message's `tool_calls`, where given: whether it holds any.
fn openai_tool_calls(calls: Option<&Value>, param: &str) -> Result<bool, Bad> {
    let calls = match calls {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Array(c)) if c.len() <= MAX_TOOLS => c,
        Some(_) => {
            return Err(bad(
                format!("{param}.tool_calls"),
                format!("must be a list of at most {MAX_TOOLS} tool calls"),
            ))
        }
    };
    for (i, c) in calls.iter().enumerate() {
        let at = format!("{param}.tool_calls[{i}]");
        if !id_ok(c.get("id")) {
            return Err(bad(format!("{at}.id"), "is required: the call's id"));
        }
        let f = c.get("function");
        if !tool_name_ok(f.and_then(|f| f.get("name"))) {
            return Err(bad(
                format!("{at}.function.name"),
                "must be the name of a tool",
            ));
        }
        if !f
            .and_then(|f| f.get("arguments"))
            .is_some_and(Value::is_string)
        {
            return Err(bad(
                format!("{at}.function.arguments"),
                "must be the arguments as a JSON string",
            ));
        }
    }
    Ok(!calls.is_empty())
}

/// A chat completion request: the call and whether a streamed answer ends with usage.
fn openai_call(bytes: &[u8]) -> Result<(Call, bool), Bad> {
    let body = json_body(bytes)?;
    let model = model_of(&body)?;
    let mut system = Vec::new();
    let mut messages = Vec::new();
    // Whether the conversation holds tool calls or results: it then goes as it came.
    let mut tool_turns = false;
    let all = messages_of(&body)?;
    for (i, m) in all.iter().enumerate() {
        let param = format!("messages[{i}]");
        if !m.is_object() {
            return Err(bad(param, "must be an object with a role and content"));
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let text = text_of(
            m.get("content").unwrap_or(&Value::Null),
            &format!("{param}.content"),
        )?;
        match role {
            "system" | "developer" => system.push(text),
            "user" => messages.push(Message {
                role: Role::User,
                content: text,
            }),
            "assistant" => {
                let calls = openai_tool_calls(m.get("tool_calls"), &param)?;
                tool_turns |= calls;
                if !(calls && text.is_empty()) {
                    messages.push(Message {
                        role: Role::Assistant,
                        content: text,
                    });
                }
            }
            "tool" => {
                if !id_ok(m.get("tool_call_id")) {
                    return Err(bad(
                        format!("{param}.tool_call_id"),
                        "is required: the id of the tool call this message answers",
                    ));
                }
                tool_turns = true;
            }
            "function" => {
                return Err(bad(
                    format!("{param}.role"),
                    "function messages are no longer part of the API; send tool messages (role \"tool\")",
                ))
            }
            _ => {
                return Err(bad(
                    format!("{param}.role"),
                    "must be one of system, developer, user, assistant, tool",
                ))
            }
        }
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(bad("messages", "must hold at least one user message"));
    }
    tools_of(&body, |t| match t.get("type").and_then(Value::as_str) {
        Some("function") => Some((
            "function.name",
            t.get("function").and_then(|f| f.get("name")),
        )),
        _ => None,
    })?;
    let stream = flag(&body, "stream")?;
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(o) if o.is_object() => flag(o, "include_usage")
            .map_err(|_| bad("stream_options.include_usage", "must be true or false"))?,
        Some(_) => return Err(bad("stream_options", "must be an object")),
    };
    let raw = raw_part(
        Protocol::Openai,
        &body,
        tool_turns.then(|| {
            all.iter()
                .filter(|m| !matches!(m["role"].as_str(), Some("system" | "developer")))
                .cloned()
                .collect()
        }),
    );
    let call = Call {
        protocol: "openai",
        model,
        system: system.join("\n"),
        messages,
        max_tokens: tokens_of(&body, &["max_completion_tokens", "max_tokens"], false)?,
        stream,
        raw,
    };
    Ok((call, include_usage))
}

/// The raw part of a call: the messages as they came where they hold tool turns, and the
/// fields the gateway does not set; `None` when there is neither.
fn raw_part(protocol: Protocol, body: &Value, messages: Option<Vec<Value>>) -> Option<Raw> {
    let fields = raw_fields(body);
    (messages.is_some() || !fields.is_empty()).then_some(Raw {
        protocol,
        messages,
        fields,
    })
}

/// The text of an Anthropic message's content, and whether it holds blocks that must go as
/// they came (tool use and results, thinking).
fn anthropic_content(content: &Value, param: &str, role: Role) -> Result<(String, bool), Bad> {
    let Value::Array(blocks) = content else {
        return Ok((text_of(content, param)?, false));
    };
    let mut text = Vec::new();
    let mut raw = false;
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{param}.{i}");
        match (b.get("type").and_then(Value::as_str), role) {
            (Some("text"), _) => match b.get("text") {
                Some(Value::String(t)) => text.push(t.as_str()),
                _ => return Err(bad(format!("{at}.text"), "must be a string")),
            },
            (Some("tool_use"), Role::Assistant) => {
                if !id_ok(b.get("id")) {
                    return Err(bad(format!("{at}.id"), "is required: the tool call's id"));
                }
                if !tool_name_ok(b.get("name")) {
                    return Err(bad(format!("{at}.name"), "must be the name of a tool"));
                }
                if !b.get("input").is_some_and(Value::is_object) {
                    return Err(bad(format!("{at}.input"), "must be an object"));
                }
                raw = true;
            }
            (Some("tool_result"), Role::User) => {
                if !id_ok(b.get("tool_use_id")) {
                    return Err(bad(
                        format!("{at}.tool_use_id"),
                        "is required: the id of the tool call this result answers",
                    ));
                }
                text_of(b.get("content").unwrap_or(&Value::Null), &format!("{at}.content"))?;
                raw = true;
            }
            (Some("thinking" | "redacted_thinking"), Role::Assistant) => raw = true,
            _ => {
                return Err(bad(
                    format!("{at}.type"),
                    "only text blocks, tool_use blocks (assistant) and tool_result blocks (user) are supported",
                ))
            }
        }
    }
    Ok((text.join("\n"), raw))
}

/// A Messages API request.
fn anthropic_call(bytes: &[u8]) -> Result<Call, Bad> {
    let body = json_body(bytes)?;
    let model = model_of(&body)?;
    let max_tokens = tokens_of(&body, &["max_tokens"], true)?;
    let system = match body.get("system") {
        None | Some(Value::Null) => String::new(),
        Some(s) => text_of(s, "system")?,
    };
    let mut messages = Vec::new();
    let mut tool_turns = false;
    let all = messages_of(&body)?;
    for (i, m) in all.iter().enumerate() {
        let param = format!("messages.{i}");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return Err(bad(format!("{param}.role"), "must be user or assistant")),
        };
        let (content, raw) = anthropic_content(
            m.get("content").unwrap_or(&Value::Null),
            &format!("{param}.content"),
            role,
        )?;
        tool_turns |= raw;
        messages.push(Message { role, content });
    }
    if messages.first().is_none_or(|m| m.role != Role::User) {
        return Err(bad("messages", "the first message must be the user's"));
    }
    tools_of(&body, |t| Some(("name", t.get("name"))))?;
    Ok(Call {
        protocol: "anthropic",
        model,
        system,
        messages,
        max_tokens,
        stream: flag(&body, "stream")?,
        raw: raw_part(Protocol::Anthropic, &body, tool_turns.then(|| all.clone())),
    })
}

/// A response id: a vendor's prefix and 24 random hex digits.
fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Lets an assistant turn in under the tenant's limits, as a gateway call: the limits are
/// for each token or signed-in person, whichever way they reach a model. A refusal is
/// counted in the journal as the gateway's are, and answered with its status and
/// `Retry-After`.
pub(crate) async fn admit_turn(
    state: &AppState,
    ctx: &door::TenantCtx,
) -> Result<gateway::Admitted, GatewayError> {
    let admitted = gateway::admit(ctx, &state.limits, &state.rules, now(state)).await;
    if let Err(e) = &admitted {
        journal_refusal(state, ctx, e).await;
    }
    admitted
}

/// The JSON answer of an API turn that [`admit_turn`] refused, with `Retry-After`.
pub(crate) fn turn_refused(e: GatewayError) -> Response {
    let retry = match &e {
        GatewayError::Limited(r) => Some(r.retry_after()),
        GatewayError::LimitsUnavailable => Some(1),
        _ => None,
    };
    let mut res = super::error::api_error(e);
    if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// The clock, and the identity epoch the guard's authentication just looked at (no second
/// look at the file).
fn now(state: &AppState) -> Now {
    Now {
        us: state.app.clock().now_us(),
        epoch: state.auth.epoch(),
    }
}

fn unix_now(state: &AppState) -> i64 {
    state.app.clock().now_us() / 1_000_000
}

async fn tenant_ctx(
    state: &AppState,
    p: &super::auth::Principal,
    ip: Option<std::net::IpAddr>,
) -> Result<door::TenantCtx, GatewayError> {
    match &p.place {
        Place::Tenant(t) => Ok(door::open(&state.app, t, p.caller(), ip).await?),
        Place::Platform => Err(GatewayError::Denied(crate::identity::Denied(
            "assistant.use",
        ))),
    }
}

/// `GET /v1/models`: the models this token's tenant may use, `extractive` always first.
async fn models(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let vendor = Vendor::of(req.uri().path(), req.headers());
    let ip = client_ip(req.extensions());
    let listed = async {
        let ctx = tenant_ctx(&state, &p, ip).await?;
        gateway::models(&ctx, &state.models, &state.rules, now(&state)).await
    }
    .await;
    let ids = match listed {
        Ok(ids) => ids,
        Err(e) => return vendor.domain(&e),
    };
    let body = match vendor {
        Vendor::OpenAi => json!({
            "object": "list",
            "data": ids.iter().map(|id| json!({
                "id": id, "object": "model", "created": 0, "owned_by": "strongroom",
            })).collect::<Vec<_>>(),
        }),
        Vendor::Anthropic => json!({
            "data": ids.iter().map(|id| json!({
                "type": "model", "id": id, "display_name": id,
                "created_at": "1970-01-01T00:00:00Z",
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": ids.first(),
            "last_id": ids.last(),
        }),
    };
    Json(body).into_response()
}

async fn body_bytes(req: Request) -> Result<axum::body::Bytes, Bad> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|_| bad("body", "the body is too large or broke off"))
}

/// A call answered whole, not streamed. It runs on a task of its own: a client that goes
/// away, or a connection closed at shutdown, does not cut a call whose prompt has left
/// before its audit entry is written.
async fn answer_whole(
    state: &AppState,
    ctx: door::TenantCtx,
    call: Call,
) -> Result<Answer, GatewayError> {
    let state = state.clone();
    let calls = state.models.calls().clone();
    calls
        .run(async move {
            let mut ignore = |_: &str| {};
            let now = now(&state);
            let tenant_ids = state.app.config().metrics.tenant_ids;
            let done = gateway::complete(
                &ctx,
                &state.models,
                &state.limits,
                &state.rules,
                now,
                &call,
                &mut ignore,
            )
            .await;
            count(tenant_ids, &ctx, done.as_ref());
            if let Err(e) = &done {
                journal_refusal(&state, &ctx, e).await;
            }
            done
        })
        .await
        .unwrap_or_else(|| Err(crate::ai::model::ModelError::Internal.into()))
}

/// Writes the entry of `n` refusals of `key` after its call has ended, for `who`; whether
/// it was written (a failure is logged).
async fn journal_later(
    app: &std::sync::Arc<crate::app::App>,
    key: &refusals::Key,
    n: u64,
    who: refusals::Who,
) -> bool {
    let written = match door::open(app, &who.tenant, who.caller, who.ip).await {
        Ok(ctx) => refusals::journal(&ctx, key, n).await,
        Err(t) => Err(t.into()),
    };
    if let Err(failed) = &written {
        tracing::warn!(error = %failed, "refused calls' audit entry could not be written");
    }
    written.is_ok()
}

/// Writes every count of refused calls not yet written: at shutdown, after the last call
/// has ended, so that none is lost with the process.
pub async fn flush_refusals(app: &std::sync::Arc<crate::app::App>, refusals: &refusals::Refusals) {
    for (key, n, who) in refusals.drain() {
        journal_later(app, &key, n, who).await;
    }
}

/// Counts a refused call (a limit, or limits that could not be checked) for the journal:
/// a caller's first refusal for a reason is written now, those after it within the window
/// together when the window ends (see [`refusals`]). The call is refused either way; an
/// entry that cannot be written is logged, and its count carried by the next.
async fn journal_refusal(state: &AppState, ctx: &door::TenantCtx, e: &GatewayError) {
    let Some(key) = refusals::Key::of(ctx, e) else {
        return;
    };
    let now_us = state.app.clock().now_us();
    match state.refusals.note(key.clone(), now_us) {
        refusals::Due::Now(n) => {
            if let Err(failed) = refusals::journal(ctx, &key, n).await {
                tracing::warn!(error = %failed, "a refused call's audit entry could not be written");
                state.refusals.restore(&key, n);
                state.refusals.remember(&key, refusals::Who::of(ctx));
            }
        }
        refusals::Due::At(at_us) => {
            let (state, who) = (state.clone(), refusals::Who::of(ctx));
            state.refusals.remember(&key, who.clone());
            tokio::spawn(async move {
                let wait = u64::try_from(at_us - now_us).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
                let n = state.refusals.take(&key, state.app.clock().now_us());
                if n > 0 && !journal_later(&state.app, &key, n, who).await {
                    state.refusals.restore(&key, n);
                }
            });
        }
        refusals::Due::Counted => {}
    }
}

/// Counts a call's outcome for `/metrics`, labelled with its tenant's id only where the
/// configuration allows.
fn count(tenant_ids: bool, ctx: &door::TenantCtx, done: Result<&Answer, &GatewayError>) {
    let m = crate::metrics::global();
    let outcome = match done {
        Ok(_) => "answered",
        Err(GatewayError::Limited(r)) => {
            crate::metrics::inc(&m.throttled, &[("reason", r.reason())]);
            "limited"
        }
        Err(GatewayError::Model(crate::ai::model::ModelError::RateLimited(_))) => {
            crate::metrics::inc(&m.throttled, &[("reason", "upstream")]);
            "failed"
        }
        Err(GatewayError::ModelNotFound(_)) => "model_not_found",
        Err(GatewayError::Denied(_)) => "denied",
        Err(_) => "failed",
    };
    if tenant_ids {
        crate::metrics::inc(
            &m.gateway_calls,
            &[("outcome", outcome), ("tenant", ctx.tenant().as_str())],
        );
    } else {
        crate::metrics::inc(&m.gateway_calls, &[("outcome", outcome)]);
    }
}

/// What a streaming call's task renders into events: a piece of text, or its end.
enum Piece {
    Delta(String),
    Done(Result<Answer, GatewayError>),
}

/// Streams `call` as server-sent events: `opening` first, then what `render` makes of each
/// piece. The tenant's limits are checked first, so a refused call gets its own status (429,
/// 503) in the vendor's shape, as a plain call does. The call runs on its own task, so it
/// finishes (stored and audited) even if the client goes away; its audit entry is durable
/// before the events of its end are sent.
async fn stream_call(
    state: &AppState,
    vendor: Vendor,
    ctx: door::TenantCtx,
    call: Call,
    opening: Vec<Event>,
    mut render: impl FnMut(Piece) -> Vec<Event> + Send + 'static,
) -> Response {
    let now = now(state);
    let tenant_ids = state.app.config().metrics.tenant_ids;
    let admitted = match gateway::admit(&ctx, &state.limits, &state.rules, now).await {
        Ok(a) => a,
        Err(e) => {
            count(tenant_ids, &ctx, Err(&e));
            journal_refusal(state, &ctx, &e).await;
            return vendor.domain(&e);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    for e in opening {
        let _ = tx.send(e);
    }
    let models = state.models.clone();
    let limiter = state.limits.clone();
    state.models.calls().spawn(async move {
        let done = {
            let mut send = |t: &str| {
                for e in render(Piece::Delta(t.to_string())) {
                    let _ = tx.send(e);
                }
            };
            let done = gateway::answer(&ctx, &models, &limiter, admitted, &call, &mut send).await;
            count(tenant_ids, &ctx, done.as_ref());
            done
        };
        for e in render(Piece::Done(done)) {
            let _ = tx.send(e);
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(e), rx))
    });
    Sse::new(events).into_response()
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

/// The error body a vendor's SDK reads from a stream that fails after it began.
fn stream_error(vendor: Vendor, e: &GatewayError) -> Value {
    let (status, _) = super::error::status_for(e.kind());
    let message = match e.kind() {
        ErrorKind::Internal => "internal error".to_string(),
        _ => e.to_string(),
    };
    match vendor {
        Vendor::OpenAi => {
            json!({ "error": { "message": message, "type": "server_error", "param": null, "code": status.as_u16() } })
        }
        Vendor::Anthropic => {
            json!({ "type": "error", "error": { "type": if status.as_u16() == 429 { "rate_limit_error" } else { "api_error" }, "message": message } })
        }
    }
}

/// The assistant message of an OpenAI answer: its text, and the tools it called.
fn openai_message(a: &Answer) -> Value {
    let mut message = json!({ "role": "assistant", "content": a.text, "refusal": null });
    if let Some(calls) = &a.tool_calls {
        message["tool_calls"] = calls.clone();
        if a.text.is_empty() {
            message["content"] = Value::Null;
        }
    }
    message
}

/// `POST /v1/chat/completions`: OpenAI's chat completions, plain or streamed.
async fn chat(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let vendor = Vendor::OpenAi;
    let ip = client_ip(req.extensions());
    let (call, include_usage) = match body_bytes(req).await.and_then(|b| openai_call(&b)) {
        Ok(c) => c,
        Err(b) => return vendor.bad_request(&b),
    };
    let ctx = match tenant_ctx(&state, &p, ip).await {
        Ok(c) => c,
        Err(e) => return vendor.domain(&e),
    };
    let id = new_id("chatcmpl-");
    let created = unix_now(&state);
    let model = call.model.clone();
    if !call.stream {
        return match answer_whole(&state, ctx, call).await {
            Ok(a) => Json(json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": openai_message(&a),
                    "logprobs": null,
                    "finish_reason": a.stop.unwrap_or(Stop::End).openai(),
                }],
                "usage": {
                    "prompt_tokens": a.input_tokens,
                    "completion_tokens": a.output_tokens,
                    "total_tokens": a.input_tokens.saturating_add(a.output_tokens),
                },
            }))
            .into_response(),
            Err(e) => vendor.domain(&e),
        };
    }
    let chunk = move |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    };
    let opening = vec![data(&chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    ))];
    stream_call(
        &state,
        vendor,
        ctx,
        call,
        opening,
        move |piece| match piece {
            Piece::Delta(t) => vec![data(&chunk(json!({ "content": t }), Value::Null))],
            Piece::Done(Ok(a)) => {
                let mut out = Vec::new();
                if let Some(calls) = a.tool_calls.as_ref().and_then(Value::as_array) {
                    // Each call whole, in one delta: the SDKs join deltas by index.
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let mut c = c.clone();
                            if let Some(o) = c.as_object_mut() {
                                o.insert("index".into(), json!(i));
                            }
                            c
                        })
                        .collect();
                    out.push(data(&chunk(json!({ "tool_calls": calls }), Value::Null)));
                }
                let finish = a.stop.unwrap_or(Stop::End).openai();
                out.push(data(&chunk(json!({}), json!(finish))));
                if include_usage {
                    let mut last = chunk(json!({}), Value::Null);
                    last["choices"] = json!([]);
                    last["usage"] = json!({
                        "prompt_tokens": a.input_tokens,
                        "completion_tokens": a.output_tokens,
                        "total_tokens": a.input_tokens.saturating_add(a.output_tokens),
                    });
                    out.push(data(&last));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            // No `[DONE]`: the SDK reads the error and raises it.
            Piece::Done(Err(e)) => vec![data(&stream_error(Vendor::OpenAi, &e))],
        },
    )
    .await
}

/// `POST /v1/messages`: Anthropic's Messages API, plain or streamed.
async fn messages(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let vendor = Vendor::Anthropic;
    let ip = client_ip(req.extensions());
    let call = match body_bytes(req).await.and_then(|b| anthropic_call(&b)) {
        Ok(c) => c,
        Err(b) => return vendor.bad_request(&b),
    };
    let ctx = match tenant_ctx(&state, &p, ip).await {
        Ok(c) => c,
        Err(e) => return vendor.domain(&e),
    };
    let id = new_id("msg_");
    let model = call.model.clone();
    if !call.stream {
        return match answer_whole(&state, ctx, call).await {
            Ok(a) => Json(json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": a.tool_calls.clone().unwrap_or_else(|| json!([{ "type": "text", "text": a.text }])),
                "stop_reason": a.stop.unwrap_or(Stop::End).anthropic(),
                "stop_sequence": null,
                "usage": { "input_tokens": a.input_tokens, "output_tokens": a.output_tokens },
            }))
            .into_response(),
            Err(e) => vendor.domain(&e),
        };
    }
    let named = |name: &str, value: Value| Event::default().event(name).data(value.to_string());
    let opening = vec![
        named(
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": { "input_tokens": 0, "output_tokens": 0 },
                },
            }),
        ),
        named(
            "content_block_start",
            json!({
                "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" },
            }),
        ),
        named("ping", json!({ "type": "ping" })),
    ];
    stream_call(&state, vendor, ctx, call, opening, move |piece| match piece {
        Piece::Delta(t) => vec![named(
            "content_block_delta",
            json!({
                "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": t },
            }),
        )],
        Piece::Done(Ok(a)) => {
            let mut out = vec![named(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 0 }),
            )];
            // The text went out in block 0 as it came; each tool call follows as a block of
            // its own, its input in one piece.
            let uses = a.tool_calls.as_ref().and_then(Value::as_array);
            for (k, b) in uses
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_use")
                .enumerate()
            {
                let index = k + 1;
                out.push(named(
                    "content_block_start",
                    json!({
                        "type": "content_block_start", "index": index,
                        "content_block": { "type": "tool_use", "id": b["id"], "name": b["name"], "input": {} },
                    }),
                ));
                out.push(named(
                    "content_block_delta",
                    json!({
                        "type": "content_block_delta", "index": index,
                        "delta": { "type": "input_json_delta", "partial_json": b["input"].to_string() },
                    }),
                ));
                out.push(named(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": index }),
                ));
            }
            out.push(named(
                "message_delta",
                json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": a.stop.unwrap_or(Stop::End).anthropic(), "stop_sequence": null },
                    "usage": { "input_tokens": a.input_tokens, "output_tokens": a.output_tokens },
                }),
            ));
            out.push(named("message_stop", json!({ "type": "message_stop" })));
            out
        }
        Piece::Done(Err(e)) => vec![named("error", stream_error(Vendor::Anthropic, &e))],
    })
    .await
}
