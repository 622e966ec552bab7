//! The one place where errors become HTTP responses: a status, a stable code, a safe message
//! and the request id. Causes go to the log, never to the client.

use crate::error::{DomainError, ErrorKind};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn new() -> Self {
        let mut b = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        Self(hex::encode(b))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// An error as the client sees it.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

impl WebError {
    pub fn internal(code: &'static str) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message: "internal error; quote the request id to your administrator",
        }
    }
}

/// The body of every error answer of the API.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, documented code, such as `KNW-0011`.
    pub code: String,
    /// What is wrong and how to fix it; never a path, SQL or key.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// Every domain error reaches a client the same way: a status and a fixed message chosen by
/// its kind, and its code. The error's own text (which may name files or carry storage
/// detail) goes to the log only.
impl<E: DomainError> From<E> for WebError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        if kind == ErrorKind::Internal {
            tracing::error!(code = e.code(), error = %e, "request failed");
        } else {
            tracing::info!(code = e.code(), error = %e, "request refused");
        }
        let (status, message) = status_for(kind);
        Self {
            status,
            code: e.code(),
            message,
        }
    }
}

/// The one table from error kind to HTTP status and the message a client may see.
pub fn status_for(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid request"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not found"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "conflicts with the current state"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "not allowed"),
        ErrorKind::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy; retry shortly"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "sign in first"),
        ErrorKind::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many attempts; wait a moment and try again",
        ),
        ErrorKind::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; quote the request id to your administrator",
        ),
    }
}

/// A domain error for an API client. Where its kind says the request itself is at fault
/// (invalid, not found, conflicting, refused, busy), the error's own message is given, which
/// names the field or file and how to fix it; domain errors are written so those messages
/// carry no path, SQL or key. Faults on our side get the fixed message of their kind.
pub fn api_error<E: DomainError>(e: E) -> Response {
    let kind = e.kind();
    let (status, fixed) = status_for(kind);
    let message = match kind {
        ErrorKind::Internal | ErrorKind::Unauthenticated => {
            tracing::error!(code = e.code(), error = %e, "request failed");
            fixed.to_string()
        }
        _ => {
            tracing::info!(code = e.code(), error = %e, "request refused");
            e.to_string()
        }
    };
    (status, Json(ErrorBody::new(e.code(), message))).into_response()
}

pub async fn not_found() -> WebError {
    WebError {
        status: StatusCode::NOT_FOUND,
        code: "WEB-0404",
        message: "not found",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_without_leaking_detail() {
        let e: WebError = crate::store::StoreError::Corrupt {
            what: "tenant abc".into(),
            detail: "/var/lib/strongroom/tenants/abc.db page 7".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "STO-0004");
        assert!(!e.message.contains("/var") && !e.message.contains("abc"));
        let busy: WebError = crate::store::StoreError::Busy { what: "x".into() }.into();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    /// The table of codes and what a client sees for each: one representative per kind, and
    /// the cases that matter most. A code's meaning never changes, so this table only grows.
    #[test]
    fn codes_map_to_statuses() {
        use crate::store::StoreError;
        use crate::tenants::TenantError;
        let what = || "tenant 0123".to_string();
        let table: Vec<(Box<dyn DomainError>, &str, StatusCode)> = vec![
            (
                Box::new(TenantError::NotFound("x".into())),
                "TEN-0005",
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(TenantError::Suspended("x".into())),
                "TEN-0006",
                StatusCode::FORBIDDEN,
            ),
            (
                Box::new(TenantError::NameTaken("x".into())),
                "TEN-0004",
                StatusCode::CONFLICT,
            ),
            (
                Box::new(TenantError::InvalidName("x".into())),
                "TEN-0002",
                StatusCode::BAD_REQUEST,
            ),
            (
                Box::new(crate::tenants::TenantId::parse("nope").unwrap_err()),
                "TEN-0001",
                StatusCode::BAD_REQUEST,
            ),
            (
                Box::new(crate::ids::UserId::parse("nope").unwrap_err()),
                "USR-0001",
                StatusCode::BAD_REQUEST,
            ),
            (
                Box::new(StoreError::Busy { what: what() }),
                "STO-0006",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Box::new(StoreError::ReadersBusy {
                    what: what(),
                    waited_ms: 5,
                }),
                "STO-0012",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Box::new(StoreError::Unaudited { what: what() }),
                "STO-0010",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                Box::new(TenantError::Store(StoreError::DiskFull { what: what() })),
                "STO-0005",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                Box::new(crate::config::ConfigError::Invalid {
                    key: "k".into(),
                    message: "m".into(),
                }),
                "CFG-0004",
                StatusCode::BAD_REQUEST,
            ),
            (
                Box::new(crate::app::AppError::InUse("d".into())),
                "APP-0006",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (e, code, status) in table {
            let shown = e.to_string();
            let (s, message) = status_for(e.kind());
            assert_eq!(e.code(), code, "{shown}");
            assert_eq!(s, status, "{code}");
            // The client sees a fixed message, never the error's own text.
            assert!(
                !message.contains("0123") && !message.contains("tenant"),
                "{code}"
            );
        }
    }

    /// Every code literal returned by a `code()` in the source is distinct: two errors never
    /// share a code.
    #[test]
    fn no_two_errors_share_a_code() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut seen: std::collections::HashMap<String, String> = Default::default();
        let mut total = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("fn code(&self) -> &'static str {") {
                rest = &rest[at..];
                let end = rest.find("\n    }\n").unwrap_or(rest.len());
                for lit in rest[..end].split('"').skip(1).step_by(2) {
                    let b = lit.as_bytes();
                    let is_code = b.len() >= 8
                        && lit.split_once('-').is_some_and(|(p, n)| {
                            p.bytes().all(|c| c.is_ascii_uppercase())
                                && n.len() == 4
                                && n.bytes().all(|c| c.is_ascii_digit())
                        });
                    if is_code {
                        total += 1;
                        let place = f.display().to_string();
                        if let Some(first) = seen.insert(lit.to_string(), place.clone()) {
                            panic!("{lit} is used twice: {first} and {place}");
                        }
                    }
                }
                rest = &rest[end..];
            }
        }
        assert!(total > 50, "found only {total} codes: the scan is broken");
    }
}
