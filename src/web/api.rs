//! The JSON API under `/api/v1`. Errors have one shape: `{"error": {"code", "message"}}`.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Who;
use crate::identity::sessions::Place;
use crate::identity::Permissions;
use crate::ids::{TenantId, TokenId, UserId};
use axum::routing::get;
use axum::Json;
use serde::Serialize;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/me", Access::SignedIn, get(me))
        .route(
            "/api/v1/openapi.json",
            Access::Public,
            get(super::openapi::document),
        )
}

/// Where an account lives.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Realm {
    Platform,
    Tenant,
}

/// Whether the caller is a person or an API token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    User,
    Token,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeUser {
    pub id: UserId,
    pub email: String,
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeToken {
    pub id: TokenId,
    pub name: String,
}

/// The caller: realm, tenant, user or token, role and permissions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub realm: Realm,
    /// The tenant, for a tenant account or token; null on the platform.
    pub tenant: Option<TenantId>,
    pub kind: CallerKind,
    /// Set when `kind` is `user`.
    pub user: Option<MeUser>,
    /// Set when `kind` is `token`.
    pub token: Option<MeToken>,
    pub role: String,
    /// The permissions of the role, by name (such as `knowledge.read`).
    #[schema(value_type = Vec<String>)]
    pub permissions: Permissions,
}

/// Who the caller is.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "identity",
    operation_id = "me",
    responses((status = 200, description = "The caller", body = Me))
)]
async fn me(PrincipalOf(p): PrincipalOf) -> Json<Me> {
    let (realm, tenant) = match &p.place {
        Place::Platform => (Realm::Platform, None),
        Place::Tenant(t) => (Realm::Tenant, Some(t.clone())),
    };
    let (kind, user, token) = match &p.who {
        Who::User {
            id, email, name, ..
        } => (
            CallerKind::User,
            Some(MeUser {
                id: id.clone(),
                email: email.as_str().to_string(),
                name: name.clone(),
            }),
            None,
        ),
        Who::Token { id, name } => (
            CallerKind::Token,
            None,
            Some(MeToken {
                id: id.clone(),
                name: name.clone(),
            }),
        ),
    };
    Json(Me {
        realm,
        tenant,
        kind,
        user,
        token,
        role: p.role.clone(),
        permissions: p.permissions,
    })
}
