//! The knowledge pages: documents (list, upload, versions, remove), a passage by its
//! citation id, and search with filters.

use super::access::{client_ip, Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::documents::{files_of, SearchQuery};
use super::ui::{error_page, header_for, in_realm, render, when, FieldError, Header};
use super::AppState;
use crate::error::DomainError;
use crate::identity::Permission;
use crate::ids::DocumentId;
use crate::knowledge::library::{self, Kind, KnowledgeError};
use askama::Template;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/documents",
            Access::Allowed(Permission::KnowledgeRead),
            get(documents_show),
        )
        .upload(
            "/documents",
            Access::Allowed(Permission::KnowledgeWrite),
            post(documents_add),
        )
        .route(
            "/documents/{id}",
            Access::Allowed(Permission::KnowledgeRead),
            get(document_show),
        )
        .route(
            "/documents/{id}/remove",
            Access::Allowed(Permission::KnowledgeWrite),
            post(document_remove),
        )
        .route(
            "/passages/{citation}",
            Access::Allowed(Permission::KnowledgeRead),
            get(passage_show),
        )
        .route(
            "/search",
            Access::Allowed(Permission::KnowledgeRead),
            get(search_show),
        )
}

/// `12.3 KiB`, for people.
pub fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

pub struct DocRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub versions: i64,
    pub passages: i64,
    pub size: String,
    pub added: String,
}

#[derive(Template)]
#[template(path = "knowledge/documents.html")]
struct DocumentsPage {
    header: Option<Header>,
    rows: Vec<DocRow>,
    may_write: bool,
    errors: Vec<FieldError>,
    notice: Option<String>,
}

async fn documents_page(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    errors: Vec<FieldError>,
    notice: Option<String>,
) -> Response {
    let docs = match in_realm(state, p, None, |ctx, _| library::list_blocking(ctx)).await {
        Ok(d) => d,
        Err(e) => return error_page(state, Some(p), e).await,
    };
    let rows = docs
        .into_iter()
        .map(|d| DocRow {
            id: d.id.to_string(),
            name: d.name,
            kind: d.kind,
            versions: d.versions,
            passages: d.passages,
            size: size(d.latest_bytes),
            added: when(d.created_us),
        })
        .collect();
    let page = DocumentsPage {
        header: header_for(state, p, "/documents").await,
        rows,
        may_write: p.permissions.contains(Permission::KnowledgeWrite),
        errors,
        notice,
    };
    render(status, &page)
}

async fn documents_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    let notice = match super::ui::done(&req) {
        Some("removed") => Some("The document has been removed.".to_string()),
        Some(n) if n.starts_with("added-") => {
            let n = n.trim_start_matches("added-");
            n.parse::<usize>()
                .ok()
                .map(|n| format!("{n} document{} added.", if n == 1 { "" } else { "s" }))
        }
        _ => None,
    };
    documents_page(&state, &p, StatusCode::OK, Vec::new(), notice).await
}

/// Adds the uploaded files. All added: back to the list with a notice. Any refused: the
/// list again, with each refusal named by its file, and what was added said.
async fn documents_add(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    req: Request,
) -> Response {
    if !p.permissions.contains(Permission::KnowledgeWrite) {
        return error_page(
            &state,
            Some(&p),
            KnowledgeError::Denied(crate::identity::Denied("knowledge.write")),
        )
        .await;
    }
    let ip = client_ip(req.extensions());
    let files = match <Multipart as axum::extract::FromRequest<()>>::from_request(req, &()).await {
        Ok(form) => files_of(form).await,
        Err(_) => Err(KnowledgeError::BadFilter(
            "the upload is not a readable form; choose the files again".into(),
        )),
    };
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            let errors = FieldError::new("files", super::ui::capitalise(&e.to_string()));
            return documents_page(&state, &p, StatusCode::BAD_REQUEST, errors, None).await;
        }
    };
    let results = in_realm(&state, &p, ip, move |ctx, _| {
        Ok::<_, KnowledgeError>(
            files
                .iter()
                .map(|(name, bytes)| library::add_blocking(ctx, name, bytes))
                .collect::<Vec<_>>(),
        )
    })
    .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let added = results.iter().filter(|r| r.is_ok()).count();
    let mut errors = Vec::new();
    for e in results.into_iter().filter_map(Result::err) {
        if matches!(
            e.kind(),
            crate::error::ErrorKind::Internal | crate::error::ErrorKind::Forbidden
        ) {
            return error_page(&state, Some(&p), e).await;
        }
        errors.push(FieldError {
            field: "files",
            message: super::ui::capitalise(&e.to_string()),
        });
    }
    if errors.is_empty() {
        return Redirect::to(&format!("/documents?done=added-{added}")).into_response();
    }
    let notice = (added > 0).then(|| format!("{added} of the files were added."));
    documents_page(&state, &p, StatusCode::BAD_REQUEST, errors, notice).await
}

pub struct VersionRow {
    pub version: i64,
    pub added: String,
    pub size: String,
    pub passages: i64,
    pub sha256: String,
}

#[derive(Template)]
#[template(path = "knowledge/document.html")]
struct DocumentPage {
    header: Option<Header>,
    id: String,
    name: String,
    kind: String,
    versions: Vec<VersionRow>,
    may_write: bool,
}

