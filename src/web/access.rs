//! Every route declares who may reach it, where it is registered: [`Routes::route`] takes an
//! [`Access`] with each path, and nothing else in `web` registers a route. The guard that
//! enforces it authenticates the request (`web::auth`), checks the CSRF token of a
//! cookie-authenticated request that is not a GET, checks the declared access, and hands
//! the handler a [`Principal`].

use super::auth::{Principal, Refused, Via};
use super::error::WebError;
use super::AppState;
use crate::audit::Outcome;
use crate::door::{self, Audit};
use crate::identity::sessions::{Place, Stage};
use crate::identity::Permission;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Who may reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (sign-in, health, status).
    Public,
    /// Any signed-in session, whatever its stage (sign-out).
    AnyStage,
    /// A signed-in session at one of these stages (the first-password change, the
    /// second-factor check, enrolment).
    Stages(&'static [Stage]),
    /// A signed-in caller whose session has reached its full stage, or a token.
    SignedIn,
    /// A signed-in caller with this permission.
    Allowed(Permission),
}

impl Access {
    pub fn describe(self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::AnyStage => "any-stage".into(),
            Access::Stages(s) => s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("|"),
            Access::SignedIn => "signed-in".into(),
            Access::Allowed(p) => p.name().into(),
        }
    }
}

/// Largest request body of an upload route (documents): a few files at their largest.
pub const UPLOAD_BODY_BYTES: usize = 4 * crate::knowledge::library::MAX_BYTES + 64 * 1024;

/// An area's routes, each with its declared access and whether it takes uploads (a larger
/// body limit than every other route).
#[derive(Default)]
pub struct Routes {
    entries: Vec<(&'static str, Access, MethodRouter<AppState>, bool)>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(
        mut self,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.entries.push((path, access, handler, false));
        self
    }

    /// A route that takes uploads: its body may be up to [`UPLOAD_BODY_BYTES`].
    pub fn upload(
        mut self,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.entries.push((path, access, handler, true));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.entries.extend(other.entries);
        self
    }

    /// Every path with its access, for the test that walks them.
    pub fn table(&self) -> Vec<(&'static str, Access)> {
        self.entries.iter().map(|(p, a, _, _)| (*p, *a)).collect()
    }

    /// The router, each route behind its guard and its body limit.
    pub fn into_router(self, state: &AppState) -> Router<AppState> {
        let mut router = Router::new();
        let normal = state.app.config().server.max_body_bytes;
        for (path, access, handler, upload) in self.entries {
            let limit = if upload { UPLOAD_BODY_BYTES } else { normal };
            let guarded = handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                guard,
            ));
            router = router.merge(
                Router::new()
                    .route(path, guarded)
                    .layer(axum::extract::DefaultBodyLimit::max(limit))
                    .layer(tower_http::limit::RequestBodyLimitLayer::new(limit)),
            );
        }
        router
    }
}

/// The caller's address, as the TLS accept loop recorded it.
pub fn client_ip(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/v1/")
}

fn unauthenticated(path: &str) -> Response {
    if is_api(path) {
        let mut res = WebError {
            status: StatusCode::UNAUTHORIZED,
            code: "AUTH-0001",
            message: "missing or invalid credentials; send Authorization: Bearer <token>",
        }
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"strongroom\""),
        );
        res
    } else {
        Redirect::to("/login").into_response()
    }
}

/// A session that must finish signing in first: pages go to its step, the API says so.
fn elsewhere(path: &str, stage: Stage) -> Response {
    if is_api(path) {
        let message = match stage {
            Stage::ChangePassword => "change your one-time password first",
            Stage::Totp => "give your second factor first",
            Stage::Enrol => "set up a second factor first",
            Stage::Full => "not allowed",
        };
        forbidden("AUTH-0004", message)
    } else {
        Redirect::to(stage.page()).into_response()
    }
}

fn forbidden(code: &'static str, message: &'static str) -> Response {
    WebError {
        status: StatusCode::FORBIDDEN,
        code,
        message,
    }
    .into_response()
}

