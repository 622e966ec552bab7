//! `/healthz` (the process answers) and `/readyz` (keys loaded, `system.db` readable, not
//! shutting down): the first for restarts, the second for load balancers.

use super::access::{Access, Routes};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn routes() -> Routes {
    Routes::new()
        .route("/healthz", Access::Public, get(healthz))
        .route("/readyz", Access::Public, get(readyz))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Runs the readiness checks; shared with the status page.
pub async fn readiness(state: &AppState) -> Vec<(&'static str, bool)> {
    let app = state.app.clone();
    // One blocking read answers two questions: system.db is readable, and the root key this
    // process holds is still the installation's current one (not rotated under it).
    let (store_ok, key_current) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || {
            let current = app.system().read(|c| {
                crate::store::system::meta_get(c, "root_key_id").map_err(|e| app.system().err(&e))
            });
            match current {
                Ok(id) => (true, id.as_deref() == Some(app.keyring().root_key_id())),
                Err(_) => (false, false),
            }
        }),
    )
    .await
    .map(|r| r.unwrap_or((false, false)))
    .unwrap_or((false, false));
    vec![
        ("root_key_current", key_current),
        ("system_store", store_ok),
        ("system_writer", state.app.system().writer().is_running()),
        ("accepting", state.accepting.load(Ordering::SeqCst)),
    ]
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let checks = readiness(&state).await;
    let ready = checks.iter().all(|(_, ok)| *ok);
    let body = serde_json::json!({
        "ready": ready,
        "checks": checks.iter().map(|(k, v)| (k.to_string(), serde_json::Value::Bool(*v)))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
