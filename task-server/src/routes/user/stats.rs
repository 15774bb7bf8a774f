//! `GET /user/stats`
use actix_web::{web, HttpResponse};

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

/// Per package@version/function: count, failures, mean, p50, p95.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(_): UserCaller,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.stats().await?))
}
