//! `POST /worker/heartbeat`
use actix_web::{web, HttpResponse};
use task_api::HeartbeatRequest;

use crate::auth::WorkerCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, Body};

#[utoipa::path(
    post,
    path = "/worker/heartbeat",
    tag = "worker",
    request_body = task_api::HeartbeatRequest,
    responses(
        (status = 200, description = "Leases extended, cancelled and lost", body = task_api::HeartbeatResponse),
    ),
    security(("bearer" = []))
)]
/// Extends leases, records progress (0–100), answers which tasks were cancelled or lost.
pub async fn handle(
    queue: web::Data<Queue>,
    WorkerCaller(caller): WorkerCaller,
    Body(hb): Body<HeartbeatRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.heartbeat(&caller, hb).await?))
}
