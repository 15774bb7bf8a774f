//! `GET /metrics`: Prometheus text exposition, for an admin token (the same without a token on
//! `--metrics-bind`).
use actix_web::{web, HttpResponse};

use crate::auth::AdminCaller;
use crate::queue::Queue;

/// Request metrics, task counters, and the queue's gauges read now.
pub async fn handle(queue: web::Data<Queue>, AdminCaller(_): AdminCaller) -> HttpResponse {
    crpc_service::metrics::response(crate::metrics::render(&queue).await)
}
