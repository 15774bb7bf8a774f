//! `GET /user/workers[?all=true]`
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

/// Query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Include processors not heard from lately.
    #[serde(default)]
    pub all: bool,
}

#[utoipa::path(
    get,
    path = "/user/workers",
    tag = "user",
    params(Query),
    responses(
        (status = 200, description = "Processors, their slots and what they hold", body = task_api::WorkersResponse),
    ),
    security(("bearer" = []))
)]
/// Processors, their slots and capabilities, and how many tasks each holds.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(_caller): UserCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue.workers(q.all).await?))
}
