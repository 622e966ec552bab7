//! `/metrics`: the process's counters in the Prometheus text format, for a scraper on this
//! host (a loopback peer not forwarding for another, unless `metrics.require_token`) or one
//! that presents the configured metrics token. They name no tenant, and a tenant's own credentials do not open them:
//! they describe the whole server.

use super::access::{client_ip, Access, Routes};
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> Routes {
    Routes::new().route("/metrics", Access::Public, get(metrics))
}

/// The text format's media type, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Headers a reverse proxy adds to say whom it forwards for. A loopback peer that sends one
/// is a proxy on this host speaking for someone else, who needs the token like any scraper
/// off this host.
const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

fn allowed(state: &AppState, req: &Request) -> bool {
    let proxied = PROXY_HEADERS.iter().any(|h| req.headers().contains_key(*h));
    let local = !proxied && client_ip(req.extensions()).is_some_and(|ip| ip.is_loopback());
    if local && !state.metrics_token_required {
        return true;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.metrics_token, presented) {
        (Some(token), Some(p)) => token.matches(p),
        _ => false,
    }
}

async fn metrics(State(state): State<AppState>, req: Request) -> Response {
    if !allowed(&state, &req) {
        let why = if state.metrics_token_required {
            "metrics are served to a scraper with the metrics token\n"
        } else {
            "metrics are served to this host, or to a scraper with the metrics token\n"
        };
        let mut res = (StatusCode::FORBIDDEN, why).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return res;
    }
    let live = crate::metrics::Live {
        tenant_files_open: state.app.tenant_stores().open_count() as u64,
        endpoints: state.models.states(),
        uptime: state.started.elapsed(),
    };
    let body = crate::metrics::global().render(&live);
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    res
}
