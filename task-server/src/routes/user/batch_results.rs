//! `GET /user/batches/{id}/results[?after=&limit=&wait=]`
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{long_poll, ok, TokenLimits};

/// Query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// `next` from the previous page (0 or absent: from the start).
    pub after: Option<i64>,
    /// Page size (1-1000, default 100).
    pub limit: Option<u32>,
    /// Seconds to wait when nothing new finished yet.
    pub wait: Option<f64>,
}

#[utoipa::path(
    get,
    path = "/user/batches/{id}/results",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Batch id"), Query),
    responses(
        (status = 200, description = "Finished results in completion order and the next cursor", body = task_api::BatchResultsResponse),
    ),
    security(("bearer" = []))
)]
/// Finished results in completion order (imap_unordered without polling); `done` once all are out.
pub async fn handle(
    queue: web::Data<Queue>,
    limits: web::Data<TokenLimits>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path)
        .map_err(|_| ApiError::not_found(format!("no batch with id {path}")))?;
    let _poll = long_poll(&limits, &caller, q.wait.unwrap_or(0.0) > 0.0)?;
    let out = queue
        .batch_results(
            &caller,
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(100),
            q.wait,
        )
        .await?;
    Ok(ok(&out))
}
