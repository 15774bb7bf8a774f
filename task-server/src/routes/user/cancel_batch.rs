//! `POST /user/batches/{id}/cancel`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, path_id};

#[utoipa::path(
    post,
    path = "/user/batches/{id}/cancel",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Batch id")),
    responses(
        (status = 200, description = "What was not finished is cancelled", body = task_api::CancelBatchResponse),
        (status = 404, description = "No such batch (or not yours)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Cancels every task of the batch that has not finished, in one request (running ones are
/// told at their processor's next heartbeat); finished results stay.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "batch")?;
    Ok(ok(&queue.cancel_batch(&caller, id).await?))
}
