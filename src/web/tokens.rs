//! API tokens of the caller's tenant: list, make (shown once), revoke.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::ui::{
    error_page, field, header_for, in_realm, render, when, FieldError, Header, SecretPage,
};
use super::AppState;
use crate::identity::tokens::{self, NewToken, TokenInfo};
use crate::identity::{roles, IdentityError, Permission};
use crate::ids::TokenId;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/tokens",
            Access::Allowed(Permission::TokensRead),
            get(tokens_list),
        )
        .route(
            "/tokens",
            Access::Allowed(Permission::TokensManage),
            post(token_create),
        )
        .route(
            "/tokens/{id}/revoke",
            Access::Allowed(Permission::TokensManage),
            post(token_revoke),
        )
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub role: String,
    pub expires: String,
    pub last_used: String,
    pub live: bool,
}

fn row(t: &TokenInfo, now: i64) -> Row {
    let expired = t.expires_us.is_some_and(|e| e <= now);
    Row {
        id: t.id.to_string(),
        name: t.name.clone(),
        role: t.role.clone(),
        expires: t.expires_us.map_or("never".into(), when),
        last_used: t
            .last_used_us
            .map_or("never".into(), |u| super::ui::when_ago(u, now)),
        live: t.revoked_us.is_none() && !expired,
    }
}

#[derive(Template)]
#[template(path = "identity/tokens.html")]
struct TokensPage {
    header: Option<Header>,
    rows: Vec<Row>,
    role_names: Vec<String>,
    may_manage: bool,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
}

async fn tokens_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
) -> Response {
    let may = p.permissions.contains(Permission::TokensManage);
    let listed = in_realm(state, p, None, move |ctx, _| -> Result<_, IdentityError> {
        let list = tokens::list_blocking(ctx)?;
        let roles = if may {
            roles::list_blocking(ctx).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok((list, roles))
    })
    .await;
    let (list, roles) = match listed {
        Ok(x) => x,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let now = state.app.clock().now_us();
    let page = TokensPage {
        header: header_for(state, p, "/tokens").await,
        rows: list.iter().map(|t| row(t, now)).collect(),
        role_names: roles.into_iter().map(|r| r.name).collect(),
        may_manage: may,
        errors,
        notice,
    };
    render(status, &page)
}

async fn tokens_list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = (super::ui::done(&req) == Some("revoked"))
        .then_some("The token has been revoked. Programs using it are refused from now on.");
    tokens_page(&state, &p, StatusCode::OK, Vec::new(), notice).await
}

async fn token_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let (ip, fields) = match super::ui::Posted::read(req).await {
        Ok(form) => (form.ip, form.fields),
        Err(r) => return r,
    };
    let expires = field(&fields, "expires");
    let lifetime = match expires.as_str() {
        "" | "never" => None,
        other => match tokens::parse_lifetime(other) {
            Ok(l) => Some(l),
            Err(m) => {
                return tokens_page(
                    &state,
                    &p,
                    StatusCode::BAD_REQUEST,
                    FieldError::new("expires", super::ui::capitalise(&m)),
                    None,
                )
                .await
            }
        },
    };
    let name = field(&fields, "name");
    let input = NewToken {
        name: (!name.trim().is_empty()).then_some(name),
        role: field(&fields, "role"),
        lifetime_secs: lifetime,
    };
    let done = in_realm(&state, &p, ip, move |ctx, app| {
        tokens::create_blocking(ctx, app.directory(), &input)
    })
    .await;
    match done {
        Ok((info, text)) => {
            let page = SecretPage {
                header: header_for(&state, &p, "/tokens").await,
                title: "Token created".into(),
                intro: format!(
                    "The token {:?} acts with the role {}. Send it as Authorization: Bearer. It is shown once: copy it now.",
                    info.name, info.role
                ),
                secret: text.expose().to_string(),
                back: "/tokens".into(),
                back_label: "Back to API tokens",
            };
            render(StatusCode::CREATED, &page)
        }
        Err(e @ (IdentityError::UnknownRole(_) | IdentityError::BadName(_))) => {
            let f = if matches!(e, IdentityError::UnknownRole(_)) {
                "role"
            } else {
                "name"
            };
            tokens_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new(f, super::ui::capitalise(&e.to_string())),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn token_revoke(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let Ok(id) = TokenId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            IdentityError::NotFound("no such token".into()),
        )
        .await;
    };
    let tid = id.clone();
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        tokens::revoke_blocking(ctx, Some(&tid))
    })
    .await;
    state.auth.forget_tokens(&p.place, Some(&id));
    match done {
        Ok(_) => Redirect::to("/tokens?done=revoked").into_response(),
        Err(IdentityError::NotFound(_)) => {
            error_page(
                &state,
                Some(&p),
                IdentityError::NotFound("no such token".into()),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
