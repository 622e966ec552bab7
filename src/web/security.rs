//! My security: the signed-in person's sessions (device, address, last seen), ending any of
//! them, and the way to a new password.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Who;
use super::ui::{error_page, header_for, in_realm, render, Header};
use super::users::{session_rows, SessionRow};
use super::AppState;
use crate::identity::{sessions, IdentityError};
use crate::ids::SessionId;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route("/security", Access::SignedIn, get(security_show))
        .route(
            "/security/sessions/{id}/end",
            Access::SignedIn,
            post(session_end),
        )
}

#[derive(Template)]
#[template(path = "identity/security.html")]
struct SecurityPage {
    header: Option<Header>,
    sessions: Vec<SessionRow>,
    notice: Option<&'static str>,
    two_factor: bool,
    recovery_left: i64,
    unfamiliar: Vec<(String, String, String)>,
}

async fn security_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let Who::User { id, session, .. } = &p.who else {
        return Redirect::to("/").into_response();
    };
    let uid = id.clone();
    let listed = in_realm(&state, &p, None, move |ctx, _| {
        let list = sessions::list_blocking(ctx, &uid)?;
        let factor = crate::door::Door::read_blocking(ctx, |c| {
            crate::identity::totp::status(c, &uid).map_err(crate::identity::accounts::store_err)
        })?;
        let odd = crate::identity::signin::unfamiliar_blocking(ctx, &uid, 5)?;
        Ok::<_, IdentityError>((list, factor, odd))
    })
    .await;
    let (list, (two_factor, recovery_left), odd) = match listed {
        Ok(l) => l,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let notice = super::ui::done(&req).map(|d| match d {
        "ended" => "The session has been ended.",
        "totp-removed" => "Your second factor has been removed.",
        "recovery-low" => "You signed in with a recovery code and have few left. Remove and set up the second factor again to get new ones.",
        _ => "Done.",
    });
    let now = state.app.clock().now_us();
    let page = SecurityPage {
        header: header_for(&state, &p, "/security").await,
        sessions: session_rows(&list, now, Some(session)),
        notice,
        two_factor,
        recovery_left,
        unfamiliar: odd
            .into_iter()
            .map(|u| {
                (
                    super::ui::when_ago(u.time_us, now),
                    u.ip.unwrap_or_else(|| "-".into()),
                    u.device.unwrap_or_else(|| "unknown".into()),
                )
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

async fn session_end(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let Who::User { id, .. } = &p.who else {
        return Redirect::to("/").into_response();
    };
    let Ok(sid) = SessionId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            IdentityError::NotFound("no such session".into()),
        )
        .await;
    };
    let ip = client_ip(req.extensions());
    let (uid, s) = (id.clone(), sid.clone());
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        sessions::end_blocking(ctx, &uid, &s, "ended_by_owner")
    })
    .await;
    state.auth.forget_session(&sid);
    match done {
        Ok(()) => Redirect::to("/security?done=ended").into_response(),
        Err(IdentityError::NotFound(_)) => {
            error_page(
                &state,
                Some(&p),
                IdentityError::NotFound("no such session".into()),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