/// A 403 for a refused request: the API's error body, or the page a person reads.
async fn refused(
    state: &AppState,
    p: Option<&Principal>,
    path: &str,
    code: &'static str,
    message: &'static str,
) -> Response {
    if is_api(path) {
        forbidden(code, message)
    } else {
        super::ui::refusal_page(state, p, StatusCode::FORBIDDEN, message, code).await
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn guard(
    axum::extract::State((state, access)): axum::extract::State<(AppState, Access)>,
    req: Request,
    next: Next,
) -> Response {
    // The gateway speaks the vendors' formats and takes tenant API tokens only.
    if req.uri().path().starts_with("/v1/") {
        return super::gateway::guard(state, access, req, next).await;
    }
    let path = req.uri().path().to_string();
    let ip = client_ip(req.extensions());
    let auth = state.auth.clone();
    let found = auth.authenticate(&state.app, req.headers(), ip).await;
    let (principal, via) = match found {
        Ok(Some((p, via))) => (Some(p), Some(via)),
        Ok(None) => (None, None),
        Err(Refused::Invalid) if access == Access::Public => (None, None),
        Err(Refused::Invalid) => return unauthenticated(&path),
        Err(Refused::Tenant(e)) if access == Access::Public => {
            tracing::info!(
                code = crate::error::DomainError::code(&e),
                "credentials of an unusable tenant on a public route"
            );
            (None, None)
        }
        Err(Refused::Tenant(e)) => return WebError::from(e).into_response(),
        Err(Refused::Internal(e)) => return WebError::from(e).into_response(),
    };
    // A tenant's address lists apply to every request of its users and tokens.
    if let Some(p) = &principal {
        if let Place::Tenant(t) = &p.place {
            match auth.policy(&state.app, t).await {
                Ok(policy) if policy.admits(ip) => {}
                Ok(_) => {
                    record_refusal(&state, p, "auth.address_refused", &path, ip).await;
                    let message =
                        "requests from this address are not allowed by your organisation's policy";
                    return refused(&state, None, &path, "AUTH-0006", message).await;
                }
                Err(Refused::Tenant(e)) => return WebError::from(e).into_response(),
                Err(Refused::Internal(e)) => return WebError::from(e).into_response(),
                Err(Refused::Invalid) => return unauthenticated(&path),
            }
        }
    }
    match access {
        Access::Public => {}
        Access::AnyStage => {
            if principal.as_ref().is_none_or(|p| p.user_id().is_none()) {
                return unauthenticated(&path);
            }
        }
        Access::Stages(stages) => {
            let Some(p) = &principal else {
                return unauthenticated(&path);
            };
            let Some(stage) = p.stage() else {
                return unauthenticated(&path);
            };
            if !stages.contains(&stage) {
                return elsewhere(&path, stage);
            }
        }
        Access::SignedIn | Access::Allowed(_) => {
            let Some(p) = &principal else {
                return unauthenticated(&path);
            };
            if let Some(stage) = p.stage().filter(|s| *s != Stage::Full) {
                return elsewhere(&path, stage);
            }
            if let Access::Allowed(perm) = access {
                if !p.permissions.contains(perm) {
                    if !is_safe(req.method()) {
                        record_refusal(&state, p, "auth.denied", &path, ip).await;
                    }
                    let message = "not allowed for your role";
                    return refused(&state, Some(p), &path, "AUTH-0005", message).await;
                }
            }
        }
    }
    // Checked once the caller is known to be allowed here: a session that may not
    // change this (or has not finished signing in) costs no read of its body.
    let mut req = req;
    if let (Some(p), Some(Via::Cookie)) = (&principal, via) {
        if !is_safe(req.method()) {
            let (ok, rebuilt) = csrf_holds(p, req).await;
            req = match rebuilt {
                Some(r) => r,
                None => return forbidden("AUTH-0003", "request too large"),
            };
            if !ok {
                record_refusal(&state, p, "auth.csrf_refused", &path, ip).await;
                let message =
                    "the form's security token is missing or stale; reload the page and try again";
                return refused(&state, Some(p), &path, "AUTH-0002", message).await;
            }
        }
    }
    if let Some(p) = principal {
        // Every request under a vendor's grant is on the tenant's record, or it does not run.
        if let Some(grant) = p.grant.clone() {
            let method = req.method().to_string();
            if let Err(e) = record_grant_use(&state, &p, &grant, &method, &path, ip).await {
                tracing::error!(error = %e, "cannot journal a request under a grant; refused");
                return WebError::from(e).into_response();
            }
        }
        let unsafe_method = !is_safe(req.method());
        req.extensions_mut().insert(p.clone());
        let res = next.run(req).await;
        // A change the route let through but the domain refused (a role's exact
        // permission, an owner's account, another realm's rule) is on the record like
        // the guard's own refusals.
        if unsafe_method && res.status() == StatusCode::FORBIDDEN {
            record_refusal(&state, &p, "auth.denied", &path, ip).await;
        }
        return res;
    }
    next.run(req).await
}

async fn record_grant_use(
    state: &AppState,
    p: &Principal,
    grant: &crate::ids::GrantId,
    method: &str,
    path: &str,
    ip: Option<IpAddr>,
) -> Result<(), crate::identity::IdentityError> {
    let Place::Tenant(t) = &p.place else {
        return Ok(());
    };
    let ctx = door::open(&state.app, t, p.caller(), ip).await?;
    let (grant, params) = (
        grant.to_string(),
        serde_json::json!({ "method": method, "path": path.chars().take(200).collect::<String>() }),
    );
    ctx.change(move |_tx| {
        Ok::<_, crate::identity::IdentityError>((
            (),
            Audit::new("grant.request", &grant).params(params.clone()),
        ))
    })
    .await
}

/// Whether the request carries the session's CSRF token, in the `x-csrf-token` header or
/// as the `csrf` field of a URL-encoded form (whose body is read and put back).
async fn csrf_holds(p: &Principal, req: Request) -> (bool, Option<Request>) {
    let super::auth::Who::User { csrf, .. } = &p.who else {
        return (true, Some(req));
    };
    let want = csrf.as_bytes();
    let eq = |got: &[u8]| bool::from(subtle::ConstantTimeEq::ct_eq(got, want));
    if let Some(h) = req.headers().get("x-csrf-token") {
        return (eq(h.as_bytes()), Some(req));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if content_type.starts_with("multipart/form-data") {
        return multipart_csrf_holds(req, &content_type, eq).await;
    }
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    if !is_form {
        return (false, Some(req));
    }
    let (parts, body) = req.into_parts();
    // The body limit of the router applies; past it the request is refused anyway.
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return (false, None);
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
    let ok = token.is_some_and(|t| eq(t.as_bytes()));
    (
        ok,
        Some(Request::from_parts(parts, axum::body::Body::from(bytes))),
    )
}

/// The `csrf` field of a `multipart/form-data` body (an upload form), read from a copy of
/// the body, which is put back for the handler. The route's body limit applies.
async fn multipart_csrf_holds(
    req: Request,
    content_type: &str,
    eq: impl Fn(&[u8]) -> bool,
) -> (bool, Option<Request>) {
    use axum::extract::FromRequest;
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, UPLOAD_BODY_BYTES).await else {
        return (false, None);
    };
    let probe = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(bytes.clone()));
    let mut token = None;
    if let Ok(probe) = probe {
        if let Ok(mut form) = axum::extract::Multipart::from_request(probe, &()).await {
            while let Ok(Some(field)) = form.next_field().await {
                if field.name() == Some("csrf") {
                    token = field.text().await.ok();
                    break;
                }
            }
        }
    }
    let ok = token.is_some_and(|t| eq(t.as_bytes()));
    (
        ok,
        Some(Request::from_parts(parts, axum::body::Body::from(bytes))),
    )
}

/// Journals a refused request in the caller's realm: a missing CSRF token (a forged form),
/// or a change the caller's role does not allow.
pub(crate) async fn record_refusal(
    state: &AppState,
    p: &Principal,
    action: &'static str,
    path: &str,
    ip: Option<IpAddr>,
) {
    let caller = p.caller();
    let target = path.chars().take(200).collect::<String>();
    let job = move |_tx: &mut crate::store::WriteTx<'_>| {
        Ok::<_, crate::identity::IdentityError>((
            (),
            Audit::new(action, &target).outcome(Outcome::Denied),
        ))
    };
    let done = match &p.place {
        Place::Platform => {
            let ctx = door::platform(&state.app, caller, ip);
            door::Door::change(&ctx, job).await
        }
        Place::Tenant(t) => match door::open(&state.app, t, caller, ip).await {
            Ok(ctx) => ctx.change(job).await,
            Err(e) => Err(e.into()),
        },
    };
    if let Err(e) = done {
        tracing::error!(error = %e, "cannot journal a refused request");
    }
}

/// The authenticated caller, as the guard found it.
impl<S: Send + Sync> FromRequestParts<S> for PrincipalOf {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(PrincipalOf)
            .ok_or_else(|| unauthenticated(parts.uri.path()))
    }
}

/// Extractor for the authenticated caller.
pub struct PrincipalOf(pub Arc<Principal>);
