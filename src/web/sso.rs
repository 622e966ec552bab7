//! Single sign-on pages: starting a sign-in (from the sign-in page, or a tenant's own link),
//! the provider's callback, and the tenant's settings.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::pages::login_page;
use super::ui::{
    capitalise, error_page, field, header_for, in_realm, render, with_session, FieldError, Header,
    Posted,
};
use super::AppState;
use crate::error::{DomainError, ErrorKind};
use crate::identity::directory::Home;
use crate::identity::sessions::Client;
use crate::identity::sso::{self, Callback, Settings, SsoError, Update};
use crate::identity::{Email, Permission};
use crate::ids::TenantId;
use crate::keyring::SecretString;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The cookie that carries a started sign-in to the callback. `SameSite=Lax`, because the
/// provider's redirect back is a cross-site navigation that a `Strict` cookie would miss.
pub const FLOW_COOKIE: &str = "__Host-strongroom-sso";

pub fn routes() -> Routes {
    Routes::new()
        .route("/login/sso", Access::Public, post(start_from_form))
        .route(sso::CALLBACK_PATH, Access::Public, get(callback))
        .route("/login/sso/{tenant}", Access::Public, get(start_from_link))
        .route(
            "/settings/sso",
            Access::Allowed(Permission::SettingsRead),
            get(settings_show).post(settings_update),
        )
}

/// Where the provider sends people back: the configured public address, else the host
/// this request came to (the provider only accepts redirect URIs registered with it). Over
/// HTTP/2 the host is the URI's authority; over HTTP/1.1 the `Host` header.
fn redirect_uri(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let origin = match &state.app.config().server.public_url {
        Some(u) => crate::outbound::public_origin(u)?,
        None => {
            let host = match uri.authority() {
                Some(a) => a.as_str(),
                None => headers.get(header::HOST)?.to_str().ok()?,
            };
            let plain = !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !plain {
                return None;
            }
            format!("https://{host}")
        }
    };
    Some(format!("{origin}{}", sso::CALLBACK_PATH))
}

fn flow_cookie(value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

fn sso_refused(who: &str, e: &SsoError) -> Response {
    let (status, _) = super::error::status_for(e.kind());
    if e.kind() == ErrorKind::Internal {
        tracing::error!(code = e.code(), error = %e, "single sign-on failed");
    } else if matches!(e, SsoError::Unreachable(_)) {
        tracing::warn!(code = e.code(), error = %e, "identity provider unreachable");
    } else {
        tracing::info!(code = e.code(), error = %e, "single sign-on refused");
    }
    let message = if e.kind() == ErrorKind::Internal {
        format!(
            "Single sign-on failed on our side (error {}). Try again later.",
            e.code()
        )
    } else if matches!(e, SsoError::Unreachable(_)) {
        // The reason names hosts and addresses of the provider's network: the log has it,
        // the sign-in page (open to anyone) does not.
        format!(
            "The identity provider cannot be reached now (error {}). Try again later; if it \
             goes on, tell your administrator.",
            e.code()
        )
    } else {
        capitalise(&e.to_string())
    };
    let mut res = login_page(status, "", who, FieldError::new("who", message));
    if let Some(v) = flow_cookie("", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Template)]
#[template(path = "sso_leave.html")]
struct LeavePage {
    header: Option<Header>,
    location: String,
}

/// Where a sign-in was started: the sign-in page's form (with what was typed there), or a
/// tenant's own link.
enum From<'a> {
    Form(&'a str),
    Link,
}

async fn start(
    state: &AppState,
    (uri, headers): (&Uri, &HeaderMap),
    tenant: &TenantId,
    hint: Option<&Email>,
    from: From<'_>,
) -> Response {
    let who = match from {
        From::Form(who) => who,
        From::Link => "",
    };
    let Some(uri) = redirect_uri(state, uri, headers) else {
        return sso_refused(who, &SsoError::NotAvailable);
    };
    match state.sso.begin(&state.app, tenant, hint, uri).await {
        Ok(started) => {
            // From the sign-in form, a page rather than a redirect: the sign-in page's CSP
            // (`form-action 'self'`) holds for every redirect that follows a form post, and
            // the provider is another origin. Its own navigation is not a form's.
            let mut res = if matches!(from, From::Form(_)) {
                render(
                    StatusCode::OK,
                    &LeavePage {
                        header: None,
                        location: started.location,
                    },
                )
            } else {
                Redirect::to(&started.location).into_response()
            };
            match flow_cookie(&started.cookie, sso::FLOW_SECS) {
                Some(v) => {
                    res.headers_mut().append(header::SET_COOKIE, v);
                    res
                }
                None => super::error::WebError::internal("WEB-0002").into_response(),
            }
        }
        Err(e) => sso_refused(who, &e),
    }
}

/// The sign-in page's form: a work address (whose account says which tenant) or a tenant id.
async fn start_from_form(State(state): State<AppState>, req: Request) -> Response {
    let (uri, headers) = (req.uri().clone(), req.headers().clone());
    let at = (&uri, &headers);
    let form = match Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let who = form.field("who");
    let who = who.trim();
    if who.is_empty() {
        return login_page(
            StatusCode::BAD_REQUEST,
            "",
            "",
            FieldError::new(
                "who",
                "Enter your work e-mail address or your organisation id",
            ),
        );
    }
    if let Ok(tenant) = TenantId::parse(who) {
        return start(&state, at, &tenant, None, From::Form(who)).await;
    }
    let Ok(email) = Email::parse(who) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "",
            who,
            FieldError::new(
                "who",
                "Enter an e-mail address such as name@example.com, or an organisation id",
            ),
        );
    };
    // Only a lookup that reaches a provider tells anything: the others (no account, an
    // account of the platform or of a tenant without single sign-on) get one answer, and a
    // source that keeps getting it waits, as after failed sign-ins.
    let (throttle, settings) = (&state.auth.throttle, &state.auth.settings);
    if let Some(wait) = throttle.discovery_wait(form.ip, state.app.clock().now_us(), settings) {
        crate::metrics::inc(
            &crate::metrics::global().throttled,
            &[("reason", "sign_in")],
        );
        let mut res = sso_refused(
            who,
            &SsoError::Identity(crate::identity::IdentityError::Throttled(wait)),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return res;
    }
    let dir = state.app.directory().clone();
    let e2 = email.clone();
    let found = tokio::task::spawn_blocking(move || dir.find(&e2)).await;
    let res = match found {
        Ok(Ok(Some(listing))) => match listing.home {
            Home::Tenant(t) => start(&state, at, &t, Some(&email), From::Form(who)).await,
            Home::Platform => sso_refused(who, &SsoError::NotAvailable),
        },
        _ => sso_refused(who, &SsoError::NotAvailable),
    };
    if !res.status().is_success() {
        throttle.discovery_missed(form.ip, state.app.clock().now_us(), settings);
    }
    res
}

