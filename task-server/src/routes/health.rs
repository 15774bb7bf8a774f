//! Liveness and readiness probes.
use actix_web::{web, HttpResponse};
use task_api::HealthResponse;

use crate::error::ApiError;
use crate::queue::Queue;

/// `GET /livez`: the process answers.
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "Alive", body = task_api::HealthResponse)))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(status("alive"))
}

/// `GET /readyz`: the database answers and the server is not draining.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = task_api::HealthResponse),
    (status = 503, description = "Draining, or the database does not answer", body = task_api::ApiErrorBody),
))]
pub async fn readyz(queue: web::Data<Queue>) -> Result<HttpResponse, ApiError> {
    if queue.draining() {
        return Err(ApiError::unavailable(
            "draining: the server is shutting down",
        ));
    }
    queue
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("database not ready: {e}")))?;
    Ok(HttpResponse::Ok().json(status("ready")))
}

fn status(status: &str) -> HealthResponse {
    HealthResponse {
        success: true,
        status: status.into(),
    }
}
