//! What the queue refuses, in its own terms. The HTTP edge turns it into the one error body
//! (`From<QueueError> for ApiError`): the status and code of each refusal are decided here, once.
use actix_web::http::StatusCode;
use serde_json::json;
use task_api::TaskState;
use uuid::Uuid;

use crate::error::ApiError;
use crate::store::StoreError;

/// Why the queue did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A field of the request is out of bounds (422, naming the field).
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the field (`tasks[3].version`).
        field: String,
        /// What is wrong, for a person.
        message: String,
    },
    /// A query parameter is malformed (400).
    #[error("{0}")]
    BadQuery(String),
    /// No such task, or not the caller's to see (404 either way).
    #[error("no task with id {0}")]
    NoTask(Uuid),
    /// No such batch, or not the caller's (404).
    #[error("no batch with id {0}")]
    NoBatch(Uuid),
    /// No such schedule, or not the caller's (404).
    #[error("no schedule with id {0}")]
    NoSchedule(Uuid),
    /// No such broadcast (404).
    #[error("no broadcast with id {0}")]
    NoBroadcast(Uuid),
    /// The idempotency key names another body's task (422).
    #[error("idempotency_key is already used by task {0} with a different body")]
    KeyReused(Uuid),
    /// The owner's queue is at `--max-queued-per-owner` (429).
    #[error("`{owner}` has {queued} queued tasks; at most {limit} (--max-queued-per-owner)")]
    QueueFull {
        /// Token subject.
        owner: String,
        /// Its queued tasks.
        queued: u64,
        /// The cap.
        limit: u64,
    },
    /// Cancel of a task that already finished (409).
    #[error("task {id} already finished ({state}); nothing to cancel")]
    AlreadyFinished {
        /// The task.
        id: Uuid,
        /// Its terminal state.
        state: TaskState,
    },
    /// A heartbeat or answer for another worker's current lease (403).
    #[error("task {0} is leased to another worker; nothing was changed")]
    NotLeaseHolder(Uuid),
    /// A worker id registered by another token subject (403).
    #[error("worker id `{0}` belongs to another token subject; choose another --worker-id")]
    WorkerIdTaken(String),
    /// A newer run (incarnation) of this worker id is working: this one is over.
    #[error("a newer run of processor {0} started; this one was superseded and must stop (give each processor its own --worker-id)")]
    Superseded(String),
    /// Submit-time resolution against the registry refused the task (its own status and code).
    #[error("{}", .0.message)]
    Resolve(ApiError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueueError {
    /// 422 naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> QueueError {
        QueueError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        let message = e.to_string();
        match e {
            QueueError::Invalid { field, message } => ApiError::invalid(&field, message),
            QueueError::BadQuery(m) => ApiError::bad_request("bad_query", m),
            QueueError::NoTask(id) => ApiError::no_task(id),
            QueueError::NoBatch(_) | QueueError::NoSchedule(_) | QueueError::NoBroadcast(_) => {
                ApiError::not_found(message)
            }
            QueueError::KeyReused(id) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            )
            .with_details(json!({"field": "idempotency_key", "task_id": id})),
            QueueError::QueueFull { queued, limit, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                    .with_details(json!({"retry_after_s": 1, "queued": queued, "limit": limit}))
            }
            QueueError::AlreadyFinished { state, .. } => {
                ApiError::conflict("already_finished", message)
                    .with_details(json!({"state": state}))
            }
            QueueError::NotLeaseHolder(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "not_lease_holder", message)
            }
            QueueError::WorkerIdTaken(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "worker_id_taken", message)
            }
            QueueError::Superseded(_) => ApiError::new(StatusCode::CONFLICT, "superseded", message),
            QueueError::Resolve(e) => e,
            QueueError::Store(e) => e.into(),
        }
    }
}

impl From<ApiError> for QueueError {
    /// The resolver answers in HTTP terms already (the registry's refusal, passed on).
    fn from(e: ApiError) -> QueueError {
        QueueError::Resolve(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_its_status_and_code() {
        let id = Uuid::nil();
        let cases = [
            (
                QueueError::invalid("tasks[1].version", "bad"),
                422,
                "validation_failed",
            ),
            (QueueError::BadQuery("wait".into()), 400, "bad_query"),
            (QueueError::NoTask(id), 404, "not_found"),
            (QueueError::NoBatch(id), 404, "not_found"),
            (QueueError::KeyReused(id), 422, "idempotency_key_reused"),
            (
                QueueError::QueueFull {
                    owner: "o".into(),
                    queued: 3,
                    limit: 3,
                },
                429,
                "queue_full",
            ),
            (
                QueueError::AlreadyFinished {
                    id,
                    state: TaskState::Succeeded,
                },
                409,
                "already_finished",
            ),
            (QueueError::NotLeaseHolder(id), 403, "not_lease_holder"),
            (
                QueueError::WorkerIdTaken("w".into()),
                403,
                "worker_id_taken",
            ),
            (QueueError::Superseded("w".into()), 409, "superseded"),
            (QueueError::Store(StoreError::Closed), 503, "unavailable"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!(
                (api.status.as_u16(), api.code),
                (status, code),
                "{}",
                api.message
            );
            assert!(!api.message.is_empty());
        }
    }
}
