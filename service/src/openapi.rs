//! What both services' OpenAPI documents share: the bearer scheme, the one error body on every
//! operation, `/openapi.json` and the `/docs` page that renders it (embedded, no CDN).
use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

/// The error statuses any operation may answer (beyond those it documents itself), each with the
/// one JSON error body.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed JSON, query or path"),
    ("404", "No such resource (or not the caller's)"),
    ("413", "Body too large"),
    ("422", "Validation failed; `details.field` names the field"),
    ("503", "Draining or the database is unavailable"),
];
/// Only on operations that take a token.
const AUTH_ERRORS: &[(&str, &str)] = &[
    ("401", "Missing, malformed or expired token"),
    ("403", "The token's role may not use this route"),
    (
        "429",
        "Rate limit or long-poll cap of the token; see `Retry-After`",
    ),
];

/// Adds the bearer scheme and, to every operation, the error responses it does not document.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("delete", &mut item.delete),
            ("head", &mut item.head),
        ] {
            if let Some(op) = op {
                op.operation_id = Some(operation_id(method, path));
                add_errors(op);
            }
        }
    }
    doc
}

/// `post_user_submit_task`, `get_user_tasks_by_id`: unique per route and method (every handler
/// function is called `handle`, so the default ids would clash).
fn operation_id(method: &str, path: &str) -> String {
    let parts = path.split('/').filter(|s| !s.is_empty()).map(|s| {
        match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => format!("by_{param}"),
            None => s.replace(['.', '-'], "_"),
        }
    });
    std::iter::once(method.to_string())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("_")
}

fn add_errors(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let extra = ERRORS
        .iter()
        .chain(secured.then_some(AUTH_ERRORS).into_iter().flatten());
    for (status, description) in extra {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description).into());
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                .build(),
        )
        .build()
}

/// A service's OpenAPI document, rendered once (`finish`ed) on first request.
pub struct Document(std::sync::OnceLock<String>);

impl Document {
    /// Not rendered yet.
    pub const fn new() -> Self {
        Document(std::sync::OnceLock::new())
    }

    /// `GET /openapi.json`: the document of `T`.
    pub fn response<T: utoipa::OpenApi>(&self) -> HttpResponse {
        let doc = self.0.get_or_init(|| {
            finish(T::openapi())
                .to_json()
                .expect("the OpenAPI document serialises")
        });
        HttpResponse::Ok()
            .content_type("application/json")
            .body(doc.clone())
    }
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /docs`: a page that renders `/openapi.json` (vanilla JS, embedded in the binary).
pub fn docs_page() -> HttpResponse {
    crate::http::embedded(
        "text/html; charset=utf-8",
        CSP,
        include_str!("../assets/docs.html"),
    )
}

/// Same-origin scripts, styles and fetches only.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";
