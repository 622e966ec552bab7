//! The signed-out and first pages: sign-in, the first-password change, sign-out, overview.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::{Principal, Who};
use super::ui::{capitalise, field, header_for, render, with_session, FieldError, Header, Posted};
use super::AppState;
use crate::door;
use crate::identity::sessions::{Place, Stage};
use crate::identity::{signin, IdentityError, Password};
use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;

pub fn routes() -> Routes {
    Routes::new()
        .route("/", Access::Public, get(home))
        .route("/login", Access::Public, get(login_form).post(login))
        .merge(super::sso::routes())
        .route(
            "/password",
            Access::Stages(&[Stage::ChangePassword, Stage::Full]),
            get(password_form).post(password_change),
        )
        .route("/logout", Access::AnyStage, axum::routing::post(logout))
}

fn principal(req: &Request) -> Option<Arc<Principal>> {
    req.extensions().get::<Arc<Principal>>().cloned()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    header: Option<Header>,
    name: String,
    role: String,
    notice: Option<&'static str>,
    charts: Vec<super::chart::Chart>,
}

/// The usage overview: sign-ins, failed sign-ins and journal entries per day, 30 days.
async fn usage_charts(state: &AppState, p: &Principal) -> Vec<super::chart::Chart> {
    if !p
        .permissions
        .contains(crate::identity::Permission::StatusRead)
    {
        return Vec::new();
    }
    let now = state.app.clock().now_us();
    let days = super::ui::in_realm(state, p, None, move |ctx, _| {
        crate::audit::browse::daily_blocking(ctx, 30, now)
    })
    .await;
    let Ok(days) = days else {
        return Vec::new();
    };
    let labels: Vec<String> = days
        .iter()
        .map(|d| {
            let t = crate::clock::format_rfc3339(d.day * 86_400_000_000);
            t.get(5..10).unwrap_or_default().to_string()
        })
        .collect();
    let series = |f: fn(&crate::audit::browse::Day) -> i64| days.iter().map(f).collect::<Vec<_>>();
    vec![
        super::chart::bars(
            "sign-ins",
            "Sign-ins per day",
            &labels,
            &series(|d| d.sign_ins),
            false,
        ),
        super::chart::bars(
            "failed",
            "Failed sign-ins per day",
            &labels,
            &series(|d| d.failed_sign_ins),
            true,
        ),
        super::chart::bars(
            "entries",
            "Audit events per day",
            &labels,
            &series(|d| d.entries),
            false,
        ),
    ]
}

