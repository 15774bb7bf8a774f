//! `GET /user/workers[?all=true]`
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

/// Query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Include processors not heard from lately.
    #[serde(default)]
    pub all: bool,
}

/// Processors, their slots and capabilities, and how many tasks each holds.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(_): UserCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.workers(q.all).await?))
}
