//! `/.well-known/security.txt` (RFC 9116), from the `security` section of the configuration.
//! Without a configured contact it answers 404 rather than publish a made-up address.

use super::access::{Access, Routes};
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> Routes {
    Routes::new().route(
        "/.well-known/security.txt",
        Access::Public,
        get(security_txt),
    )
}

async fn security_txt(State(state): State<AppState>) -> Response {
    let sec = &state.app.config().security;
    let Some(contact) = &sec.contact else {
        return super::error::not_found().await.into_response();
    };
    // RFC 9116 asks for an expiry less than a year ahead; the file is generated, so it is
    // always fresh.
    let in_180_days = state
        .app
        .clock()
        .now_us()
        .saturating_add(180 * 86_400 * 1_000_000);
    let expires = crate::clock::format_rfc3339(in_180_days);
    let expires = &expires[..expires.find('.').unwrap_or(expires.len())];
    let expires = format!("{expires}Z");
    let mut body = format!("Contact: {contact}\nExpires: {expires}\n");
    if let Some(policy) = &sec.policy_url {
        body.push_str(&format!("Policy: {policy}\n"));
    }
    body.push_str(&format!(
        "Preferred-Languages: {}\n",
        sec.preferred_languages
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