async fn document_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
) -> Response {
    let found = in_realm(&state, &p, None, move |ctx, _| {
        library::versions_blocking(ctx, &DocumentId::parse(&id)?)
    })
    .await;
    let (doc, versions) = match found {
        Ok(f) => f,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let page = DocumentPage {
        header: header_for(&state, &p, "/documents").await,
        id: doc.id.to_string(),
        name: doc.name,
        kind: doc.kind,
        versions: versions
            .into_iter()
            .map(|v| VersionRow {
                version: v.version,
                added: when(v.created_us),
                size: size(v.bytes),
                passages: v.passages,
                sha256: v.sha256,
            })
            .collect(),
        may_write: p.permissions.contains(Permission::KnowledgeWrite),
    };
    render(StatusCode::OK, &page)
}

async fn document_remove(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let form = match super::ui::Posted::read(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if form.field("confirm") != "yes" {
        return error_page(
            &state,
            Some(&p),
            KnowledgeError::BadFilter(
                "tick the box to confirm the removal, then press the button again".into(),
            ),
        )
        .await;
    }
    let done = in_realm(&state, &p, form.ip, move |ctx, _| {
        library::remove_blocking(ctx, &DocumentId::parse(&id)?)
    })
    .await;
    match done {
        Ok(()) => Redirect::to("/documents?done=removed").into_response(),
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

#[derive(Template)]
#[template(path = "knowledge/passage.html")]
struct PassagePage {
    header: Option<Header>,
    citation: String,
    document_id: String,
    document: String,
    version: i64,
    superseded: bool,
    text: String,
}

async fn passage_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    Path(citation): Path<String>,
) -> Response {
    let found = in_realm(&state, &p, None, move |ctx, _| {
        library::passage_blocking(ctx, &citation)
    })
    .await;
    match found {
        Ok(x) => {
            let page = PassagePage {
                header: header_for(&state, &p, "/documents").await,
                citation: x.citation,
                document_id: x.document_id.to_string(),
                document: x.document,
                version: x.version,
                superseded: x.superseded,
                text: x.text,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => error_page(&state, Some(&p), e).await,
    }
}

pub struct HitRow {
    pub citation: String,
    pub document: String,
    pub version: i64,
    /// The snippet in parts, each marked or not.
    pub snippet: Vec<(bool, String)>,
}

/// A snippet with its matched words between `**`, as parts to render (each escaped).
pub fn marked(snippet: &str) -> Vec<(bool, String)> {
    snippet
        .split("**")
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| (i % 2 == 1, s.to_string()))
        .collect()
}

#[derive(Template)]
#[template(path = "knowledge/search.html")]
struct SearchPage {
    header: Option<Header>,
    q: String,
    kind: String,
    document: String,
    since: String,
    until: String,
    filtered: bool,
    kinds: Vec<(String, String)>,
    documents: Vec<(String, String)>,
    searched: bool,
    hits: Vec<HitRow>,
    errors: Vec<FieldError>,
}

async fn search_show(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let q = query.q.chars().take(2000).collect::<String>();
    let (kind, document, since, until) = (
        query.kind.clone().unwrap_or_default(),
        query.document.clone().unwrap_or_default(),
        query.since.clone().unwrap_or_default(),
        query.until.clone().unwrap_or_default(),
    );
    let searched = !q.trim().is_empty();
    let q2 = q.clone();
    let found = in_realm(&state, &p, None, move |ctx, _| {
        let docs = library::list_blocking(ctx)?;
        if !searched {
            return Ok((docs, Vec::new()));
        }
        let (filter, limit) = query.parsed()?;
        Ok::<_, KnowledgeError>((
            docs,
            library::search_blocking(ctx, &q2, &filter, limit.max(20))?,
        ))
    })
    .await;
    let (docs, hits, errors) = match found {
        Ok((d, h)) => (d, h, Vec::new()),
        Err(e @ KnowledgeError::BadFilter(_)) | Err(e @ KnowledgeError::InvalidId(_)) => {
            let field = ["type", "since", "until", "document"]
                .into_iter()
                .find(|f| e.to_string().contains(f))
                .unwrap_or("q");
            let errors = FieldError::new(field, super::ui::capitalise(&e.to_string()));
            (Vec::new(), Vec::new(), errors)
        }
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    let mut kinds = vec![(String::new(), "Any type".to_string())];
    kinds.extend(
        Kind::ALL
            .into_iter()
            .map(|k| (k.as_str().to_string(), k.as_str().to_uppercase())),
    );
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = SearchPage {
        header: header_for(&state, &p, "/search").await,
        filtered: !(kind.is_empty() && document.is_empty() && since.is_empty() && until.is_empty()),
        q,
        kind,
        document,
        since,
        until,
        kinds,
        documents: docs
            .into_iter()
            .map(|d| (d.id.to_string(), d.name))
            .collect(),
        searched: searched && errors.is_empty(),
        hits: hits
            .into_iter()
            .map(|h| HitRow {
                citation: h.citation,
                document: h.document,
                version: h.version,
                snippet: marked(&h.snippet),
            })
            .collect(),
        errors,
    };
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_split_into_marked_parts() {
        assert_eq!(
            marked("the **pilot** boards at **buoy**."),
            [
                (false, "the ".to_string()),
                (true, "pilot".to_string()),
                (false, " boards at ".to_string()),
                (true, "buoy".to_string()),
                (false, ".".to_string())
            ]
        );
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(12), "12 B");
    }
}
