//! `GET /user/schedules`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

#[utoipa::path(
    get,
    path = "/user/schedules",
    tag = "user",
    responses(
        (status = 200, description = "Your schedules, oldest first (an admin's: everyone's)", body = task_api::ScheduleListResponse),
    ),
    security(("bearer" = []))
)]
/// The caller's schedules with their next tick and how often they fired.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.list_schedules(&caller).await?))
}
