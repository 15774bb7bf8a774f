//! `GET /v1/packages`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;
use serde_json::json;

use crate::state::{store_err, Registry};

/// Every package: name, number of versions, newest non-yanked version.
pub async fn handle(reg: web::Data<Registry>, _: AnyCaller) -> Result<HttpResponse, ApiError> {
    let list: Vec<_> = reg
        .store
        .packages()
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|(name, versions, latest)| json!({"name": name, "versions": versions, "latest": latest}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"success": true, "packages": list})))
}
