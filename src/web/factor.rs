//! The second factor in the browser: the code at sign-in (`/login/totp`), enrolment with a
//! QR code and recovery codes (`/security/totp`), and removal.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::{Principal, Who};
use super::ui::{
    capitalise, error_page, header_for, in_realm, render, with_session, FieldError, Header, Posted,
};
use super::AppState;
use crate::door::Door;
use crate::identity::sessions::Stage;
use crate::identity::{signin, totp, IdentityError};
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/login/totp",
            Access::Stages(&[Stage::Totp]),
            get(code_form).post(code_check),
        )
        .route(
            "/security/totp",
            Access::Stages(&[Stage::Enrol, Stage::Full]),
            get(enrol_form).post(enrol_confirm),
        )
        .route("/security/totp/remove", Access::SignedIn, post(remove_own))
        .route("/users/{id}/remove-2fa", Access::SignedIn, post(remove_for))
}

#[derive(Template)]
#[template(path = "identity/totp_code.html")]
struct CodePage {
    header: Option<Header>,
    csrf: String,
    errors: Vec<FieldError>,
}

fn csrf_of(p: &Principal) -> String {
    match &p.who {
        Who::User { csrf, .. } => csrf.clone(),
        Who::Token { .. } => String::new(),
    }
}

async fn code_form(State(state): State<AppState>, PrincipalOf(p): PrincipalOf) -> Response {
    let page = CodePage {
        header: header_for(&state, &p, "").await,
        csrf: csrf_of(&p),
        errors: Vec::new(),
    };
    render(StatusCode::OK, &page)
}

