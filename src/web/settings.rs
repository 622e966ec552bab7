//! Tenant settings and policy: the second-factor rule, address lists, session timeouts.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::ui::{capitalise, error_page, field, header_for, in_realm, render, FieldError, Header};
use super::AppState;
use crate::identity::sessions::Place;
use crate::identity::Permission;
use crate::policy::ai::{AiPolicy, Retention};
use crate::policy::{self, Policy, PolicyError, TwoFactor};
use askama::Template;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/settings",
            Access::Allowed(Permission::SettingsRead),
            get(settings_show),
        )
        .route(
            "/settings",
            Access::Allowed(Permission::SettingsManage),
            post(settings_update),
        )
        .route(
            "/settings/assistant",
            Access::Allowed(Permission::SettingsRead),
            get(assistant_show),
        )
        .route(
            "/settings/assistant",
            Access::Allowed(Permission::SettingsManage),
            post(assistant_update),
        )
}

#[derive(Template)]
#[template(path = "settings_assistant.html")]
struct AssistantPage {
    header: Option<Header>,
    /// Every configured endpoint, and whether this tenant may use it.
    known: Vec<(String, bool)>,
    model: String,
    egress_allow: String,
    grounded_only: bool,
    gateway_context: bool,
    gateway_passthrough: bool,
    retention: &'static str,
    may_manage: bool,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
}

async fn assistant_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    shown: Option<(AiPolicy, Vec<FieldError>)>,
    notice: Option<&'static str>,
) -> Response {
    let (pol, errors) = match shown {
        Some(x) => x,
        None => {
            let read = in_realm(state, p, None, |ctx, _| {
                crate::policy::ai::read_blocking(ctx)
            })
            .await;
            match read {
                Ok(pol) => (pol, Vec::new()),
                Err(e) => return error_page(state, Some(p), e).await,
            }
        }
    };
    let page = AssistantPage {
        header: header_for(state, p, "/settings").await,
        known: state
            .models
            .names()
            .into_iter()
            .map(|n| {
                let on = pol.endpoints.contains(&n);
                (n, on)
            })
            .collect(),
        model: pol.model.clone(),
        egress_allow: pol.egress_allow.join("\n"),
        grounded_only: pol.grounded_only,
        gateway_context: pol.gateway_context,
        gateway_passthrough: pol.gateway_passthrough,
        retention: pol.retention.as_str(),
        may_manage: p.permissions.contains(Permission::SettingsManage),
        errors,
        notice,
    };
    render(status, &page)
}

async fn assistant_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = (super::ui::done(&req) == Some("saved"))
        .then_some("The assistant policy has been saved. It applies from the next question.");
    assistant_page(&state, &p, StatusCode::OK, None, notice).await
}

/// The error page for a principal who may not change the tenant's settings; `None` for one
/// who may. The form is not read first: a refused change costs no body.
async fn unless_manager(state: &AppState, p: &Principal) -> Option<Response> {
    if p.permissions.contains(Permission::SettingsManage) {
        return None;
    }
    let denied = PolicyError::Denied(crate::identity::Denied("settings.manage"));
    Some(error_page(state, Some(p), denied).await)
}