/// A tenant's own sign-in link, for people who have no account yet.
async fn start_from_link(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match TenantId::parse(&tenant) {
        Ok(t) => start(&state, (&uri, &headers), &t, None, From::Link).await,
        Err(_) => sso_refused("", &SsoError::NotAvailable),
    }
}

#[derive(Template)]
#[template(path = "sso_continue.html")]
struct ContinuePage {
    header: Option<Header>,
    next: &'static str,
}

async fn callback(State(state): State<AppState>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let back: Callback = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let cookie = super::auth::cookie(req.headers(), FLOW_COOKIE);
    let done = state
        .sso
        .finish(
            &state.app,
            &state.auth.settings,
            cookie.as_deref(),
            back,
            Client::new(ip, &agent),
        )
        .await;
    let outcome = match &done {
        Ok(_) => "success",
        Err(SsoError::Identity(crate::identity::IdentityError::AddressRefused)) => {
            "address_refused"
        }
        Err(SsoError::Identity(crate::identity::IdentityError::Throttled(_))) => "throttled",
        Err(SsoError::FlowLost) => "flow_lost",
        Err(SsoError::BadToken(_)) => "bad_token",
        Err(SsoError::Unreachable(_)) => "unreachable",
        Err(SsoError::NotAvailable) => "not_available",
        Err(
            SsoError::Provider(_)
            | SsoError::NoRole
            | SsoError::NoAccount(_)
            | SsoError::Unverified(_)
            | SsoError::Unvouched(_)
            | SsoError::NoEmail
            | SsoError::OwnerUnmapped(_)
            | SsoError::Disabled,
        ) => "refused",
        Err(_) => "error",
    };
    crate::metrics::inc(
        &crate::metrics::global().sign_ins,
        &[("method", "sso"), ("outcome", outcome)],
    );
    match done {
        Ok(s) => {
            // A page, not a redirect: the browser arrived here from the provider's site, so
            // a redirect would still be cross-site and the new `SameSite=Strict` session
            // cookie would not go with it. The page's own navigation is same-site.
            let mut res = render(
                StatusCode::OK,
                &ContinuePage {
                    header: None,
                    next: s.stage.page(),
                },
            );
            if let Some(v) = flow_cookie("", 0) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            with_session(
                res,
                &s.secret,
                &s.place,
                state.auth.settings.session_absolute_secs,
            )
        }
        Err(SsoError::Identity(crate::identity::IdentityError::AddressRefused)) => sso_refused(
            "",
            &SsoError::Provider(
                "signing in from this address is not allowed by your organisation's policy".into(),
            ),
        ),
        Err(e) => sso_refused("", &e),
    }
}

