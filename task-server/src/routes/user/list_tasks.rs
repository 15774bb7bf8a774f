//! `GET /user/tasks[?state=&limit=&cursor=]`
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use task_api::TaskState;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

/// Query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Only tasks in this state.
    #[param(value_type = Option<task_api::TaskState>)]
    pub state: Option<String>,
    /// Page size (1-1000, default 100).
    pub limit: Option<u32>,
    /// `next` from the previous page.
    pub cursor: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/user/tasks",
    tag = "user",
    params(Query),
    responses(
        (status = 200, description = "Own tasks (admin: all), newest first", body = task_api::TaskListResponse),
    ),
    security(("bearer" = []))
)]
/// The caller's tasks (an admin's: everyone's), newest first.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(|e| ApiError::bad_request("bad_query", e))?;
    let limit = q.limit.unwrap_or(100);
    Ok(ok(&queue.list(&caller, state, q.cursor, limit).await?))
}
