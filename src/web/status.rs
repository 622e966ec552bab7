//! `/status`: a small public page (and `/status.json`) saying whether the service is up and
//! ready. It shows no tenant, no count, no path, no version and no uptime (which would date
//! the last upgrade): it is readable without signing in.

use super::access::{Access, Routes};
use super::health::readiness;
use super::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;

pub fn routes() -> Routes {
    Routes::new()
        .route("/status", Access::Public, get(status_page))
        .route("/status.json", Access::Public, get(status_json))
        .route("/static/style.css", Access::Public, get(stylesheet))
        .route(
            "/static/assistant.js",
            Access::Public,
            get(assistant_script),
        )
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    header: Option<super::ui::Header>,
    operational: bool,
    checks: Vec<(&'static str, bool)>,
    /// False when a key is older than `keys.max_age_days`: a notice, not an outage.
    keys_within_policy: bool,
}

/// How long an answer on the keys' age is kept.
const KEY_AGE_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether every key is within the configured age policy (true when none is configured).
/// Read at most once a minute, by one request while the others wait for its answer: it
/// walks every tenant's keys, and anyone may ask.
async fn keys_within_policy(state: &AppState) -> bool {
    let mut kept = state.key_age.lock().await;
    if let Some((at, ok)) = *kept {
        if at.elapsed() < KEY_AGE_KEPT {
            return ok;
        }
    }
    let app = state.app.clone();
    let ok = tokio::task::spawn_blocking(move || {
        crate::keys::status(&app)
            .map(|list| list.iter().all(|k| !k.too_old))
            .unwrap_or(true)
    })
    .await
    .unwrap_or(true);
    *kept = Some((std::time::Instant::now(), ok));
    ok
}

async fn status_page(State(state): State<AppState>) -> Response {
    let checks = readiness(&state).await;
    let page = StatusPage {
        header: None,
        operational: checks.iter().all(|(_, ok)| *ok),
        checks,
        keys_within_policy: keys_within_policy(&state).await,
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status page failed to render");
            super::error::WebError::internal("WEB-0500").into_response()
        }
    }
}

async fn status_json(State(state): State<AppState>) -> impl IntoResponse {
    let checks = readiness(&state).await;
    let operational = checks.iter().all(|(_, ok)| *ok);
    Json(serde_json::json!({
        "status": if operational { "operational" } else { "degraded" },
        "keys_within_policy": keys_within_policy(&state).await,
    }))
}

/// The one script: streams the assistant's answer into its page (which works without it).
async fn assistant_script() -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/assistant.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
}