async fn assistant_update(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    if let Some(refused) = unless_manager(&state, &p).await {
        return refused;
    }
    let form = match super::ui::Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let endpoints: Vec<String> = form
        .fields
        .iter()
        .filter(|(k, _)| k == "endpoints")
        .map(|(_, v)| v.clone())
        .collect();
    let parsed = (|| -> Result<AiPolicy, PolicyError> {
        Ok(AiPolicy {
            model: form.field("model").trim().to_string(),
            endpoints: crate::policy::ai::parse_names("ai.endpoints", &endpoints.join(","))?,
            egress_allow: crate::policy::ai::parse_names(
                "ai.egress_allow",
                &form.field("egress_allow"),
            )?,
            grounded_only: form.field("grounded_only") == "on",
            gateway_context: form.field("gateway_context") == "on",
            gateway_passthrough: form.field("gateway_passthrough") == "on",
            retention: Retention::parse(&form.field("retention")).ok_or(PolicyError::Invalid {
                key: "ai.retention",
                message: "choose preview or full".into(),
            })?,
        })
    })();
    let known = state.models.names();
    let result = match parsed {
        Ok(new) => {
            in_realm(&state, &p, form.ip, move |ctx, _| {
                crate::policy::ai::update_blocking(ctx, &new, &known)
            })
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            // Other servers on this data keep the tenant's rules for calls otherwise.
            state.auth.announce();
            Redirect::to("/settings/assistant?done=saved").into_response()
        }
        Err(PolicyError::Invalid { key, message }) => {
            let field = match key {
                "ai.model" => "model",
                "ai.endpoints" => "endpoints",
                "ai.retention" => "retention",
                _ => "egress_allow",
            };
            let shown = AiPolicy {
                model: form.field("model"),
                endpoints,
                // As typed, so it can be corrected.
                egress_allow: form
                    .field("egress_allow")
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                grounded_only: form.field("grounded_only") == "on",
                gateway_context: form.field("gateway_context") == "on",
                gateway_passthrough: form.field("gateway_passthrough") == "on",
                retention: Retention::parse(&form.field("retention")).unwrap_or(Retention::Preview),
            };
            let errors = FieldError::new(field, capitalise(&format!("{key}: {message}")));
            assistant_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                Some((shown, errors)),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    header: Option<Header>,
    two_factor: &'static str,
    ip_allow: String,
    ip_deny: String,
    idle: String,
    absolute: String,
    may_manage: bool,
    errors: Vec<FieldError>,
    notice: Option<&'static str>,
}

fn lines(n: &[ipnet::IpNet]) -> String {
    n.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    shown: Option<(Policy, Vec<FieldError>, [String; 4])>,
    notice: Option<&'static str>,
) -> Response {
    let (pol, errors, raw) = match shown {
        Some(x) => x,
        None => match in_realm(state, p, None, |ctx, _| policy::read_blocking(ctx)).await {
            Ok(pol) => {
                let raw = [
                    lines(&pol.ip_allow),
                    lines(&pol.ip_deny),
                    pol.session_idle_secs
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    pol.session_absolute_secs
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                ];
                (pol, Vec::new(), raw)
            }
            Err(e) => return error_page(state, Some(p), e).await,
        },
    };
    let [ip_allow, ip_deny, idle, absolute] = raw;
    let page = SettingsPage {
        header: header_for(state, p, "/settings").await,
        two_factor: pol.two_factor.as_str(),
        ip_allow,
        ip_deny,
        idle,
        absolute,
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
    let notice = (super::ui::done(&req) == Some("saved")).then_some("The policy has been saved. Address lists apply from the next request; the second-factor rule at each person's next sign-in.");
    page(&state, &p, StatusCode::OK, None, notice).await
}

fn seconds(key: &'static str, raw: &str) -> Result<Option<u64>, PolicyError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<u64>()
        .map(Some)
        .map_err(|_| PolicyError::Invalid {
            key,
            message: "enter a whole number of seconds, or leave it empty".into(),
        })
}

async fn settings_update(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    if let Some(refused) = unless_manager(&state, &p).await {
        return refused;
    }
    let (ip, f) = match super::ui::Posted::read(req).await {
        Ok(form) => (form.ip, form.fields),
        Err(r) => return r,
    };
    let raw = [
        field(&f, "ip_allow"),
        field(&f, "ip_deny"),
        field(&f, "session_idle_secs"),
        field(&f, "session_absolute_secs"),
    ];
    let parsed = (|| -> Result<Policy, PolicyError> {
        let two_factor =
            TwoFactor::parse(&field(&f, "two_factor")).ok_or(PolicyError::Invalid {
                key: "two_factor",
                message: "choose off, admins or everyone".into(),
            })?;
        Ok(Policy {
            two_factor,
            ip_allow: policy::parse_nets("ip_allow", &raw[0])?,
            ip_deny: policy::parse_nets("ip_deny", &raw[1])?,
            session_idle_secs: seconds("session_idle_secs", &raw[2])?,
            session_absolute_secs: seconds("session_absolute_secs", &raw[3])?,
        })
    })();
    let result = match parsed {
        Ok(new) => {
            in_realm(&state, &p, ip, move |ctx, _| {
                policy::update_blocking(ctx, &new)
            })
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            if let Place::Tenant(t) = &p.place {
                state.auth.forget_policy(t);
            }
            Redirect::to("/settings?done=saved").into_response()
        }
        Err(PolicyError::Invalid { key, message }) => {
            let shown = Policy {
                two_factor: TwoFactor::parse(&field(&f, "two_factor")).unwrap_or(TwoFactor::Off),
                ..Policy::default()
            };
            let errors = FieldError::new(
                key,
                capitalise(&format!("{}: {message}", key.replace('_', " "))),
            );
            page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                Some((shown, errors, raw)),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
