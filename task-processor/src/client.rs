//! The processor's side of the worker API: long-poll for leases, heartbeats, answers. Every
//! call goes out over plain HTTP from the processor, so processors work behind NAT.
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use task_api::{
    HeartbeatRequest, HeartbeatResponse, RequestTask, RequestTaskResponse, SubmitAnswer,
    SubmitAnswerResult,
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
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: task_api::ErrorDetail,
}

#[derive(Deserialize)]
struct AnswersResponse {
    results: Vec<SubmitAnswerResult>,
}

impl ServerClient {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`).
    pub fn new(base: &str, token: Option<String>) -> ServerClient {
        ServerClient {
            http: crpc_package::http::client_builder()
                .connect_timeout(Duration::from_secs(5))
                // Above the server's 30 s long-poll ceiling.
                .timeout(Duration::from_secs(45))
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let url = format!("{}{}", self.base, path);
        let mut rb = self.http.post(&url).json(body);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let unavailable = |e: reqwest::Error| CallError::Unavailable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = rb.send().await.map_err(unavailable)?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return resp.json::<T>().await.map_err(unavailable);
        }
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unexpected".into(), text.chars().take(200).collect()),
        };
        Err(match status {
            401 | 403 => CallError::Auth {
                status,
                code,
                message,
            },
            429 | 500..=599 => CallError::Unavailable {
                url,
                reason: format!("{status} {code}: {message}"),
            },
            _ => CallError::Rejected {
                status,
                code,
                message,
            },
        })
    }

    /// Leases up to `req.max_tasks` tasks, long-polling when none is queued.
    pub async fn request_tasks(&self, req: &RequestTask) -> Result<RequestTaskResponse, CallError> {
        self.post("/worker/request_task", req).await
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
