//! Users & roles (a tenant's) or platform accounts (the platform's): one area, the caller's
//! realm. Thin handlers: parse, call one identity function, render.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::ui::{
    error_page, field, header_for, in_realm, render, when, FieldError, Header, SecretPage,
};
use super::AppState;
use crate::identity::accounts::{self, Account, NewAccount};
use crate::identity::roles::{self, Role};
use crate::identity::sessions::{self, SessionInfo};
use crate::identity::{IdentityError, Permission, Permissions, Realm};
use crate::ids::UserId;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    // Each route declares the weakest permission that may reach it; the identity function
    // it calls checks the exact one for the realm (users.* or platform.users.*).
    Routes::new()
        .route(
            "/users",
            Access::SignedIn,
            get(users_list).post(user_create),
        )
        .route("/users/{id}", Access::SignedIn, get(user_show))
        .route("/users/{id}/role", Access::SignedIn, post(user_role))
        .route("/users/{id}/disable", Access::SignedIn, post(user_disable))
        .route("/users/{id}/enable", Access::SignedIn, post(user_enable))
        .route(
            "/users/{id}/reset-password",
            Access::SignedIn,
            post(user_reset_password),
        )
        .route(
            "/users/{id}/end-sessions",
            Access::SignedIn,
            post(user_end_sessions),
        )
        .route(
            "/roles",
            Access::Allowed(Permission::RolesManage),
            post(role_create),
        )
        .route(
            "/roles/{name}/delete",
            Access::Allowed(Permission::RolesManage),
            post(role_delete),
        )
}

fn manage(p: &Principal) -> bool {
    p.permissions.contains(match p.place.realm() {
        Realm::Platform => Permission::PlatformUsersManage,
        Realm::Tenant => Permission::UsersManage,
    })
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub state: &'static str,
    pub created: String,
}

fn row(a: &Account) -> Row {
    Row {
        id: a.id.to_string(),
        name: a.name.clone(),
        email: a.email.to_string(),
        role: a.role.clone(),
        state: if a.disabled {
            "Disabled"
        } else if a.must_change_password {
            "Awaiting first sign-in"
        } else {
            "Active"
        },
        created: when(a.created_us),
    }
}

pub struct RoleRow {
    pub name: String,
    pub built_in: bool,
    pub permissions: String,
    pub holders: i64,
}

#[derive(Template)]
#[template(path = "identity/users.html")]
struct UsersPage {
    header: Option<Header>,
    platform: bool,
    rows: Vec<Row>,
    roles: Vec<RoleRow>,
    role_names: Vec<String>,
    may_manage: bool,
    may_roles: bool,
    permission_names: Vec<&'static str>,
    errors: Vec<FieldError>,
    email: String,
    notice: Option<String>,
}

async fn users_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
    email: String,
    notice: Option<String>,
) -> Response {
    let tenant = p.place.realm() == Realm::Tenant;
    let listed = in_realm(state, p, None, move |ctx, _| -> Result<_, IdentityError> {
        let accounts = accounts::list_blocking(ctx)?;
        let roles = if tenant {
            roles::list_blocking(ctx)?
        } else {
            Vec::new()
        };
        Ok((accounts, roles))
    })
    .await;
    let (list, role_list) = match listed {
        Ok(x) => x,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let mut role_names: Vec<String> = crate::identity::permission::BUILT_IN
        .iter()
        .map(|s| s.to_string())
        .collect();
    role_names.extend(
        role_list
            .iter()
            .filter(|r: &&Role| !r.built_in)
            .map(|r| r.name.clone()),
    );
    let page = UsersPage {
        header: header_for(state, p, "/users").await,
        platform: !tenant,
        rows: list.iter().map(row).collect(),
        roles: role_list
            .iter()
            .map(|r| RoleRow {
                name: r.name.clone(),
                built_in: r.built_in,
                permissions: r.permissions.names().join(", "),
                holders: r.holders,
            })
            .collect(),
        role_names,
        may_manage: manage(p),
        may_roles: tenant && p.permissions.contains(Permission::RolesManage),
        permission_names: crate::identity::permission::everything(Realm::Tenant).names(),
        errors,
        email,
        notice,
    };
    render(status, &page)
}

async fn users_list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = req.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "done")
            .map(|(_, v)| match v.as_str() {
                "role-created" => "The role has been created.".to_string(),
                "role-deleted" => "The role has been removed.".to_string(),
                _ => "Done.".to_string(),
            })
    });
    users_page(
        &state,
        &p,
        StatusCode::OK,
        Vec::new(),
        String::new(),
        notice,
    )
    .await
}

