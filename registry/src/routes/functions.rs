//! `GET /v1/functions/{function}`
use std::collections::BTreeMap;

use super::views::FunctionPackages;
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::{store_err, Registry};

#[utoipa::path(
    get,
    path = "/v1/functions/{function}",
    tag = "read",
    params(("function" = String, Path, description = "Function name")),
    responses(
        (status = 200, description = "Packages exporting the function", body = FunctionPackages),
    ),
    security(("bearer" = []))
)]
/// The newest non-yanked version of each package exporting `function` (lets a task name only
/// its function, as in the seed, when exactly one package has it).
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    function: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut newest: BTreeMap<String, crpc_package::client::VersionInfo> = BTreeMap::new();
    for v in reg
        .store
        .with_function(&function)
        .await
        .map_err(store_err)?
    {
        match newest.get(&v.name) {
            Some(have) if have.manifest.semver() >= v.manifest.semver() => {}
            _ => {
                newest.insert(v.name.clone(), v);
            }
        }
    }
    let packages: Vec<_> = newest.into_values().collect();
    Ok(HttpResponse::Ok().json(FunctionPackages {
        success: true,
        function: function.into_inner(),
        packages,
    }))
}