#[derive(Template)]
#[template(path = "settings_sso.html")]
struct SettingsPage {
    header: Option<Header>,
    s: Settings,
    role_map: String,
    default_role: String,
    redirect_uri: String,
    link: String,
    may_manage: bool,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
}

async fn page(
    state: &AppState,
    p: &Principal,
    (uri, headers): (&Uri, &HeaderMap),
    status: StatusCode,
    shown: Option<(Settings, String, Vec<FieldError>)>,
    notice: Option<&'static str>,
) -> Response {
    let (s, role_map, errors) = match shown {
        Some(x) => x,
        None => match in_realm(state, p, None, |ctx, _| sso::read_blocking(ctx)).await {
            Ok(s) => {
                let map = sso::role_map_text(&s.role_map);
                (s, map, Vec::new())
            }
            Err(e) => return error_page(state, Some(p), e).await,
        },
    };
    let callback = redirect_uri(state, uri, headers).unwrap_or_default();
    let origin = callback
        .strip_suffix(sso::CALLBACK_PATH)
        .unwrap_or_default()
        .to_string();
    let link = match &p.place {
        crate::identity::sessions::Place::Tenant(t) => format!("{origin}/login/sso/{t}"),
        crate::identity::sessions::Place::Platform => String::new(),
    };
    let page = SettingsPage {
        header: header_for(state, p, "/settings").await,
        default_role: s.default_role.clone().unwrap_or_default(),
        s,
        role_map,
        redirect_uri: callback,
        link,
        may_manage: p.permissions.contains(Permission::SettingsManage),
        errors,
        notice,
    };
    render(status, &page)
}

async fn settings_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = (super::ui::done(&req) == Some("saved"))
        .then_some("Single sign-on settings have been saved.");
    page(
        &state,
        &p,
        (req.uri(), req.headers()),
        StatusCode::OK,
        None,
        notice,
    )
    .await
}

async fn settings_update(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let (uri, headers) = (req.uri().clone(), req.headers().clone());
    let (ip, f) = match Posted::read(req).await {
        Ok(form) => (form.ip, form.fields),
        Err(r) => return r,
    };
    let map_raw = field(&f, "role_map");
    let default_role = field(&f, "default_role").trim().to_string();
    let secret = field(&f, "client_secret");
    let shown = Settings {
        enabled: field(&f, "enabled") == "on",
        issuer: field(&f, "issuer"),
        client_id: field(&f, "client_id"),
        scopes: field(&f, "scopes"),
        role_claim: field(&f, "role_claim"),
        role_map: Vec::new(),
        default_role: (!default_role.is_empty()).then_some(default_role),
        jit: field(&f, "jit") == "on",
        trust_email: field(&f, "trust_email") == "on",
        has_secret: false,
    };
    let result = match sso::parse_role_map(&map_raw) {
        Ok(map) => {
            let update = Update {
                settings: Settings {
                    role_map: map,
                    ..shown.clone()
                },
                client_secret: (!secret.is_empty()).then(|| SecretString::new(secret)),
            };
            let dir = state.app.directory().clone();
            in_realm(&state, &p, ip, move |ctx, _| {
                sso::update_blocking(ctx, &dir, update)
            })
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) if shown.enabled => {
            let issuer = shown.issuer.trim().trim_end_matches('/').to_string();
            let now = state.app.clock().now_us();
            match state.sso.reach(&issuer, now).await {
                Err(SsoError::Unreachable(reason)) => {
                    let warning = FieldError::new(
                        "issuer",
                        format!("Saved, but the provider cannot be reached: {reason}"),
                    );
                    match in_realm(&state, &p, None, |ctx, _| sso::read_blocking(ctx)).await {
                        Ok(saved) => {
                            let map = sso::role_map_text(&saved.role_map);
                            let shown = Some((saved, map, warning));
                            page(&state, &p, (&uri, &headers), StatusCode::OK, shown, None).await
                        }
                        Err(e) => error_page(&state, Some(&p), e).await,
                    }
                }
                _ => Redirect::to("/settings/sso?done=saved").into_response(),
            }
        }
        Ok(()) => Redirect::to("/settings/sso?done=saved").into_response(),
        Err(e) if e.kind() == ErrorKind::Invalid => {
            let key = match &e {
                SsoError::Invalid { key, .. } => *key,
                _ => "role_map",
            };
            let errors = FieldError::new(key, capitalise(&e.to_string()));
            page(
                &state,
                &p,
                (&uri, &headers),
                StatusCode::BAD_REQUEST,
                Some((shown, map_raw, errors)),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
