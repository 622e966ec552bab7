//! The one place where errors become HTTP responses: a status, a stable code, a safe message
//! and the request id. Causes go to the log, never to the client.

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

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(code = e.code(), error = %e, "storage error");
        match e {
            crate::store::StoreError::Busy { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "STO-0006",
                message: "busy; retry shortly",
            },
            other => Self::internal(other.code()),
        }
    }
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
}
