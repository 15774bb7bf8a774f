//! `GET /v1/packages/{name}`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;
use serde_json::json;

use crate::state::{check_name, store_err, Registry};

/// Every version, newest first, with yanked flags, digests and manifests.
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    let versions = reg.store.versions(&name).await.map_err(store_err)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no package named `{name}`")));
    }
    Ok(HttpResponse::Ok().json(json!({"success": true, "name": *name, "versions": versions})))
}