async fn body_of(req: Request) -> Result<super::ui::Posted, Response> {
    super::ui::Posted::read(req).await
}

async fn user_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let (ip, fields) = match body_of(req).await {
        Ok(f) => (f.ip, f.fields),
        Err(r) => return r,
    };
    let email = field(&fields, "email");
    let name = field(&fields, "name");
    let input = NewAccount {
        email: email.clone(),
        name: (!name.trim().is_empty()).then_some(name),
        role: field(&fields, "role"),
    };
    let done = in_realm(&state, &p, ip, move |ctx, app| {
        accounts::create_blocking(ctx, app.directory(), &input)
    })
    .await;
    match done {
        Ok((account, one_time)) => {
            let page = SecretPage {
                header: header_for(&state, &p, "/users").await,
                title: "Account created".into(),
                intro: format!(
                    "{} can now sign in as {} with this one-time password. It is shown once: hand it over now. It must be changed at first sign-in.",
                    account.name, account.email
                ),
                secret: one_time.expose().to_string(),
                back: format!("/users/{}", account.id),
                back_label: "Go to the account",
            };
            render(StatusCode::CREATED, &page)
        }
        Err(e @ (IdentityError::BadEmail(_) | IdentityError::EmailInUse(_))) => {
            users_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("email", super::ui::capitalise(&e.to_string())),
                email,
                None,
            )
            .await
        }
        Err(e @ (IdentityError::UnknownRole(_) | IdentityError::BadName(_))) => {
            let f = if matches!(e, IdentityError::UnknownRole(_)) {
                "role"
            } else {
                "name"
            };
            users_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new(f, super::ui::capitalise(&e.to_string())),
                email,
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

#[derive(Template)]
#[template(path = "identity/user.html")]
struct UserPage {
    header: Option<Header>,
    account: Row,
    disabled: bool,
    is_self: bool,
    may_manage: bool,
    role_names: Vec<String>,
    sessions: Vec<SessionRow>,
    notice: Option<&'static str>,
}

pub struct SessionRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub created: String,
    pub last_seen: String,
    pub open: bool,
    pub current: bool,
}

pub fn session_rows(
    list: &[SessionInfo],
    now: i64,
    current: Option<&crate::ids::SessionId>,
) -> Vec<SessionRow> {
    list.iter()
        .map(|s| SessionRow {
            id: s.id.to_string(),
            device: s.device.clone(),
            ip: s.ip.clone().unwrap_or_else(|| "-".into()),
            created: when(s.created_us),
            last_seen: super::ui::when_ago(s.last_seen_us, now),
            open: s.ended_us.is_none() && s.expires_us > now,
            current: current == Some(&s.id),
        })
        .collect()
}

/// The account named in the path, inside the caller's realm only: an id from another
/// tenant is simply not found, with the same answer as an id that never existed.
fn parse_id(raw: &str) -> Result<UserId, IdentityError> {
    UserId::parse(raw).map_err(|_| IdentityError::NotFound("no such account".into()))
}

async fn user_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let notice = super::ui::done(&req).map(|done| match done {
        "role" => "The role has been changed and the account's sessions ended.",
        "disabled" => "The account has been disabled and its sessions ended.",
        "enabled" => "The account has been enabled.",
        "sessions" => "The account's sessions have been ended.",
        "2fa-removed" => "The account's second factor has been removed.",
        _ => "Done.",
    });
    let may = manage(&p);
    let is_self = p.user_id() == Some(&id);
    let tenant = p.place.realm() == Realm::Tenant;
    let now = state.app.clock().now_us();
    let uid = id.clone();
    let found = in_realm(
        &state,
        &p,
        None,
        move |ctx, _| -> Result<_, IdentityError> {
            let account = accounts::get_blocking(ctx, uid.as_str()).map_err(|e| match e {
                IdentityError::NotFound(_) => IdentityError::NotFound("no such account".into()),
                other => other,
            })?;
            let sessions = if may || is_self {
                sessions::list_blocking(ctx, &uid)?
            } else {
                Vec::new()
            };
            let roles = if tenant && may {
                roles::list_blocking(ctx)?
            } else {
                Vec::new()
            };
            Ok((account, sessions, roles))
        },
    )
    .await;
    let (account, list, role_list) = match found {
        Ok(x) => x,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let mut role_names: Vec<String> = crate::identity::permission::BUILT_IN
        .iter()
        .map(|s| s.to_string())
        .collect();
    role_names.extend(
        role_list
            .into_iter()
            .filter(|r| !r.built_in)
            .map(|r| r.name),
    );
    let current = match &p.who {
        super::auth::Who::User { session, .. } => Some(session.clone()),
        _ => None,
    };
    let page = UserPage {
        header: header_for(&state, &p, "/users").await,
        disabled: account.disabled,
        account: row(&account),
        is_self,
        may_manage: may,
        role_names,
        sessions: session_rows(&list, now, current.as_ref()),
        notice,
    };
    render(StatusCode::OK, &page)
}

