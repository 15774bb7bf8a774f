//! `GET /v1/functions/{function}`
use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;
use serde_json::json;

use crate::state::{store_err, Registry};

/// The newest non-yanked version of each package exporting `function` (lets a task name only
/// its function, as in the seed, when exactly one package has it).
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
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
    Ok(HttpResponse::Ok()
        .json(json!({"success": true, "function": *function, "packages": packages})))
}
