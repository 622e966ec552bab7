//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`. It is built
//! from the handlers' own `#[utoipa::path]` annotations and the types they serialise, so it
//! cannot drift from what they send; a test holds it to the router's `/api/v1` routes, and
//! the suite validates it and fuzzes the running API against it.

use super::error::ErrorBody;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;

/// Where the document is served; the one `/api/v1` route that needs no credentials.
pub const PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongroom",
        description = "The JSON API of a Strongroom appliance: the caller, the tenant's documents and search, and the assistant. Every call but this document's needs `Authorization: Bearer <token>` (a tenant API token, made with `strongroom token create`). Errors have one shape: `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        super::api::me,
        openapi_json,
        super::documents::list,
        super::documents::upload,
        super::documents::show,
        super::documents::remove,
        super::documents::passage,
        super::documents::search,
        super::conversations::list,
        super::conversations::create,
        super::conversations::show,
        super::conversations::ask,
        super::conversations::stream,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Common),
    tags(
        (name = "identity", description = "Who the caller is"),
        (name = "knowledge", description = "Documents, passages and search"),
        (name = "assistant", description = "Conversations answered from the documents, with citations"),
        (name = "api", description = "This document"),
    )
)]
struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "api",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
#[allow(dead_code)] // describes `document`, which serves the bytes built once
fn openapi_json() {}

/// What every operation shares: the bearer scheme, and the refusals the guard in front of
/// every route can give before a handler runs.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant API token"))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == PATH {
                continue;
            }
            for op in operations(item) {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                refusal(op, 401, "No credentials, or a token that is not valid");
                refusal(op, 403, "The caller's role does not allow this");
                refusal(
                    op,
                    429,
                    "Too many failed attempts from this address; wait and retry",
                );
                refusal(op, 503, "Busy, or the tenant is suspended; retry shortly");
                if op.request_body.is_some() {
                    refusal(op, 413, "The body is larger than the server takes");
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.patch.as_mut(),
        item.delete.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn refusal(op: &mut Operation, status: u16, description: &str) {
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert(RefOr::T(response));
}

/// The document, as JSON.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        // Serialising a document of plain strings and maps cannot fail.
        let mut doc = serde_json::to_value(doc).unwrap_or_default();
        event_data_schemas(&mut doc);
        doc.to_string()
    })
}

/// Each streamed event's `data` gets the schema of the JSON it carries (`contentSchema`,
/// which the builder does not offer), so a client, or a fuzzer, can check it.
fn event_data_schemas(doc: &mut serde_json::Value) {
    use serde_json::json;
    let Some(events) = doc
        .pointer_mut("/components/schemas/StreamEvent/oneOf")
        .and_then(|v| v.as_array_mut())
    else {
        return;
    };
    for event in events {
        let schema = match event
            .pointer("/properties/event/enum/0")
            .and_then(|v| v.as_str())
        {
            Some("delta") => json!({
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}},
            }),
            Some("turn") => json!({"$ref": "#/components/schemas/Turn"}),
            Some("error") => json!({
                "type": "object",
                "required": ["error", "status"],
                "properties": {
                    "error": {"$ref": "#/components/schemas/ErrorDetail"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                },
            }),
            _ => continue,
        };
        if let Some(data) = event.pointer_mut("/properties/data") {
            data["contentSchema"] = schema;
        }
    }
}

pub async fn document() -> Response {
    let mut res = json().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn doc() -> serde_json::Value {
        serde_json::from_str(json()).expect("the document is JSON")
    }

    #[test]
    fn the_document_names_every_api_route_of_the_router_and_no_other() {
        let routed: BTreeSet<String> = super::super::routes()
            .table()
            .into_iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("/api/"))
            .collect();
        let documented: BTreeSet<String> = doc()["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(routed, documented);
    }

    #[test]
    fn every_operation_but_the_document_needs_a_token_and_says_how_it_refuses() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        assert_eq!(
            d["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let mut seen = 0;
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                if path == PATH {
                    assert_eq!(op["security"], serde_json::json!([{}]), "{method} {path}");
                    continue;
                }
                seen += 1;
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{method} {path}"
                );
                for status in ["401", "403"] {
                    assert_eq!(
                        responses[status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has no success"
                );
            }
        }
        assert!(seen >= 12, "{seen} operations");
    }
}
