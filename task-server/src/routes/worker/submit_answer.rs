//! `POST /worker/submit_answer` (single form, or `{"answers": [...]}`)
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use task_api::{SubmitAnswer, SubmitAnswerResponse, SubmitAnswerResult, SubmitAnswersResponse};

use crate::auth::WorkerCaller;
use crate::error::ApiError;
use crate::queue::{Queue, QueueError};
use crate::routes::{ok, parse_value, Body};
use crate::store::AnswerOutcome;

/// The batch form's entry for one answer (also used by `request_task`, which carries answers).
pub fn answer_result(
    (id, r): (uuid::Uuid, Result<AnswerOutcome, QueueError>),
) -> SubmitAnswerResult {
    let (status, code) = match r {
        Ok(AnswerOutcome::Accepted { .. }) | Ok(AnswerOutcome::Duplicate) => (StatusCode::OK, None),
        Ok(AnswerOutcome::Stale { .. }) => (StatusCode::CONFLICT, Some("stale_lease".to_string())),
        Ok(AnswerOutcome::NotHolder) => {
            (StatusCode::FORBIDDEN, Some("not_lease_holder".to_string()))
        }
        Ok(AnswerOutcome::NotFound) => (StatusCode::NOT_FOUND, Some("not_found".to_string())),
        Err(e) => {
            let e = ApiError::from(e);
            (e.status, Some(e.code.to_string()))
        }
    };
    SubmitAnswerResult {
        id,
        status: status.as_u16(),
        code,
    }
}

/// The body: one answer, or `{"answers": [...]}` (≤ 1,000).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema of what `handle` parses by hand, for its better errors
pub enum SubmitAnswerBody {
    /// One answer.
    One(SubmitAnswer),
    /// Many answers, one result each.
    Many {
        /// The answers.
        answers: Vec<SubmitAnswer>,
    },
}

/// The reply: the single form's, or the batch form's.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SubmitAnswerReply {
    /// Single form.
    One(SubmitAnswerResponse),
    /// Batch form.
    Many(SubmitAnswersResponse),
}

#[utoipa::path(
    post,
    path = "/worker/submit_answer",
    tag = "worker",
    request_body = SubmitAnswerBody,
    responses(
        (status = 200, description = "Recorded (a replay: `duplicate: true`); batch form: a status per answer", body = SubmitAnswerReply),
        (status = 409, description = "The lease is no longer current (`stale_lease`): nothing changed", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Single form: 200 accepted (also for a replay of an accepted answer), 409 stale lease (nothing
/// changes), 403 `not_lease_holder` (another worker's lease: nothing changes), 404 unknown task. Batch form: 200 with a status per answer.
pub async fn handle(
    queue: web::Data<Queue>,
    WorkerCaller(caller): WorkerCaller,
    Body(body): Body<Value>,
) -> Result<HttpResponse, ApiError> {
    let batch = body.as_object().and_then(|o| o.get("answers")).is_some();
    if !batch {
        let answer: SubmitAnswer = parse_value(body)?;
        let id = answer.id;
        let epoch = answer.lease_epoch;
        let outcome = queue
            .submit_answers(&caller, vec![answer])
            .await?
            .pop()
            .expect("one result")?;
        return match outcome {
            AnswerOutcome::Accepted { .. } => Ok(ok(&SubmitAnswerResponse {
                success: true,
                id,
                duplicate: None,
            })),
            AnswerOutcome::Duplicate => Ok(ok(&SubmitAnswerResponse {
                success: true,
                id,
                duplicate: Some(true),
            })),
            AnswerOutcome::Stale { state } => Err(stale(id, epoch, state)),
            AnswerOutcome::NotHolder => Err(QueueError::NotLeaseHolder(id).into()),
            AnswerOutcome::NotFound => Err(QueueError::NoTask(id).into()),
        };
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        answers: Vec<SubmitAnswer>,
    }
    let Batch { answers } = parse_value(body)?;
    let results = queue.answers_with_ids(&caller, answers).await?;
    let per = results.into_iter().map(answer_result).collect();
    Ok(ok(&SubmitAnswersResponse {
        success: true,
        results: per,
    }))
}

fn stale(id: uuid::Uuid, epoch: Option<i64>, state: task_api::TaskState) -> ApiError {
    ApiError::conflict(
        "stale_lease",
        match epoch {
            Some(epoch) => format!("lease epoch {epoch} of task {id} is no longer current (the task is {state}); the answer was not recorded"),
            None => format!("task {id} has no current lease (it is {state}); the answer was not recorded"),
        },
    )
    .with_details(json!({"state": state}))
}
