//! Vendor access grants: a tenant's owner gives a platform account read-only access for a
//! while (`/grants`); the platform account enters the tenant with it and leaves again.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::{Principal, GRANT_COOKIE};
use super::ui::{
    capitalise, error_page, field, header_for, in_realm, render, when, FieldError, Header,
};
use super::AppState;
use crate::identity::sessions::Place;
use crate::identity::{grants, IdentityError, Permission};
use crate::ids::{GrantId, TenantId};
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/grants",
            Access::Allowed(Permission::GrantsManage),
            get(grants_list).post(grant_create),
        )
        .route(
            "/grants/{id}/revoke",
            Access::Allowed(Permission::GrantsManage),
            post(grant_revoke),
        )
        .route(
            "/tenants/{id}/enter",
            Access::Allowed(Permission::TenantsRead),
            post(tenant_enter),
        )
        .route("/grant/leave", Access::SignedIn, post(grant_leave))
}

pub struct Row {
    pub id: String,
    pub email: String,
    pub reason: String,
    pub expires: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "identity/grants.html")]
struct GrantsPage {
    header: Option<Header>,
    rows: Vec<Row>,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
}

async fn page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
) -> Response {
    let list = match in_realm(state, p, None, |ctx, _| grants::list_blocking(ctx)).await {
        Ok(l) => l,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let now = state.app.clock().now_us();
    let rows = list
        .iter()
        .map(|g| Row {
            id: g.id.to_string(),
            email: g.email.clone(),
            reason: g.reason.clone(),
            expires: when(g.expires_us),
            live: g.live(now),
        })
        .collect();
    let page = GrantsPage {
        header: header_for(state, p, "/grants").await,
        rows,
        errors,
        notice,
    };
    render(status, &page)
}

async fn grants_list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = super::ui::done(&req).map(|d| match d {
        "granted" => "Access granted. It ends by itself at the time shown, and every request made with it is in the audit log.",
        _ => "The grant has been revoked.",
    });
    page(&state, &p, StatusCode::OK, Vec::new(), notice).await
}

async fn grant_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let (ip, f) = match super::ui::Posted::read(req).await {
        Ok(form) => (form.ip, form.fields),
        Err(r) => return r,
    };
    let (email, reason) = (field(&f, "email"), field(&f, "reason"));
    let secs = match field(&f, "hours").trim().parse::<u64>() {
        Ok(h) => h.saturating_mul(3600),
        Err(_) => {
            return page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("hours", "Choose how long the access lasts"),
                None,
            )
            .await
        }
    };
    let done = in_realm(&state, &p, ip, move |ctx, app| {
        grants::create_blocking(ctx, app.directory(), &email, &reason, secs)
    })
    .await;
    match done {
        Ok(_) => Redirect::to("/grants?done=granted").into_response(),
        Err(e @ (IdentityError::BadEmail(_) | IdentityError::NotFound(_))) => {
            page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("email", capitalise(&e.to_string())),
                None,
            )
            .await
        }
        Err(e @ IdentityError::BadName(_)) => {
            page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("reason", capitalise(&e.to_string())),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn grant_revoke(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let Ok(id) = GrantId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            IdentityError::NotFound("no such grant".into()),
        )
        .await;
    };
    let ip = client_ip(req.extensions());
    let gid = id.clone();
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        grants::revoke_blocking(ctx, &gid)
    })
    .await;
    state.auth.forget_grant(&id);
    match done {
        Ok(()) => Redirect::to("/grants?done=revoked").into_response(),
        Err(IdentityError::NotFound(_)) => {
            error_page(
                &state,
                Some(&p),
                IdentityError::NotFound("no such grant".into()),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

pub(super) fn grant_cookie(value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{GRANT_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

async fn tenant_enter(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let (Place::Platform, Some(me)) = (&p.place, p.user_id().cloned()) else {
        return Redirect::to("/").into_response();
    };
    let Ok(tenant) = TenantId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            IdentityError::NotFound("no such tenant".into()),
        )
        .await;
    };
    let (app, caller, t) = (state.app.clone(), p.caller(), tenant.clone());
    let now = state.app.clock().now_us();
    let found = tokio::task::spawn_blocking(move || -> Result<_, IdentityError> {
        let ctx = crate::door::open_blocking(&app, &t, caller, ip)?;
        grants::mine_blocking(&ctx, &me, now)
    })
    .await;
    match found {
        Ok(Ok(Some(g))) => {
            let max_age = ((g.expires_us - now) / 1_000_000).max(1);
            let mut res = Redirect::to("/").into_response();
            match grant_cookie(&format!("{tenant}.{}", g.id), max_age) {
                Some(c) => {
                    res.headers_mut().append(header::SET_COOKIE, c);
                    res
                }
                None => super::error::WebError::internal("WEB-0005").into_response(),
            }
        }
        Ok(Ok(None)) => {
            super::ui::message_page(
                &state,
                Some(&p),
                StatusCode::NOT_FOUND,
                "No access grant",
                "there is no live access grant from this tenant for your account; its owner can give one on its Access grants page",
                "IDN-0006",
            )
            .await
        }
        Ok(Err(e)) => error_page(&state, Some(&p), e).await,
        Err(_) => super::error::WebError::internal("WEB-0006").into_response(),
    }
}

async fn grant_leave() -> Response {
    let mut res = Redirect::to("/tenants").into_response();
    if let Some(c) = grant_cookie("", 0) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}
