//! `GET /user/summary`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

#[utoipa::path(
    get,
    path = "/user/summary",
    tag = "user",
    responses(
        (status = 200, description = "The caller's tasks (admin: everyone's) by state", body = task_api::SummaryResponse),
    ),
    security(("bearer" = []))
)]
/// Tasks by state.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.summary(&caller).await?))
}
