//! `POST /user/schedules`
use actix_web::{web, HttpResponse};
use task_api::NewSchedule;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::Body;

#[utoipa::path(
    post,
    path = "/user/schedules",
    tag = "user",
    request_body = task_api::NewSchedule,
    responses(
        (status = 201, description = "Recorded; `next_at` is its first tick", body = task_api::ScheduleResponse),
        (status = 422, description = "Bad cron, time zone or task (the field is named)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// A recurring schedule: each tick of `cron` (in `timezone`) submits `task` once, whichever
/// server replicas run; ticks missed while no server ran fire once at start.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    Body(body): Body<NewSchedule>,
) -> Result<HttpResponse, ApiError> {
    let out = queue.create_schedule(&caller, body).await?;
    Ok(HttpResponse::Created().json(out))
}
