//! What every admin page shares: the top bar and navigation, rendering, forms, error pages,
//! and running a domain function in the caller's realm off the async threads.

use super::auth::{Principal, Who};
use super::AppState;
use crate::door::{self, RealmCtx};
use crate::error::{DomainError, ErrorKind};
use crate::identity::sessions::Place;
use crate::identity::Permission;
use askama::Template;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;

/// One entry of the left navigation.
pub struct Nav {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The top bar and navigation of a signed-in page.
pub struct Header {
    /// Set when a platform account acts in a tenant under its grant.
    pub under_grant: bool,
    pub place: String,
    pub name: String,
    pub email: String,
    pub csrf: String,
    pub nav: Vec<Nav>,
}

/// One problem with a form, linked from the summary to its field.
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Vec<Self> {
        vec![Self {
            field,
            message: message.into(),
        }]
    }
}

/// Renders a page; a template that fails is logged and the person sees a generic error.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page failed to render");
            super::error::WebError::internal("WEB-0001").into_response()
        }
    }
}

/// The areas a principal may visit, in the order of the navigation.
fn nav_for(p: &Principal, current: &str) -> Vec<Nav> {
    let may = |perm: Permission| p.permissions.contains(perm);
    let items: Vec<(&'static str, &'static str, bool)> = match p.place {
        Place::Platform => vec![
            ("/", "Overview", true),
            ("/tenants", "Tenants", may(Permission::TenantsRead)),
            (
                "/users",
                "Platform accounts",
                may(Permission::PlatformUsersRead),
            ),
            ("/audit", "Audit log", may(Permission::AuditRead)),
            ("/status", "Status", true),
            ("/security", "My security", true),
        ],
        Place::Tenant(_) => vec![
            ("/", "Overview", true),
            ("/assistant", "Assistant", may(Permission::AssistantUse)),
            ("/documents", "Documents", may(Permission::KnowledgeRead)),
            ("/search", "Search", may(Permission::KnowledgeRead)),
            ("/audit", "Audit log", may(Permission::AuditRead)),
            ("/users", "Users & roles", may(Permission::UsersRead)),
            ("/tokens", "API tokens", may(Permission::TokensRead)),
            ("/settings", "Settings", may(Permission::SettingsRead)),
            ("/grants", "Access grants", may(Permission::GrantsManage)),
            ("/security", "My security", true),
        ],
    };
    items
        .into_iter()
        .filter(|(_, _, shown)| *shown)
        .map(|(href, label, _)| Nav {
            href,
            label,
            current: href == current,
        })
        .collect()
}

/// The header for a principal: the realm's name, the person, the CSRF token, the areas.
pub async fn header_for(state: &AppState, p: &Principal, current: &str) -> Option<Header> {
    let Who::User {
        name, email, csrf, ..
    } = &p.who
    else {
        return None;
    };
    let place = match &p.place {
        Place::Platform => "Platform".to_string(),
        Place::Tenant(t) => {
            let (app, t) = (state.app.clone(), t.clone());
            tokio::task::spawn_blocking(move || crate::tenants::get(&app, &t))
                .await
                .ok()
                .and_then(Result::ok)
                .map_or_else(|| "Tenant".to_string(), |t| format!("Tenant: {}", t.name))
        }
    };
    Some(Header {
        under_grant: p.grant.is_some(),
        place,
        name: name.clone(),
        email: email.to_string(),
        csrf: csrf.clone(),
        nav: if p.is_full() {
            nav_for(p, current)
        } else {
            Vec::new()
        },
    })
}

/// What a form post brings: where it came from, the device, and its fields.
pub struct Posted {
    pub ip: Option<IpAddr>,
    pub client: crate::identity::sessions::Client,
    pub fields: Vec<(String, String)>,
}

/// The largest form body a page accepts.
pub const FORM_LIMIT: usize = 64 * 1024;

impl Posted {
    /// Reads a URL-encoded form post; a body over [`FORM_LIMIT`] is answered 413.
    ///
    /// # Errors
    /// The response to send instead.
    pub async fn read(req: axum::extract::Request) -> Result<Self, Response> {
        let ip = super::access::client_ip(req.extensions());
        let agent = req
            .headers()
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
            .await
            .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
        Ok(Self {
            ip,
            client: crate::identity::sessions::Client::new(ip, &agent),
            fields: form_fields(&body),
        })
    }

    pub fn field(&self, name: &str) -> String {
        field(&self.fields, name)
    }
}

/// What a redirect after a form said was done (`?done=<what>`), for the page's notice.
pub fn done(req: &axum::extract::Request) -> Option<&str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="))
}

