//! `GET /user/stats`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

#[utoipa::path(
    get,
    path = "/user/stats",
    tag = "user",
    responses(
        (status = 200, description = "Runtime statistics per package, version and function", body = task_api::StatsResponse),
    ),
    security(("bearer" = []))
)]
/// Per package@version/function: count, failures, mean, p50, p95.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(_caller): UserCaller,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.stats().await?))
}
