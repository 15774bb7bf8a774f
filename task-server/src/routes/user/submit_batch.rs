//! `POST /user/submit_batch`
use actix_web::{web, HttpResponse};
use task_api::SubmitBatch;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::Body;

#[utoipa::path(
    post,
    path = "/user/submit_batch",
    tag = "user",
    request_body = task_api::SubmitBatch,
    responses(
        (status = 201, description = "Every task queued, ids in input order", body = task_api::SubmitBatchResponse),
    ),
    security(("bearer" = []))
)]
/// 201 `{success, batch_id, ids}`.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    Body(batch): Body<SubmitBatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(queue.submit_batch(&caller, batch).await?))
}