async fn home(State(state): State<AppState>, req: Request) -> Response {
    let Some(p) = principal(&req) else {
        return Redirect::to("/login").into_response();
    };
    if let Some(stage) = p.stage().filter(|s| *s != Stage::Full) {
        return Redirect::to(stage.page()).into_response();
    }
    let notice = req
        .uri()
        .query()
        .filter(|q| q.split('&').any(|kv| kv == "changed=1"))
        .map(|_| "Your password has been changed.");
    let name = match &p.who {
        Who::User { name, .. } => name.clone(),
        Who::Token { name, .. } => name.clone(),
    };
    let page = HomePage {
        header: header_for(&state, &p, "/").await,
        name,
        role: p.role.clone(),
        notice,
        charts: usage_charts(&state, &p).await,
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    header: Option<Header>,
    email: String,
    /// The single sign-on form's address or organisation id.
    who: String,
    errors: Vec<FieldError>,
    password_error: bool,
    sso_error: bool,
}

/// The sign-in page with `errors` against its fields (`email`, `password`, `who`).
pub(super) fn login_page(
    status: StatusCode,
    email: &str,
    who: &str,
    errors: Vec<FieldError>,
) -> Response {
    render(
        status,
        &LoginPage {
            header: None,
            email: email.trim().chars().take(254).collect(),
            who: who.trim().chars().take(254).collect(),
            password_error: errors.iter().any(|e| e.field != "who"),
            sso_error: errors.iter().any(|e| e.field == "who"),
            errors,
        },
    )
}

async fn login_form(req: Request) -> Response {
    if principal(&req).is_some() {
        return Redirect::to("/").into_response();
    }
    login_page(StatusCode::OK, "", "", Vec::new())
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-strongroom=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let form = match Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (email, password) = (form.field("email"), form.field("password"));
    let again = |status: StatusCode, field: &'static str, message: String| {
        login_page(status, &email, "", FieldError::new(field, message))
    };
    if email.trim().is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "email",
            "Enter your e-mail address".into(),
        );
    }
    if password.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "password",
            "Enter your password".into(),
        );
    }
    let done = signin::sign_in(
        &state.app,
        &state.auth.throttle,
        &state.auth.settings,
        &email,
        Password::new(password),
        form.client.clone(),
    )
    .await;
    let outcome = match &done {
        Ok(_) => "success",
        Err(IdentityError::BadCredentials) => "bad_credentials",
        Err(IdentityError::AddressRefused) => "address_refused",
        Err(IdentityError::Throttled(_)) => "throttled",
        Err(IdentityError::Busy) => "busy",
        Err(_) => "error",
    };
    let metrics = crate::metrics::global();
    crate::metrics::inc(
        &metrics.sign_ins,
        &[("method", "password"), ("outcome", outcome)],
    );
    if outcome == "throttled" {
        crate::metrics::inc(&metrics.throttled, &[("reason", "sign_in")]);
    }
    match done {
        Ok(s) => with_session(
            Redirect::to(s.stage.page()).into_response(),
            &s.secret,
            &s.place,
            state.auth.settings.session_absolute_secs,
        ),
        Err(IdentityError::BadCredentials) => again(
            StatusCode::UNAUTHORIZED,
            "email",
            "The e-mail address or password is wrong".into(),
        ),
        Err(IdentityError::AddressRefused) => again(
            StatusCode::FORBIDDEN,
            "email",
            "Signing in from this address is not allowed by your organisation's policy".into(),
        ),
        Err(IdentityError::Throttled(secs)) => {
            let mut res = again(
                StatusCode::TOO_MANY_REQUESTS,
                "email",
                format!("Too many failed sign-ins. Try again in {secs} seconds."),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        Err(IdentityError::Busy) => {
            let mut res = again(
                StatusCode::SERVICE_UNAVAILABLE,
                "email",
                "Too many sign-ins at once. Try again in a few seconds.".into(),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            res
        }
        Err(e) => super::error::WebError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    header: Option<Header>,
    csrf: String,
    first: bool,
    errors: Vec<FieldError>,
}

async fn password_form(State(state): State<AppState>, PrincipalOf(p): PrincipalOf) -> Response {
    password_page(&state, &p, StatusCode::OK, Vec::new()).await
}

async fn password_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
) -> Response {
    let Who::User { csrf, stage, .. } = &p.who else {
        return Redirect::to("/").into_response();
    };
    let page = PasswordPage {
        header: header_for(state, p, "").await,
        csrf: csrf.clone(),
        first: *stage == Stage::ChangePassword,
        errors,
    };
    render(status, &page)
}

async fn password_change(State(state): State<AppState>, req: Request) -> Response {
    let Some(p) = principal(&req) else {
        return Redirect::to("/login").into_response();
    };
    let Some(user) = p.user_id().cloned() else {
        return Redirect::to("/").into_response();
    };
    let form = match Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (ip, fields) = (form.ip, &form.fields);
    let (current, new, confirm) = (
        field(fields, "current"),
        field(fields, "new"),
        field(fields, "confirm"),
    );
    let problem = |field: &'static str, message: &str| FieldError::new(field, message);
    if new != confirm {
        return password_page(
            &state,
            &p,
            StatusCode::BAD_REQUEST,
            problem("confirm", "The two new passwords differ"),
        )
        .await;
    }
    // Counted before the current password is checked: see `Throttle::password_attempt`.
    let now = state.app.clock().now_us();
    if let Err(wait) = state
        .auth
        .throttle
        .password_attempt(&user, now, &state.auth.settings)
    {
        return password_page(
            &state,
            &p,
            StatusCode::TOO_MANY_REQUESTS,
            problem(
                "current",
                &format!("Too many wrong passwords. Try again in {wait} seconds."),
            ),
        )
        .await;
    }
    let caller = super::auth::Principal::caller(&p);
    let (app, settings, place) = (
        state.app.clone(),
        state.auth.settings.clone(),
        p.place.clone(),
    );
    let client = form.client.clone();
    let uid = user.clone();
    let done = tokio::task::spawn_blocking(move || {
        let (current, new) = (Password::new(current), Password::new(new));
        let dir = app.directory().clone();
        match &place {
            Place::Platform => {
                let ctx = door::platform(&app, caller, ip);
                signin::change_password_blocking(
                    &ctx, &dir, &uid, &current, &new, &client, &settings,
                )
            }
            Place::Tenant(t) => {
                let ctx = door::open_blocking(&app, t, caller, ip)?;
                signin::change_password_blocking(
                    &ctx, &dir, &uid, &current, &new, &client, &settings,
                )
            }
        }
    })
    .await;
    // The current password was right unless it was called wrong.
    if !matches!(done, Ok(Err(IdentityError::WrongCurrentPassword))) {
        state.auth.throttle.password_passed(&user);
    }
    match done {
        Ok(Ok((_, secret, stage))) => {
            state.auth.forget_user(&p.place, &user);
            let to = if stage == Stage::Full {
                "/?changed=1"
            } else {
                stage.page()
            };
            with_session(
                Redirect::to(to).into_response(),
                &secret,
                &p.place,
                state.auth.settings.session_absolute_secs,
            )
        }
        Ok(Err(IdentityError::WrongCurrentPassword)) => {
            password_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                problem("current", "The current password is wrong"),
            )
            .await
        }
        Ok(Err(e @ (IdentityError::WeakPassword(_) | IdentityError::SamePassword))) => {
            password_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                problem("new", &capitalise(&e.to_string())),
            )
            .await
        }
        Ok(Err(e)) => super::error::WebError::from(e).into_response(),
        Err(_) => super::error::WebError::internal("WEB-0003").into_response(),
    }
}

async fn logout(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    if let Who::User { id, session, .. } = &p.who {
        let (app, caller, place, id, sid) = (
            state.app.clone(),
            p.caller(),
            p.place.clone(),
            id.clone(),
            session.clone(),
        );
        // A platform account inside a tenant under an access grant: its session is the
        // platform's, and that is the one to end.
        let place = if p.grant.is_some() {
            Place::Platform
        } else {
            place
        };
        // Signing out must work at any stage, so it is the person acting for themself.
        let done = tokio::task::spawn_blocking(move || -> Result<(), IdentityError> {
            match &place {
                Place::Platform => {
                    signin::sign_out_blocking(&door::platform(&app, caller, ip), &id, &sid)
                }
                Place::Tenant(t) => {
                    signin::sign_out_blocking(&door::open_blocking(&app, t, caller, ip)?, &id, &sid)
                }
            }
        })
        .await;
        state.auth.forget_session(session);
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return super::error::WebError::from(e).into_response(),
            Err(_) => return super::error::WebError::internal("WEB-0004").into_response(),
        }
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(header::SET_COOKIE, clear_cookie());
    if let Some(v) = super::grants::grant_cookie("", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
