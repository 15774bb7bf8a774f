//! `GET /user/batches/{id}/results[?after=&limit=&wait=&order=&stream=]`
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::{Queue, ResultOrder};
use crate::routes::{long_poll, ok, path_id, TokenLimits};

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
    /// `finished` (default: as they finish; `after` is the completion cursor) or `submitted`
    /// (input order, each page up to the first task not finished; `after` is an index).
    pub order: Option<ResultOrder>,
    /// `ndjson`: one response that stays open and carries a JSON line per result as tasks
    /// finish, until the batch is done (`curl -N`).
    pub stream: Option<Stream>,
}

/// The streamed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Newline-delimited JSON, one `BatchResultItem` per line.
    Ndjson,
}

#[utoipa::path(
    get,
    path = "/user/batches/{id}/results",
    tag = "user",
    params(("id" = uuid::Uuid, Path, description = "Batch id"), Query),
    responses(
        (status = 200, description = "Finished results and the next cursor (with `stream=ndjson`: one `BatchResultItem` per line)", content(
            (task_api::BatchResultsResponse = "application/json"),
            (task_api::BatchResultItem = "application/x-ndjson"),
        )),
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
    let id = path_id(&path, "batch")?;
    let order = q.order.unwrap_or_default();
    if q.stream == Some(Stream::Ndjson) {
        return stream(queue, &limits, caller, id, order).await;
    }
    let _poll = long_poll(&limits, &caller, q.wait.unwrap_or(0.0) > 0.0)?;
    let out = queue
        .batch_results(
            &caller,
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(100),
            q.wait,
            order,
        )
        .await?;
    Ok(ok(&out))
}

/// The `ndjson` form: the batch is checked first (a 404 is a normal error response), then one
/// open response holds the caller's long-poll slot while lines go out.
async fn stream(
    queue: web::Data<Queue>,
    limits: &web::Data<TokenLimits>,
    caller: crate::auth::Caller,
    id: Uuid,
    order: ResultOrder,
) -> Result<HttpResponse, ApiError> {
    let results = queue
        .into_inner()
        .stream_results(caller.clone(), id, order)
        .await?;
    let poll = long_poll(limits, &caller, true)?;
    let lines = results.map(move |r| {
        let _held = &poll;
        let mut line = match r {
            Ok(item) => serde_json::to_vec(&item).unwrap_or_default(),
            Err(e) => {
                serde_json::to_vec(&crate::error::ApiError::from(e).body()).unwrap_or_default()
            }
        };
        line.push(b'\n');
        Ok::<_, actix_web::Error>(web::Bytes::from(line))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("cache-control", "no-cache"))
        .streaming(lines))
}
