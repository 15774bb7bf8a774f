//! `GET /metrics`: Prometheus text exposition, for an admin token (the same without a token on
//! `--metrics-bind`).
use actix_web::{web, HttpResponse};

use crate::auth::AdminCaller;
use crate::queue::Queue;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operator",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
    ),
    security(("bearer" = []))
)]
/// Request metrics, task counters, and the queue's gauges read now.
pub async fn handle(queue: web::Data<Queue>, AdminCaller(_admin): AdminCaller) -> HttpResponse {
    crpc_service::metrics::response(crate::metrics::render(&queue).await)
}
