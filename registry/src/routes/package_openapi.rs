//! `GET /v1/packages/{name}/{version}/openapi.json`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::Registry;

/// An OpenAPI 3.1 document for submitting this version's functions to a task server: a JSON
/// Schema of each function's arguments (positional and keyword) and of its answer, generated
/// from the manifest's typed signatures.
#[utoipa::path(
    get,
    path = "/v1/packages/{name}/{version}/openapi.json",
    tag = "read",
    params(
        ("name" = String, Path, description = "Package name"),
        ("version" = String, Path, description = "Exact semver version"),
    ),
    responses(
        (status = 200, description = "The package's OpenAPI document", body = Object),
    ),
    security(("bearer" = []))
)]
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    let info = reg.version(&name, &version).await?;
    Ok(HttpResponse::Ok().json(crate::package_doc::document(&info.manifest)))
}
