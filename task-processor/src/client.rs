//! The processor's side of the worker API: long-poll for leases, heartbeats, answers. Every
//! call goes out over plain HTTP from the processor, so processors work behind NAT.
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use task_api::{
    HeartbeatRequest, HeartbeatResponse, ReleaseRequest, ReleaseResponse, RequestTask,
    RequestTaskResponse, SubmitAnswer, SubmitAnswerResult,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer, or the server said it is unavailable: try again later.
    #[error("server unavailable at {url}: {reason}")]
    Unavailable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused our token: retrying will not help.
    #[error("the server refused this processor's token ({status} {code}): {message}")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// Error code.
        code: String,
        /// Server's message.
        message: String,
    },
    /// Any other error answer.
    #[error("server answered {status} {code}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Server's message.
        message: String,
    },
}

/// Client of one task server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: crpc_http::Client,
}

#[derive(Deserialize)]
struct AnswersResponse {
    results: Vec<SubmitAnswerResult>,
}

impl From<crpc_http::Error> for CallError {
    /// No answer, 429 and 5xx are worth retrying; 401/403 never are.
    fn from(e: crpc_http::Error) -> Self {
        match e {
            crpc_http::Error::Status {
                status: status @ (401 | 403),
                code,
                message,
                ..
            } => CallError::Auth {
                status,
                code,
                message,
            },
            crpc_http::Error::Status {
                status: status @ (429 | 500..=599),
                code,
                message,
                ..
            } => CallError::Unavailable {
                url: String::new(),
                reason: format!("{status} {code}: {message}"),
            },
            crpc_http::Error::Status {
                status,
                code,
                message,
                ..
            } => CallError::Rejected {
                status,
                code,
                message,
            },
            crpc_http::Error::Unreachable { url, reason, .. }
            | crpc_http::Error::Decode { url, reason } => CallError::Unavailable { url, reason },
            crpc_http::Error::Build(reason) => CallError::Unavailable {
                url: String::new(),
                reason,
            },
        }
    }
}

impl ServerClient {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`).
    pub fn new(base: &str, token: Option<String>) -> ServerClient {
        let opts = crpc_http::Options {
            // Above the server's 30 s long-poll ceiling.
            timeout: Some(Duration::from_secs(45)),
            ..Default::default()
        };
        ServerClient {
            http: crpc_http::Client::new(base, token, opts).expect("HTTP client"),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        self.http.base()
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        self.http
            .post(path, body)
            .await
            .map_err(|e| match e.into() {
                // Name the route, as the log lines of a processor that cannot reach it should.
                CallError::Unavailable { reason, .. } => CallError::Unavailable {
                    url: format!("{}{path}", self.base()),
                    reason,
                },
                other => other,
            })
    }

    /// Leases up to `req.max_tasks` tasks, long-polling when none is queued.
    pub async fn request_tasks(&self, req: &RequestTask) -> Result<RequestTaskResponse, CallError> {
        self.post("/worker/request_task", req).await
    }

    /// Hands back leases that never started, their attempt unused.
    pub async fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, CallError> {
        self.post("/worker/release", req).await
    }

    /// Extends leases, reports progress, learns of cancellations.
    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, CallError> {
        self.post("/worker/heartbeat", req).await
    }

    /// Sends answers (batch form); one status per answer.
    pub async fn submit_answers(
        &self,
        answers: &[SubmitAnswer],
    ) -> Result<Vec<SubmitAnswerResult>, CallError> {
        #[derive(serde::Serialize)]
        struct Batch<'a> {
            answers: &'a [SubmitAnswer],
        }
        let r: AnswersResponse = self
            .post("/worker/submit_answer", &Batch { answers })
            .await?;
        Ok(r.results)
    }
}
