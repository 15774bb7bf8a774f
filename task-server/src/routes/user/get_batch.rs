//! `GET /user/batches/{id}[?wait=SECONDS]`
use actix_web::{web, HttpResponse};

use super::WaitQuery;
use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{long_poll, ok, path_id, TokenLimits};

#[utoipa::path(
    get,
    path = "/user/batches/{id}",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Batch id"), super::WaitQuery),
    responses(
        (status = 200, description = "Counts by state, done, ETA of what is left", body = task_api::BatchStatusResponse),
    ),
    security(("bearer" = []))
)]
/// Counts by state and ETA; `wait` long-polls until every task finished.
pub async fn handle(
    queue: web::Data<Queue>,
    limits: web::Data<TokenLimits>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
    q: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "batch")?;
    let _poll = long_poll(&limits, &caller, q.wait.unwrap_or(0.0) > 0.0)?;
    Ok(ok(&queue.batch_status(&caller, id, q.wait).await?))
}
