//! `/status`: a small public page (and `/status.json`) saying whether the service is up and
//! ready. It shows no tenant, no count and no path: it is readable without signing in.

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
    version: &'static str,
    operational: bool,
    uptime: String,
    checks: Vec<(&'static str, bool)>,
    /// False when a key is older than `keys.max_age_days`: a notice, not an outage.
    keys_within_policy: bool,
}

/// Whether every key is within the configured age policy (true when none is configured).
async fn keys_within_policy(state: &AppState) -> bool {
    let app = state.app.clone();
    tokio::task::spawn_blocking(move || {
        crate::keys::status(&app)
            .map(|list| list.iter().all(|k| !k.too_old))
            .unwrap_or(true)
    })
    .await
    .unwrap_or(true)
}

fn uptime(state: &AppState) -> String {
    let s = state.started.elapsed().as_secs();
    format!("{}d {}h {}m", s / 86_400, (s / 3600) % 24, (s / 60) % 60)
}

async fn status_page(State(state): State<AppState>) -> Response {
    let checks = readiness(&state).await;
    let page = StatusPage {
        header: None,
        version: env!("CARGO_PKG_VERSION"),
        operational: checks.iter().all(|(_, ok)| *ok),
        uptime: uptime(&state),
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
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
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
