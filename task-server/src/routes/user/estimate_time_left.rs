//! `GET /user/estimate_time_left[?task_id=ID]`
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, task_id};

/// Query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Estimate until this task finishes instead of the whole queue.
    pub task_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/user/estimate_time_left",
    tag = "user",
    params(Query),
    responses(
        (status = 200, description = "Work left, ETA with its interval, backlog per capability class", body = task_api::EstimateResponse),
    ),
    security(("bearer" = []))
)]
/// `time` (core-seconds on one average core, the seed's meaning) and `eta_s` (wall seconds with
/// the live processors).
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let id = q.task_id.as_deref().map(task_id).transpose()?;
    Ok(ok(&queue.estimate(&caller, id).await?))
}
