//! `GET /openapi.json` (OpenAPI 3.1 from the handlers' annotations) and `GET /docs`. No token.
use actix_web::HttpResponse;
use utoipa::OpenApi;

use super::{
    add_owners, download, functions, get_package, get_version, health, list_owners, list_packages,
    package_openapi, publish, remove_owners, resolve, yank,
};

/// Every route the registry serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "crpc package registry",
        description = "Versioned, immutable packages: publish (publisher role, owners only), resolve semver requirements, download verified archives. Errors always have the body ApiErrorBody."
    ),
    paths(
        list_packages::handle,
        get_package::handle,
        get_version::handle,
        package_openapi::handle,
        resolve::handle,
        functions::handle,
        download::handle,
        publish::handle,
        yank::handle,
        list_owners::handle,
        add_owners::handle,
        remove_owners::handle,
        health::livez,
        health::readyz,
    ),
    components(schemas(task_api::ApiErrorBody)),
    tags(
        (name = "read", description = "Any token"),
        (name = "publish", description = "A `publisher` token that owns the package (or `admin`)"),
        (name = "health", description = "No token"),
    )
)]
struct ApiDoc;

static DOC: crpc_service::openapi::Document = crpc_service::openapi::Document::new();

/// `GET /openapi.json`.
pub async fn json() -> HttpResponse {
    DOC.response::<ApiDoc>()
}

/// `GET /docs`.
pub async fn docs() -> HttpResponse {
    crpc_service::openapi::docs_page()
}
