//! The platform's tenants: list, create, suspend, resume, and delete behind a typed
//! confirmation. Platform accounts see tenant metadata here, never tenant data.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::ui::{capitalise, error_page, field, header_for, render, when, FieldError, Header};
use super::AppState;
use crate::identity::sessions::Place;
use crate::identity::Permission;
use crate::ids::TenantId;
use crate::tenants::{self, TenantError, TenantStatus};
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/tenants",
            Access::Allowed(Permission::TenantsRead),
            get(tenants_list),
        )
        .route(
            "/tenants",
            Access::Allowed(Permission::TenantsManage),
            post(tenant_create),
        )
        .route(
            "/tenants/{id}/suspend",
            Access::Allowed(Permission::TenantsManage),
            post(tenant_suspend),
        )
        .route(
            "/tenants/{id}/resume",
            Access::Allowed(Permission::TenantsManage),
            post(tenant_resume),
        )
        .route(
            "/tenants/{id}/delete",
            Access::Allowed(Permission::TenantsManage),
            get(tenant_delete_form).post(tenant_delete),
        )
}

pub struct Row {
    pub id: String,
    pub short: String,
    pub name: String,
    pub region: String,
    pub status: &'static str,
    pub active: bool,
    pub created: String,
}

#[derive(Template)]
#[template(path = "tenants/list.html")]
struct ListPage {
    header: Option<Header>,
    rows: Vec<Row>,
    may_manage: bool,
    errors: Vec<FieldError>,
    notice: Option<String>,
}

/// Tenant work on a blocking thread, as the principal, on the platform.
async fn run<T: Send + 'static>(
    state: &AppState,
    p: &Principal,
    f: impl FnOnce(&crate::app::App, &crate::identity::Caller) -> Result<T, TenantError>
        + Send
        + 'static,
) -> Result<T, TenantError> {
    if p.place != Place::Platform {
        return Err(TenantError::Denied(crate::identity::Denied("tenants.read")));
    }
    let (app, caller) = (state.app.clone(), p.caller());
    tokio::task::spawn_blocking(move || f(&app, &caller))
        .await
        .map_err(|_| {
            TenantError::Store(crate::store::StoreError::JobPanicked {
                what: "tenants".into(),
            })
        })?
}

async fn list_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
    notice: Option<String>,
) -> Response {
    let list = match run(state, p, tenants::by::list).await {
        Ok(l) => l,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let rows = list
        .iter()
        .map(|t| Row {
            id: t.id.to_string(),
            short: t.id.as_str()[..8].to_string(),
            name: t.name.clone(),
            region: t.region.clone().unwrap_or_else(|| "-".into()),
            status: match t.status {
                TenantStatus::Active => "Active",
                TenantStatus::Suspended => "Suspended",
                TenantStatus::Deleted => "Deleted",
            },
            active: t.status == TenantStatus::Active,
            created: when(t.created_us),
        })
        .collect();
    let page = ListPage {
        header: header_for(state, p, "/tenants").await,
        rows,
        may_manage: p.permissions.contains(Permission::TenantsManage),
        errors,
        notice,
    };
    render(status, &page)
}

async fn tenants_list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = super::ui::done(&req).map(|d| {
        match d {
            "created" => "The tenant has been created, with its own key and file.",
            "suspended" => "The tenant has been suspended: its users and tokens are refused.",
            "resumed" => "The tenant has been resumed.",
            "deleted" => {
                "The tenant has been deleted: its key is destroyed and its data unreadable."
            }
            _ => "Done.",
        }
        .to_string()
    });
    list_page(&state, &p, StatusCode::OK, Vec::new(), notice).await
}

async fn form(req: Request) -> Vec<(String, String)> {
    super::ui::Posted::read(req)
        .await
        .map(|f| f.fields)
        .unwrap_or_default()
}

async fn tenant_create(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let fields = form(req).await;
    let (name, region) = (field(&fields, "name"), field(&fields, "region"));
    let region = (!region.trim().is_empty()).then(|| region.trim().to_string());
    match run(&state, &p, move |app, c| {
        tenants::by::create(app, c, &name, region.as_deref())
    })
    .await
    {
        Ok(_) => Redirect::to("/tenants?done=created").into_response(),
        Err(e @ (TenantError::InvalidName(_) | TenantError::NameTaken(_))) => {
            list_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("name", capitalise(&e.to_string())),
                None,
            )
            .await
        }
        Err(e @ TenantError::InvalidRegion(_)) => {
            list_page(
                &state,
                &p,
                StatusCode::BAD_REQUEST,
                FieldError::new("region", capitalise(&e.to_string())),
                None,
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn set_active(
    state: AppState,
    p: std::sync::Arc<Principal>,
    raw: String,
    active: bool,
) -> Response {
    let id = match TenantId::parse(&raw) {
        Ok(id) => id,
        Err(_) => {
            return error_page(
                &state,
                Some(&p),
                TenantError::NotFound("no such tenant".into()),
            )
            .await
        }
    };
    let tid = id.clone();
    let done = run(&state, &p, move |app, c| {
        tenants::by::set_active(app, c, &tid, active)
    })
    .await;
    // Suspended: every cached session and token of the tenant goes now.
    state.auth.forget_place(&Place::Tenant(id));
    match done {
        Ok(_) => Redirect::to(if active {
            "/tenants?done=resumed"
        } else {
            "/tenants?done=suspended"
        })
        .into_response(),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

async fn tenant_suspend(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
) -> Response {
    set_active(state, p, id, false).await
}

async fn tenant_resume(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
) -> Response {
    set_active(state, p, id, true).await
}

#[derive(Template)]
#[template(path = "tenants/delete.html")]
struct DeletePage {
    header: Option<Header>,
    id: String,
    name: String,
    errors: Vec<FieldError>,
}

async fn delete_page(
    state: &AppState,
    p: &Principal,
    raw: &str,
    status: StatusCode,
    errors: Vec<FieldError>,
) -> Response {
    let Ok(id) = TenantId::parse(raw) else {
        return error_page(
            state,
            Some(p),
            TenantError::NotFound("no such tenant".into()),
        )
        .await;
    };
    let found = run(state, p, move |app, c| {
        c.require(Permission::TenantsManage)?;
        tenants::get(app, &id)
    })
    .await;
    match found {
        Ok(t) => {
            let page = DeletePage {
                header: header_for(state, p, "/tenants").await,
                id: t.id.to_string(),
                name: t.name,
                errors,
            };
            render(status, &page)
        }
        Err(e) => error_page(state, Some(p), e).await,
    }
}

async fn tenant_delete_form(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
) -> Response {
    delete_page(&state, &p, &id, StatusCode::OK, Vec::new()).await
}

async fn tenant_delete(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let fields = form(req).await;
    let typed = field(&fields, "confirm");
    let Ok(id) = TenantId::parse(&raw) else {
        return error_page(
            &state,
            Some(&p),
            TenantError::NotFound("no such tenant".into()),
        )
        .await;
    };
    let tid = id.clone();
    let done = run(&state, &p, move |app, c| {
        let t = tenants::get(app, &tid)?;
        if typed.trim() != t.name {
            return Ok(false);
        }
        tenants::by::delete(app, c, &tid).map(|()| true)
    })
    .await;
    state.auth.forget_place(&Place::Tenant(id));
    match done {
        Ok(true) => Redirect::to("/tenants?done=deleted").into_response(),
        Ok(false) => {
            delete_page(
                &state,
                &p,
                &raw,
                StatusCode::BAD_REQUEST,
                FieldError::new("confirm", "Type the tenant's name exactly to delete it"),
            )
            .await
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}
