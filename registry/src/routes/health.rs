//! Liveness and readiness.
use actix_web::{web, HttpResponse};
use crpc_service::error::ApiError;
use task_api::HealthResponse;

use crate::state::Registry;

/// `GET /livez`.
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "Alive", body = task_api::HealthResponse)))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(status("alive"))
}

/// `GET /readyz`: metadata answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = task_api::HealthResponse),
    (status = 503, description = "The metadata store does not answer", body = task_api::ApiErrorBody),
))]
pub async fn readyz(reg: web::Data<Registry>) -> Result<HttpResponse, ApiError> {
    reg.store
        .packages()
        .await
        .map_err(|e| ApiError::unavailable(format!("metadata store not ready: {e}")))?;
    Ok(HttpResponse::Ok().json(status("ready")))
}

fn status(status: &str) -> HealthResponse {
    HealthResponse {
        success: true,
        status: status.to_string(),
    }
}
