//! `GET /user/request_answer/{id}[?wait=SECONDS]`
use actix_web::{web, HttpResponse};

use super::WaitQuery;
use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{long_poll, ok, task_id, TokenLimits};

#[utoipa::path(
    get,
    path = "/user/request_answer/{id}",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Task id"), super::WaitQuery),
    responses(
        (status = 200, description = "The task as it is (after `wait`, when it finished or the wait ran out)", body = task_api::AnswerResponse),
    ),
    security(("bearer" = []))
)]
/// State, answer or error, progress; `wait` long-polls until the task is terminal.
pub async fn handle(
    queue: web::Data<Queue>,
    limits: web::Data<TokenLimits>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
    q: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    let _poll = long_poll(&limits, &caller, q.wait.unwrap_or(0.0) > 0.0)?;
    Ok(ok(&queue.request_answer(&caller, id, q.wait).await?))
}
