//! Liveness and readiness probes.
use actix_web::{web, HttpResponse};
use task_api::HealthResponse;

use crate::error::ApiError;
use crate::queue::Queue;

/// `GET /livez`: the process answers.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(status("alive"))
}

/// `GET /readyz`: the database answers and the server is not draining.
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
