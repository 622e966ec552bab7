//! Knowledge over HTTP: `/api/v1/documents` (list, upload, show with versions, remove),
//! `/api/v1/passages/{citation}` and `/api/v1/search`.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::error::api_error;
use super::error::ErrorBody;
use super::ui::in_realm;
use super::AppState;
use crate::identity::Permission;
use crate::ids::DocumentId;
use crate::knowledge::library::{
    self, Added, Document, Filter, Hit, KnowledgeError, Passage, Version,
};
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/api/v1/documents",
            Access::Allowed(Permission::KnowledgeRead),
            get(list),
        )
        .upload(
            "/api/v1/documents",
            Access::Allowed(Permission::KnowledgeWrite),
            post(upload),
        )
        .route(
            "/api/v1/documents/{id}",
            Access::Allowed(Permission::KnowledgeRead),
            get(show),
        )
        .route(
            "/api/v1/documents/{id}",
            Access::Allowed(Permission::KnowledgeWrite),
            delete(remove),
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

#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    pub documents: Vec<Document>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentShow {
    pub document: Document,
    /// Newest first.
    pub versions: Vec<Version>,
}

/// A file of an upload that was not added, and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Refusal {
    /// The file's name as sent.
    pub name: String,
    pub code: String,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadResult {
    pub added: Vec<Added>,
    pub refused: Vec<Refusal>,
}

/// Why nothing was added: each file's refusal, or what is wrong with the request itself.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the two bodies of a 400; each is sent as itself
pub enum UploadRefused {
    Files(UploadResult),
    Request(ErrorBody),
}

/// The files of an upload, as `multipart/form-data`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form; the handler reads the parts as they come
pub struct UploadForm {
    /// One to four files, each a part with a file name whose extension says its type
    /// (`.txt`, `.md`, `.html`, `.pdf`, `.csv`, `.json`); at most 10 MiB each.
    #[schema(min_items = 1, max_items = 4)]
    file: Vec<FilePart>,
}

/// One file of an upload: its bytes, in a part with a file name.
pub struct FilePart;

impl utoipa::PartialSchema for FilePart {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl utoipa::ToSchema for FilePart {}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    /// Best first.
    pub results: Vec<Hit>,
}