/// Runs an edit of one account, then drops its cached sessions and returns to its page.
async fn edit(
    state: AppState,
    p: std::sync::Arc<Principal>,
    raw: String,
    req: Request,
    done: &'static str,
    f: impl FnOnce(&crate::door::RealmCtx, &UserId, &[(String, String)]) -> Result<(), IdentityError>
        + Send
        + 'static,
) -> Response {
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let (ip, fields) = match body_of(req).await {
        Ok(f) => (f.ip, f.fields),
        Err(r) => return r,
    };
    let uid = id.clone();
    let result = in_realm(&state, &p, ip, move |ctx, _| f(ctx, &uid, &fields)).await;
    state.auth.forget_user(&p.place, &id);
    match result {
        Ok(()) => Redirect::to(&format!("/users/{id}?done={done}")).into_response(),
        Err(IdentityError::NotFound(_)) => {
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

async fn user_role(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    edit(state, p, id, req, "role", |ctx, id, fields| {
        accounts::set_role_blocking(ctx, id.as_str(), &field(fields, "role")).map(|_| ())
    })
    .await
}

async fn user_disable(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    edit(state, p, id, req, "disabled", |ctx, id, _| {
        accounts::set_disabled_blocking(ctx, id.as_str(), true).map(|_| ())
    })
    .await
}

async fn user_enable(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    edit(state, p, id, req, "enabled", |ctx, id, _| {
        accounts::set_disabled_blocking(ctx, id.as_str(), false).map(|_| ())
    })
    .await
}

async fn user_end_sessions(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    edit(state, p, id, req, "sessions", |ctx, id, _| {
        sessions::end_all_blocking(ctx, id).map(|_| ())
    })
    .await
}

async fn user_reset_password(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let ip = client_ip(req.extensions());
    let uid = id.clone();
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        accounts::reset_password_blocking(ctx, uid.as_str())
    })
    .await;
    state.auth.forget_user(&p.place, &id);
    match done {
        Ok((account, one_time)) => {
            let page = SecretPage {
                header: header_for(&state, &p, "/users").await,
                title: "Password reset".into(),
                intro: format!(
                    "{}'s sessions have ended. Their new one-time password is shown once: hand it over now. It must be changed at first sign-in.",
                    account.email
                ),
                secret: one_time.expose().to_string(),
                back: format!("/users/{}", account.id),
                back_label: "Back to the account",
            };
            render(StatusCode::OK, &page)
        }
        Err(IdentityError::NotFound(_)) => {
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

async fn role_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let (ip, fields) = match body_of(req).await {
        Ok(f) => (f.ip, f.fields),
        Err(r) => return r,
    };
    let name = field(&fields, "role_name");
    let chosen = fields
        .iter()
        .filter(|(k, _)| k == "permission")
        .map(|(_, v)| v.as_str());
    let perms = match Permissions::parse_names(chosen) {
        Ok(p) => p,
        Err(bad) => {
            return users_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("role_name", format!("Unknown permission {bad:?}")),
                String::new(),
                None,
            )
            .await
        }
    };
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        roles::create_blocking(ctx, name.trim(), perms)
    })
    .await;
    match done {
        Ok(_) => Redirect::to("/users?done=role-created").into_response(),
        Err(e @ (IdentityError::BadName(_) | IdentityError::AlreadyInState(..))) => {
            users_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("role_name", super::ui::capitalise(&e.to_string())),
                String::new(),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn role_delete(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        roles::delete_blocking(ctx, &name)
    })
    .await;
    state.auth.forget_place(&p.place);
    match done {
        Ok(()) => Redirect::to("/users?done=role-deleted").into_response(),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
