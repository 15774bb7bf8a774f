//! `GET /user/batches/{id}[?wait=SECONDS]`
use actix_web::{web, HttpResponse};
use uuid::Uuid;

use super::WaitQuery;
use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::ok;

/// Counts by state and ETA; `wait` long-polls until every task finished.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    path: web::Path<String>,
    q: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path)
        .map_err(|_| ApiError::not_found(format!("no batch with id {path}")))?;
    Ok(ok(&queue.batch_status(&caller, id, q.wait).await?))
}
