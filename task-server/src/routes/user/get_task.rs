//! `GET /user/tasks/{id}`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, task_id};

#[utoipa::path(
    get,
    path = "/user/tasks/{id}",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task with its arguments, answer or error, progress and current attempt", body = task_api::TaskDetail),
    ),
    security(("bearer" = []))
)]
/// Everything about one of the caller's tasks (admin: anyone's).
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    Ok(ok(&queue.task_detail(&caller, id).await?))
}
