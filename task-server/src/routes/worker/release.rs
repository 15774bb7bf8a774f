//! `POST /worker/release`
use actix_web::{web, HttpResponse};
use task_api::ReleaseRequest;

use crate::auth::WorkerCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, Body};

#[utoipa::path(
    post,
    path = "/worker/release",
    tag = "worker",
    request_body = task_api::ReleaseRequest,
    responses(
        (status = 200, description = "Leases handed back and those that could not be", body = task_api::ReleaseResponse),
    ),
    security(("bearer" = []))
)]
/// Hands back leases that never started (a processor's prefetch when it stops or finds its
/// slots busy): the tasks are queued again and the attempt is not counted.
pub async fn handle(
    queue: web::Data<Queue>,
    WorkerCaller(caller): WorkerCaller,
    Body(body): Body<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.release(&caller, body).await?))
}
