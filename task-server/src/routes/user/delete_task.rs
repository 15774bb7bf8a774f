//! `DELETE /user/tasks/{id}`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, task_id};

#[utoipa::path(
    delete,
    path = "/user/tasks/{id}",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "Removed with its result", body = task_api::DeleteResponse),
    ),
    security(("bearer" = []))
)]
/// Removes the task and its result; a processor running it loses the lease.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    Ok(ok(&queue.delete(&caller, id).await?))
}