/// Every document of the caller's tenant, by name.
#[utoipa::path(
    get,
    path = "/api/v1/documents",
    tag = "knowledge",
    operation_id = "listDocuments",
    responses((status = 200, description = "The documents", body = DocumentList, links(
        ("getDocument" = (operation_id = "getDocument", parameters(("id" = "$response.body#/documents/0/id")))),
    )))
)]
async fn list(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let ip = client_ip(req.extensions());
    match in_realm(&state, &p, ip, |ctx, _| library::list_blocking(ctx)).await {
        Ok(documents) => Json(DocumentList { documents }).into_response(),
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
        let mut field = match form.next_field().await {
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
        // Read piece by piece and kept up to one byte past the largest document: enough for
        // the library to refuse it by name, without holding the rest of it.
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(piece)) => {
                    let room = (library::MAX_BYTES + 1).saturating_sub(bytes.len());
                    bytes.extend_from_slice(&piece[..piece.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(bad("the upload is too large; send fewer or smaller files"))
                }
                Err(_) => return Err(bad("the upload broke off; send it again")),
            }
        }
        out.push((name, bytes));
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
#[utoipa::path(
    post,
    path = "/api/v1/documents",
    tag = "knowledge",
    operation_id = "uploadDocuments",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Every file was added", body = UploadResult, links(
            ("getDocument" = (operation_id = "getDocument", parameters(("id" = "$response.body#/added/0/id")))),
            ("removeDocument" = (operation_id = "removeDocument", parameters(("id" = "$response.body#/added/0/id")))),
        )),
        (status = 207, description = "Some files were added, some refused", body = UploadResult),
        (status = 400, description = "No file was added (each refusal says why), or the body is not a readable upload", body = UploadRefused),
    )
)]
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
            Ok(a) => added.push(a),
            Err(e) => {
                if let Some(internal) = internal_error(&e) {
                    return internal;
                }
                refused.push(Refusal {
                    name,
                    code: e.code().to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    let status = match (added.is_empty(), refused.is_empty()) {
        (false, true) => StatusCode::CREATED,
        (true, _) => StatusCode::BAD_REQUEST,
        (false, false) => StatusCode::MULTI_STATUS,
    };
    (status, Json(UploadResult { added, refused })).into_response()
}

/// A fault on our side answers the whole request as one (its detail to the log only).
fn internal_error(e: &KnowledgeError) -> Option<Response> {
    use crate::error::{DomainError, ErrorKind};
    (e.kind() == ErrorKind::Internal || e.kind() == ErrorKind::Forbidden).then(|| {
        let (status, message) = super::error::status_for(e.kind());
        tracing::error!(code = e.code(), error = %e, "upload failed");
        (
            status,
            Json(super::error::ErrorBody::new(e.code(), message)),
        )
            .into_response()
    })
}

/// A document with its versions.
#[utoipa::path(
    get,
    path = "/api/v1/documents/{id}",
    tag = "knowledge",
    operation_id = "getDocument",
    params(("id" = DocumentId, Path, description = "The document")),
    responses(
        (status = 200, description = "The document and its versions, newest first", body = DocumentShow),
        (status = 400, description = "Not a document id", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
    )
)]
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
        Ok((doc, versions)) => Json(DocumentShow {
            document: doc,
            versions,
        })
        .into_response(),
        Err(e) => api_error(e),
    }
}

/// Removes a document: every version, its passages and their index entries, in the
/// transaction of its audit entry.
#[utoipa::path(
    delete,
    path = "/api/v1/documents/{id}",
    tag = "knowledge",
    operation_id = "removeDocument",
    params(("id" = DocumentId, Path, description = "The document")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a document id", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
    )
)]
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

/// A passage by its citation id, from whichever version it cites.
#[utoipa::path(
    get,
    path = "/api/v1/passages/{citation}",
    tag = "knowledge",
    operation_id = "getPassage",
    params(("citation" = String, Path, pattern = "^[0-9a-f]{32}:[0-9]+:[0-9]+-[0-9]+$", description = "A citation id: `<document>:<version>:<start>-<end>`")),
    responses(
        (status = 200, description = "The passage", body = Passage),
        (status = 400, description = "Not a citation id", body = ErrorBody),
        (status = 404, description = "No such document, version or passage", body = ErrorBody),
    )
)]
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

/// The passages of the latest versions that best match the query, best first.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "knowledge",
    operation_id = "search",
    params(
        ("q" = Option<String>, Query, description = "The words to look for; any text is taken. Words in double quotes are a phrase, found only as written"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Most results (default 10)"),
        ("document" = Option<String>, Query, pattern = "^([0-9a-f]{32})?$", description = "Only this document (empty: any)"),
        ("type" = Option<String>, Query, pattern = "^(|text|markdown|html|pdf|csv|json)$", description = "Only documents of this type (empty: any)"),
        ("since" = Option<String>, Query, description = "Only versions added at or after this time: `YYYY-MM-DD` or RFC 3339"),
        ("until" = Option<String>, Query, description = "Only versions added before this time: `YYYY-MM-DD` or RFC 3339"),
    ),
    responses(
        (status = 200, description = "The results", body = SearchResults, links(
            ("getPassage" = (operation_id = "getPassage", parameters(("citation" = "$response.body#/results/0/citation")))),
        )),
        (status = 400, description = "A filter or the limit is malformed", body = ErrorBody),
    )
)]
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
        Ok(results) => Json(SearchResults { results }).into_response(),
        Err(e) => api_error(e),
    }
}
