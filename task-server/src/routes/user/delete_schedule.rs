//! `DELETE /user/schedules/{id}`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, path_id};

#[utoipa::path(
    delete,
    path = "/user/schedules/{id}",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Deleted (tasks it submitted stay)", body = task_api::DeleteScheduleResponse),
        (status = 404, description = "No such schedule (or not yours)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Stops a schedule; the tasks it already submitted are left alone.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "schedule")?;
    Ok(ok(&queue.delete_schedule(&caller, id).await?))
}
