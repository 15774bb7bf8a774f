//! `GET /v1/packages/{name}`
use super::views::PackageVersions;
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::{check_name, store_err, Registry};

#[utoipa::path(
    get,
    path = "/v1/packages/{name}",
    tag = "read",
    params(("name" = String, Path, description = "Package name")),
    responses(
        (status = 200, description = "Every version, newest first", body = PackageVersions),
    ),
    security(("bearer" = []))
)]
/// Every version, newest first, with yanked flags, digests and manifests.
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    let versions = reg.store.versions(&name).await.map_err(store_err)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no package named `{name}`")));
    }
    Ok(HttpResponse::Ok().json(PackageVersions {
        success: true,
        name: name.into_inner(),
        versions,
    }))
}
