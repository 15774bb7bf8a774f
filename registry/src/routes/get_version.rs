//! `GET /v1/packages/{name}/{version}`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use super::views::VersionResponse;
use crate::state::Registry;

#[utoipa::path(
    get,
    path = "/v1/packages/{name}/{version}",
    tag = "read",
    params(("name" = String, Path, description = "Package name"), ("version" = String, Path, description = "Exact semver version")),
    responses(
        (status = 200, description = "The version: digest, signature, yanked flag, manifest", body = VersionResponse),
    ),
    security(("bearer" = []))
)]
/// One version's metadata (yanked versions too).
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    Ok(HttpResponse::Ok().json(VersionResponse {
        success: true,
        version: reg.version(&name, &version).await?,
    }))
}
