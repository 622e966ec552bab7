//! Knowledge over HTTP: `/api/v1/documents` (list, upload, show with versions, remove),
//! `/api/v1/passages/{citation}` and `/api/v1/search`.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::error::api_error;
use super::ui::in_realm;
use super::AppState;
use crate::identity::Permission;
use crate::ids::DocumentId;
use crate::knowledge::library::{self, Filter, KnowledgeError};
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;

pub fn routes() -> Routes {
    Routes::new()
        .upload(
            "/api/v1/documents",
            Access::Allowed(Permission::KnowledgeRead),
            get(list).post(upload),
        )
        .route(
            "/api/v1/documents/{id}",
            Access::Allowed(Permission::KnowledgeRead),
            get(show).delete(remove),
        )
        .route(
            "/api/v1/passages/{citation}",
            Access::Allowed(Permission::KnowledgeRead),
            get(passage),
        )
        .route(
            "/api/v1/search",
            Access::Allowed(Permission::KnowledgeRead),
            get(search),
        )
}

/// Most files one upload takes.
pub const MAX_FILES: usize = 4;

async fn list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    match in_realm(&state, &p, ip, |ctx, _| library::list_blocking(ctx)).await {
        Ok(docs) => Json(serde_json::json!({ "documents": docs })).into_response(),
        Err(e) => api_error(e),
    }
}

/// The files of a `multipart/form-data` body, each part with a file name.
///
/// # Errors
/// A body that is not multipart, too many files, a file too large, or none.
pub async fn files_of(mut form: Multipart) -> Result<Vec<(String, Vec<u8>)>, KnowledgeError> {
    let bad = |m: &str| KnowledgeError::BadFilter(m.to_string());
    let mut out = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(bad("the upload is too large; send fewer or smaller files"))
            }
            Err(_) => return Err(bad("the upload is not a readable multipart/form-data body")),
        };
        let Some(name) = field.file_name().map(str::to_string) else {
            continue; // a form field (the CSRF token), not a file
        };
        if out.len() == MAX_FILES {
            return Err(bad(&format!("at most {MAX_FILES} files per upload")));
        }
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                bad("the upload is too large; send fewer or smaller files")
            } else {
                bad("the upload broke off; send it again")
            }
        })?;
        out.push((name, bytes.to_vec()));
    }
    if out.is_empty() {
        return Err(bad(
            "no file in the upload; send each as a part with a file name",
        ));
    }
    Ok(out)
}

/// Adds each file (multipart parts with a file name). All are tried; the answer lists what
/// was added and what was refused, with why. 201 when all were added, 400 when none was,
/// 207 when some were.
async fn upload(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let form = match <Multipart as axum::extract::FromRequest<()>>::from_request(req, &()).await {
        Ok(f) => f,
        Err(_) => {
            return api_error(KnowledgeError::BadFilter(
                "send the files as multipart/form-data".into(),
            ))
        }
    };
    let files = match files_of(form).await {
        Ok(f) => f,
        Err(e) => return api_error(e),
    };
    let results = in_realm(&state, &p, ip, move |ctx, _| {
        Ok::<_, KnowledgeError>(
            files
                .iter()
                .map(|(name, bytes)| (name.clone(), library::add_blocking(ctx, name, bytes)))
                .collect::<Vec<_>>(),
        )
    })
    .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => return api_error(e),
    };
    let (mut added, mut refused) = (Vec::new(), Vec::new());
    for (name, r) in results {
        match r {
            Ok(a) => added.push(serde_json::to_value(a).unwrap_or_default()),
            Err(e) => {
                if let Some(internal) = internal_error(&e) {
                    return internal;
                }
                refused.push(serde_json::json!({
                    "name": name, "code": e.code(), "message": e.to_string(),
                }));
            }
        }
    }
    let status = match (added.is_empty(), refused.is_empty()) {
        (false, true) => StatusCode::CREATED,
        (true, _) => StatusCode::BAD_REQUEST,
        (false, false) => StatusCode::MULTI_STATUS,
    };
    (
        status,
        Json(serde_json::json!({ "added": added, "refused": refused })),
    )
        .into_response()
}

/// A fault on our side answers the whole request as one (its detail to the log only).
fn internal_error(e: &KnowledgeError) -> Option<Response> {
    use crate::error::{DomainError, ErrorKind};
    (e.kind() == ErrorKind::Internal || e.kind() == ErrorKind::Forbidden).then(|| {
        let (status, message) = super::error::status_for(e.kind());
        tracing::error!(code = e.code(), error = %e, "upload failed");
        (
            status,
            Json(serde_json::json!({"error": {"code": e.code(), "message": message}})),
        )
            .into_response()
    })
}

async fn show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let found = in_realm(&state, &p, ip, move |ctx, _| {
        let id = DocumentId::parse(&id)?;
        library::versions_blocking(ctx, &id)
    })
    .await;
    match found {
        Ok((doc, versions)) => {
            Json(serde_json::json!({ "document": doc, "versions": versions })).into_response()
        }
        Err(e) => api_error(e),
    }
}

async fn remove(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    let done = in_realm(&state, &p, ip, move |ctx, _| {
        let id = DocumentId::parse(&id)?;
        library::remove_blocking(ctx, &id)
    })
    .await;
    match done {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => api_error(e),
    }
}

async fn passage(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(citation): Path<String>,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    match in_realm(&state, &p, ip, move |ctx, _| {
        library::passage_blocking(ctx, &citation)
    })
    .await
    {
        Ok(found) => Json(found).into_response(),
        Err(e) => api_error(e),
    }
}

/// The query of a search: the text, and the filters as the CLI takes them.
#[derive(Debug, Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub limit: Option<String>,
    pub document: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl SearchQuery {
    /// The filter and the limit, checked.
    ///
    /// # Errors
    /// A malformed filter or a limit that is not 1 to 100, named.
    pub fn parsed(&self) -> Result<(Filter, usize), KnowledgeError> {
        let filter = Filter::parse(
            self.document.as_deref(),
            self.kind.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
        )?;
        let limit = match self
            .limit
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            None => 10,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=library::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    KnowledgeError::BadFilter(format!(
                        "limit {:?} is not a whole number from 1 to {}",
                        l.chars().take(20).collect::<String>(),
                        library::MAX_LIMIT
                    ))
                })?,
        };
        Ok((filter, limit))
    }
}

async fn search(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let Ok(Query(query)) = query else {
        return api_error(KnowledgeError::BadFilter(
            "the query string cannot be read; give q, and optionally limit, document, type, since, until".into(),
        ));
    };
    let ip = client_ip(req.extensions());
    let found = in_realm(&state, &p, ip, move |ctx, _| {
        let (filter, limit) = query.parsed()?;
        library::search_blocking(ctx, &query.q, &filter, limit)
    })
    .await;
    match found {
        Ok(hits) => Json(serde_json::json!({ "results": hits })).into_response(),
        Err(e) => api_error(e),
    }
}
