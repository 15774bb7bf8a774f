//! `POST /user/tasks/{id}/cancel`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, task_id};

#[utoipa::path(
    post,
    path = "/user/tasks/{id}/cancel",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "Cancelled", body = task_api::CancelResponse),
        (status = 409, description = "Already finished", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Queued or running → cancelled (a running task's processor is told at its next heartbeat);
/// 409 when it already finished.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    Ok(ok(&queue.cancel(&caller, id).await?))
}
