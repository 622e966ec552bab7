//! The HTTPS door: an axum router served over rustls.
//!
//! Every response carries the security headers (HSTS, CSP with `frame-ancestors 'none'`,
//! nosniff, referrer policy) and a request id; request bodies are capped; handlers stay thin
//! and reach SQLite only through `spawn_blocking` or a store's writer.

pub mod access;
mod api;
mod assistant_pages;
mod audit;
pub mod auth;
mod chart;
mod conversations;
mod documents;
pub mod error;
mod factor;
mod gateway;
pub use gateway::flush_refusals;
mod grants;
mod health;
mod library;
mod metrics;
pub mod notify;
mod openapi;
mod pages;
mod security;
pub mod server;
mod settings;
mod sso;
mod status;
mod tenants;
pub mod tls;
mod tokens;
pub mod ui;
mod users;
mod wellknown;

use crate::app::App;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub started: Instant,
    /// False once shutdown has begun, so load balancers drain this node.
    pub accepting: Arc<AtomicBool>,
    /// Credential caches and the sign-in throttle.
    pub auth: Arc<auth::Auth>,
    /// Single sign-on: the outbound client and the providers' metadata.
    pub sso: Arc<crate::identity::sso::Sso>,
    /// The configured model endpoints.
    pub models: Arc<crate::ai::assistant::Models>,
    /// The gateway's limits on calls to models: this node's, or shared through Redis.
    pub limits: crate::ai::limits::CallLimiter,
    /// Each tenant's rules for calls to models, kept between calls.
    pub rules: Arc<crate::ai::gateway::RulesCache>,
    /// Calls refused by the limits, counted for the journal.
    pub refusals: Arc<crate::ai::refusals::Refusals>,
    /// The token a scraper off this host presents for `/metrics`, if one is configured.
    pub metrics_token: Option<Arc<crate::ai::http::ApiKey>>,
    /// Whether a scraper on this host presents it too (`metrics.require_token`).
    pub metrics_token_required: bool,
    /// Audit exports running, by realm (a tenant id, or `platform`).
    pub exports: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// The public status page's last answer on the keys' age, and when it was read.
    pub key_age: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
}

impl AppState {
    /// # Errors
    /// A model endpoint whose key or trust anchors cannot be read, or a Redis URL the client
    /// does not take: the server must not start. Redis itself need not be up.
    pub fn new(app: Arc<App>) -> Result<Self, String> {
        let models = crate::ai::http::models(app.config())?;
        let metrics_token = match &app.config().metrics.token_file {
            Some(p) => Some(Arc::new(
                crate::ai::http::read_key(p).map_err(|e| format!("metrics.token_file: {e}"))?,
            )),
            None => None,
        };
        let limits = crate::ai::limits::CallLimiter::new(&app.config().rate_limit)?;
        Ok(Self {
            metrics_token,
            metrics_token_required: app.config().metrics.require_token,
            started: Instant::now(),
            key_age: Arc::default(),
            exports: Arc::default(),
            accepting: Arc::new(AtomicBool::new(true)),
            auth: Arc::new(auth::Auth::announcing(
                &app.config().identity,
                app.data_dir(),
            )),
            sso: Arc::new(crate::identity::sso::Sso::new(&app.config().outbound)),
            models: Arc::new(models),
            limits,
            rules: Arc::default(),
            refusals: Arc::default(),
            app,
        })
    }
}

/// Every area's routes, each with its declared access.
pub fn routes() -> access::Routes {
    access::Routes::new()
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(status::routes())
        .merge(wellknown::routes())
        .merge(pages::routes())
        .merge(api::routes())
        .merge(documents::routes())
        .merge(conversations::routes())
        .merge(gateway::routes())
        .merge(library::routes())
        .merge(assistant_pages::routes())
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(security::routes())
        .merge(tenants::routes())
        .merge(audit::routes())
        .merge(factor::routes())
        .merge(settings::routes())
        .merge(grants::routes())
}

/// The whole router: every area's routes behind their guards, then the layers that apply to
/// all of them.
pub fn app(state: AppState) -> Router {
    // Body limits are per route (uploads take more), set in `Routes::into_router`.
    Router::new()
        .merge(routes().into_router(&state))
        .fallback(error::not_found)
        .layer(middleware::from_fn(api_error_shape))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_log))
        .with_state(state)
}

/// An API client gets every error in the API's one shape, `{"error": {"code", "message"}}`,
/// also those made before a handler runs (a body over the limit, a path that does not
/// decode, a method the route does not take), which come as plain text or empty otherwise.
async fn api_error_shape(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !api || json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (code, message) = match status.as_u16() {
        400 => (
            "WEB-0400",
            "the request is malformed (its path, query or body)",
        ),
        405 => (
            "WEB-0405",
            "this path does not take this method; see the Allow header",
        ),
        413 => (
            "WEB-0413",
            "the request body is larger than the server takes",
        ),
        415 => (
            "WEB-0415",
            "the body's content type is not one this path takes",
        ),
        _ if status.is_server_error() => (
            "WEB-0500",
            "internal error; quote the request id to your administrator",
        ),
        _ => ("WEB-0400", "the request cannot be taken"),
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut shaped = axum::response::IntoResponse::into_response(error::WebError {
        status,
        code,
        message,
    });
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            shaped.headers_mut().insert(name, v.clone());
        }
    }
    shaped
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    );
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

/// A method as a metrics label: the standard ones by name, any other as `other`, so
/// made-up methods cannot add series.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A random id per request, returned as `x-request-id` and put on every log line of the
/// request, so a user's error report can be matched to the server's log.
async fn request_log(mut req: Request, next: Next) -> Response {
    let id = error::RequestId::new();
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    // The route's template, never the path: paths carry ids, and a label per id would grow
    // without bound.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".into(), |m| m.as_str().to_string());
    // The path only: query strings may carry tokens and never go to the log.
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let mut res = next.run(req).await;
    let status = res.status().as_u16();
    let labels = crate::metrics::labels(&[
        ("route", &route),
        ("method", method_label(&method)),
        ("status", &status.to_string()),
    ]);
    crate::metrics::global()
        .requests
        .get(&labels)
        .latency
        .observe(start.elapsed());
    tracing::info!(
        request_id = %id.0,
        %method,
        path = %path,
        status,
        duration_ms = start.elapsed().as_millis() as u64,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    res
}
