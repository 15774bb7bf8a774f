//! `GET|POST /worker/request_task`
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use task_api::{Capabilities, RequestTask, SingleTaskResponse};

use crate::auth::WorkerCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::peer::Peer;
use crate::routes::worker::submit_answer::answer_result;
use crate::routes::{long_poll, ok, Body, TokenLimits};

#[utoipa::path(
    post,
    path = "/worker/request_task",
    tag = "worker",
    request_body = task_api::RequestTask,
    responses(
        (status = 200, description = "Leases granted (maybe none) and the results of the answers carried", body = task_api::RequestTaskResponse),
        (status = 409, description = "A newer run of this worker id exists (`superseded`)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Batch form: applies the answers it carries, then up to `max_tasks` leases (long-polling up to
/// `wait_s`, ≤ 30 s, default 30) plus the prefetch the runtimes allow.
pub async fn handle_post(
    req: HttpRequest,
    queue: web::Data<Queue>,
    limits: web::Data<TokenLimits>,
    WorkerCaller(caller): WorkerCaller,
    Body(body): Body<RequestTask>,
) -> Result<HttpResponse, ApiError> {
    let waits = body.max_tasks > 0 && body.wait_s.is_none_or(|w| w > 0.0);
    let _poll = long_poll(&limits, &caller, waits)?;
    let peer = Peer::of(&req);
    let grant = queue.request_tasks(&caller, body, &|| peer.gone()).await?;
    let mut resp = grant.response;
    resp.answers = grant.answers.into_iter().map(answer_result).collect();
    Ok(ok(&resp))
}

/// Query of the seed's single form.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Processor name (default: the token subject).
    pub worker_id: Option<String>,
    /// Seconds to long-poll (default 0: answer at once, like the seed).
    pub wait: Option<f64>,
}

#[utoipa::path(
    get,
    path = "/worker/request_task",
    tag = "worker",
    params(Query),
    responses(
        (status = 200, description = "One lease, or `id: null` when nothing is queued", body = task_api::SingleTaskResponse),
    ),
    security(("bearer" = []))
)]
/// The seed's single-task form: `{success, id, task, lease_epoch, lease_deadline}`, with `id` and
/// `task` null when nothing is queued.
pub async fn handle_get(
    req: HttpRequest,
    queue: web::Data<Queue>,
    limits: web::Data<TokenLimits>,
    WorkerCaller(caller): WorkerCaller,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let _poll = long_poll(&limits, &caller, q.wait.unwrap_or(0.0) > 0.0)?;
    let peer = Peer::of(&req);
    let resp = queue
        .request_tasks(
            &caller,
            RequestTask {
                worker_id: q.worker_id,
                max_tasks: 1,
                prefetch: 0,
                held_ms: None,
                answers: Vec::new(),
                capabilities: Capabilities::default(),
                gpu_only: false,
                wait_s: Some(q.wait.unwrap_or(0.0)),
                incarnation: None,
                request_id: None,
                again: false,
                chains: false,
            },
            &|| peer.gone(),
        )
        .await?
        .response;
    let lease = resp.leases.into_iter().next();
    Ok(ok(&SingleTaskResponse {
        success: true,
        id: lease.as_ref().map(|l| l.id),
        lease_epoch: lease.as_ref().map(|l| l.lease_epoch),
        lease_deadline: lease.as_ref().map(|l| l.lease_deadline),
        heartbeat_interval_ms: lease.as_ref().map(|_| resp.heartbeat_interval_ms),
        task: lease.map(|l| l.task),
    }))
}