/// A response that sets the session cookie: `__Host-`, Secure, HttpOnly, SameSite=Strict,
/// Path=/, for `max_age_secs`.
pub fn with_session(
    mut res: Response,
    secret: &crate::identity::sessions::SessionSecret,
    place: &Place,
    max_age_secs: u64,
) -> Response {
    let value = secret.cookie_value(place);
    let cookie = axum::http::HeaderValue::from_str(&format!(
        "{}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}",
        crate::identity::sessions::COOKIE,
        value.expose()
    ));
    match cookie {
        Ok(c) => {
            res.headers_mut().append(axum::http::header::SET_COOKIE, c);
            res
        }
        Err(_) => super::error::WebError::internal("WEB-0002").into_response(),
    }
}

/// A URL-encoded form as pairs; a malformed body reads as an empty form (every field then
/// gets its own "enter ..." message).
pub fn form_fields(body: &Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    header: Option<Header>,
    title: &'static str,
    message: String,
    code: &'static str,
}

/// An error as a page: the status and fixed message of its kind, and its code. A refusal the
/// person can act on (bad input, a conflict, a missing permission) says what it was, since
/// domain messages name no files, SQL or keys; a fault on our side says only to quote the
/// code.
pub async fn error_page<E: DomainError>(state: &AppState, p: Option<&Principal>, e: E) -> Response {
    let code = e.code();
    let kind = e.kind();
    if kind == ErrorKind::Internal {
        tracing::error!(code, error = %e, "request failed");
    } else {
        tracing::info!(code, error = %e, "request refused");
    }
    let (status, fixed) = super::error::status_for(kind);
    let message = match kind {
        ErrorKind::Invalid | ErrorKind::Conflict | ErrorKind::Forbidden | ErrorKind::Throttled => {
            capitalise(&e.to_string())
        }
        _ => capitalise(fixed),
    };
    let title = match kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Forbidden => "Not allowed",
        ErrorKind::Internal => "Something went wrong",
        _ => "There is a problem",
    };
    let header = match p {
        Some(p) => header_for(state, p, "").await,
        None => None,
    };
    render(
        status,
        &ErrorPage {
            header,
            title,
            message,
            code,
        },
    )
}

/// A refusal by the guard, as a page: its status, message and code.
pub async fn refusal_page(
    state: &AppState,
    p: Option<&Principal>,
    status: StatusCode,
    message: &str,
    code: &'static str,
) -> Response {
    message_page(state, p, status, "Not allowed", message, code).await
}

/// A page that says what happened and what to do, for a refusal a handler words itself.
pub async fn message_page(
    state: &AppState,
    p: Option<&Principal>,
    status: StatusCode,
    title: &'static str,
    message: &str,
    code: &'static str,
) -> Response {
    let header = match p {
        Some(p) => header_for(state, p, "").await,
        None => None,
    };
    render(
        status,
        &ErrorPage {
            header,
            title,
            message: capitalise(message),
            code,
        },
    )
}

/// Runs `f` in the principal's realm, on a blocking thread, as the principal.
///
/// # Errors
/// The realm cannot be opened (a suspended tenant), or `f`'s error.
pub async fn in_realm<T, E, F>(
    state: &AppState,
    p: &Principal,
    ip: Option<IpAddr>,
    f: F,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<crate::tenants::TenantError> + From<crate::store::StoreError> + Send + 'static,
    F: FnOnce(&RealmCtx, &Arc<crate::app::App>) -> Result<T, E> + Send + 'static,
{
    let (app, caller) = (state.app.clone(), p.caller());
    let tenant = match &p.place {
        Place::Platform => None,
        Place::Tenant(t) => Some(t.clone()),
    };
    tokio::task::spawn_blocking(move || {
        let ctx = door::open_realm_blocking(&app, tenant.as_ref(), caller, ip)?;
        f(&ctx, &app)
    })
    .await
    .map_err(|_| {
        E::from(crate::store::StoreError::JobPanicked {
            what: "request".into(),
        })
    })?
}

/// `2026-12-03 14:05 UTC`, for people.
pub fn when(us: i64) -> String {
    let t = crate::clock::format_rfc3339(us);
    format!(
        "{} {} UTC",
        &t[..10.min(t.len())],
        &t[11.min(t.len())..16.min(t.len())]
    )
}

/// `when` with a relative hint ("3 min ago"), relative to `now`.
pub fn when_ago(us: i64, now: i64) -> String {
    let d = (now - us) / 1_000_000;
    let hint = match d {
        i64::MIN..=-1 => "in the future".to_string(),
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    };
    format!("{} ({hint})", when(us))
}

/// A secret shown once (a one-time password, a new token), with the way back.
#[derive(Template)]
#[template(path = "identity/secret.html")]
pub struct SecretPage {
    pub header: Option<Header>,
    pub title: String,
    pub intro: String,
    pub secret: String,
    pub back: String,
    pub back_label: &'static str,
}
