//! The JSON API under `/api/v1`. Errors have one shape: `{"error": {"code", "message"}}`.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Who;
use crate::identity::sessions::Place;
use axum::routing::get;
use axum::Json;

pub fn routes() -> Routes {
    Routes::new().route("/api/v1/me", Access::SignedIn, get(me))
}

/// Who the caller is: realm, tenant, user or token, role and permissions.
async fn me(PrincipalOf(p): PrincipalOf) -> Json<serde_json::Value> {
    let (realm, tenant) = match &p.place {
        Place::Platform => ("platform", None),
        Place::Tenant(t) => ("tenant", Some(t.as_str())),
    };
    let (kind, user, token) = match &p.who {
        Who::User {
            id, email, name, ..
        } => (
            "user",
            Some(serde_json::json!({ "id": id, "email": email.as_str(), "name": name })),
            None,
        ),
        Who::Token { id, name } => (
            "token",
            None,
            Some(serde_json::json!({ "id": id, "name": name })),
        ),
    };
    Json(serde_json::json!({
        "realm": realm,
        "tenant": tenant,
        "kind": kind,
        "user": user,
        "token": token,
        "role": p.role,
        "permissions": p.permissions,
    }))
}
