//! Liveness and readiness.
use actix_web::{web, HttpResponse};
use crpc_service::error::ApiError;
use serde_json::json;

use crate::state::Registry;

/// `GET /livez`.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"success": true, "status": "alive"}))
}

/// `GET /readyz`: metadata answers.
pub async fn readyz(reg: web::Data<Registry>) -> Result<HttpResponse, ApiError> {
    reg.store
        .packages()
        .await
        .map_err(|e| ApiError::unavailable(format!("metadata store not ready: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"success": true, "status": "ready"})))
}
