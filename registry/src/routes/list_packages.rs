//! `GET /v1/packages`
use super::views::{PackageList, PackageSummary};
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::{store_err, Registry};

#[utoipa::path(
    get,
    path = "/v1/packages",
    tag = "read",
    responses(
        (status = 200, description = "Every package", body = PackageList),
    ),
    security(("bearer" = []))
)]
/// Every package: name, number of versions, newest non-yanked version.
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
) -> Result<HttpResponse, ApiError> {
    let list: Vec<_> = reg
        .store
        .packages()
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|(name, versions, latest)| PackageSummary {
            name,
            versions,
            latest,
        })
        .collect();
    Ok(HttpResponse::Ok().json(PackageList {
        success: true,
        packages: list,
    }))
}