async fn code_check(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let Who::User {
        id, email, session, ..
    } = &p.who
    else {
        return Redirect::to("/").into_response();
    };
    let form = match Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (ip, client, code) = (form.ip, form.client.clone(), form.field("code"));
    let again = |status: StatusCode, message: String| {
        let page = CodePage {
            header: None,
            csrf: csrf_of(&p),
            errors: FieldError::new("code", message),
        };
        render(status, &page)
    };
    let now = state.app.clock().now_us();
    let settings = state.auth.settings.clone();
    if code.trim().is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter the code from your authenticator app, or a recovery code".into(),
        );
    }
    // Counted before it is checked: see `Throttle::factor_attempt`.
    if let Err(wait) = state.auth.throttle.factor_attempt(id, now, &settings) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong codes. Try again in {wait} seconds."),
        );
    }
    let (uid, email, sid) = (id.clone(), email.clone(), session.clone());
    let done = in_realm(&state, &p, ip, move |ctx, app| {
        let passed = totp::check_blocking(ctx, app.directory(), &uid, &email, &code)?;
        let next = signin::advance_blocking(ctx, app.directory(), &uid, &sid, &client, &settings)?;
        Ok::<_, IdentityError>((passed, next))
    })
    .await;
    match done {
        Ok((passed, (_, secret, stage))) => {
            state.auth.throttle.factor_passed(id);
            state.auth.forget_session(session);
            let to = match (passed, stage) {
                (totp::Passed::Recovery { left }, Stage::Full) if left <= 3 => {
                    "/security?done=recovery-low"
                }
                (_, stage) => stage.page(),
            };
            with_session(
                Redirect::to(to).into_response(),
                &secret,
                &p.place,
                state.auth.settings.session_absolute_secs,
            )
        }
        Err(IdentityError::WrongCode) => again(
            StatusCode::BAD_REQUEST,
            capitalise(&IdentityError::WrongCode.to_string()),
        ),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

#[derive(Template)]
#[template(path = "identity/totp_enrol.html")]
struct EnrolPage {
    header: Option<Header>,
    csrf: String,
    enrolled: bool,
    required: bool,
    recovery_left: i64,
    uri: String,
    qr_svg: String,
    secret: String,
    errors: Vec<FieldError>,
}

async fn enrol_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
) -> Response {
    let Who::User {
        id, email, stage, ..
    } = &p.who
    else {
        return Redirect::to("/").into_response();
    };
    let (uid, email) = (id.clone(), email.clone());
    let shown = in_realm(state, p, None, move |ctx, app| {
        let (on, left) = ctx.read_blocking(|c| {
            totp::status(c, &uid).map_err(crate::identity::accounts::store_err)
        })?;
        if on {
            return Ok::<_, IdentityError>((true, left, None));
        }
        let e = totp::begin_blocking(ctx, app.directory(), &uid, &email)?;
        Ok((false, 0, Some(e)))
    })
    .await;
    let (enrolled, left, enrolment) = match shown {
        Ok(x) => x,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let (uri, qr_svg, secret) = match enrolment {
        Some(e) => {
            // The SVG is drawn by us from the URI; only its XML prologue is dropped.
            let svg = e
                .qr_svg
                .find("<svg")
                .map_or(String::new(), |at| e.qr_svg[at..].to_string());
            (e.uri, svg, e.secret_base32)
        }
        None => Default::default(),
    };
    let page = EnrolPage {
        header: header_for(state, p, "/security").await,
        csrf: csrf_of(p),
        enrolled,
        required: *stage == Stage::Enrol,
        recovery_left: left,
        uri,
        qr_svg,
        secret,
        errors,
    };
    render(status, &page)
}

async fn enrol_form(State(state): State<AppState>, PrincipalOf(p): PrincipalOf) -> Response {
    enrol_page(&state, &p, StatusCode::OK, Vec::new()).await
}

#[derive(Template)]
#[template(path = "identity/recovery_codes.html")]
struct RecoveryPage {
    header: Option<Header>,
    codes: Vec<String>,
    next: &'static str,
}

async fn enrol_confirm(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let Who::User {
        id,
        email,
        session,
        stage,
        ..
    } = &p.who
    else {
        return Redirect::to("/").into_response();
    };
    let form = match Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (ip, client, code) = (form.ip, form.client.clone(), form.field("code"));
    let settings = state.auth.settings.clone();
    let (uid, email, sid, was_enrolling) = (
        id.clone(),
        email.clone(),
        session.clone(),
        *stage == Stage::Enrol,
    );
    let done = in_realm(&state, &p, ip, move |ctx, app| {
        let codes = totp::confirm_blocking(ctx, app.directory(), &uid, &email, &code)?;
        // A privilege change: the session that set up the factor is replaced.
        let next = signin::advance_blocking(ctx, app.directory(), &uid, &sid, &client, &settings)?;
        Ok::<_, IdentityError>((codes, next))
    })
    .await;
    match done {
        Ok((codes, (_, secret, stage))) => {
            state.auth.forget_session(session);
            let page = RecoveryPage {
                header: None,
                codes,
                next: if was_enrolling {
                    stage.page()
                } else {
                    "/security"
                },
            };
            with_session(
                render(StatusCode::OK, &page),
                &secret,
                &p.place,
                state.auth.settings.session_absolute_secs,
            )
        }
        Err(IdentityError::WrongCode) => {
            enrol_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new(
                    "code",
                    "The code is wrong; scan the new QR code below and enter the code it shows",
                ),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn remove_own(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let Some(id) = p.user_id().cloned() else {
        return Redirect::to("/").into_response();
    };
    let ip = client_ip(req.extensions());
    let uid = id.clone();
    match in_realm(&state, &p, ip, move |ctx, _| {
        totp::remove_blocking(ctx, &uid)
    })
    .await
    {
        Ok(()) => Redirect::to("/security?done=totp-removed").into_response(),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn remove_for(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let Ok(id) = crate::ids::UserId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            IdentityError::NotFound("no such account".into()),
        )
        .await;
    };
    let ip = client_ip(req.extensions());
    let uid = id.clone();
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        totp::remove_blocking(ctx, &uid)
    })
    .await;
    match done {
        Ok(()) => Redirect::to(&format!("/users/{id}?done=2fa-removed")).into_response(),
        Err(IdentityError::NotFound(m)) if m.starts_with("no account") => {
            error_page(
                &state,
                Some(&p),
                IdentityError::NotFound("no such account".into()),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
