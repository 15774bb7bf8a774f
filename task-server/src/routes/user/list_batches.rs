//! `GET /user/batches[?limit=]`
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
    /// How many (1-100, default 20).
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/user/batches",
    tag = "user",
    params(Query),
    responses(
        (status = 200, description = "The caller's batches (admin: everyone's), newest first, with counts by state", body = task_api::BatchListResponse),
    ),
    security(("bearer" = []))
)]
/// Batches, newest first.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    Ok(ok(&queue
        .list_batches(&caller, q.limit.unwrap_or(20))
        .await?))
}
