//! The user side of the task server's HTTP API, with every failure turned into a [`CliError`].
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use task_api::{
    AnswerResponse, BatchResultsResponse, CancelResponse, SubmitBatch, SubmitBatchResponse,
    SubmitResponse, TaskSpec,
};
use uuid::Uuid;

use crate::error::{root_cause, CliError, CliResult};

/// Longest single long-poll the server grants (`?wait=`), seconds.
pub const MAX_WAIT_S: f64 = 60.0;

/// A task server client.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: task_api::ErrorDetail,
}

/// Checks a base URL: absolute http(s) with a host.
pub fn check_url(what: &str, url: &str) -> CliResult<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(CliError::Other(format!(
            "{what} URL `{url}` must start with http:// or https://"
        ))),
        Err(e) => Err(CliError::Other(format!("{what} URL `{url}`: {e}"))),
    }
}

impl Api {
    /// A client for `base` with an optional bearer token.
    pub fn new(base: &str, token: Option<String>) -> CliResult<Api> {
        check_url("server", base)?;
        let http = crpc_package::http::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| CliError::Other(format!("HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(timeout);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn call<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> CliResult<T> {
        let resp = rb.send().await.map_err(|e| {
            let reason = if e.is_timeout() {
                "timed out".to_string()
            } else {
                root_cause(&e)
            };
            CliError::Unreachable {
                what: "server",
                url: self.base.clone(),
                reason,
            }
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| CliError::Unreachable {
            what: "server",
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                CliError::Other(format!("unexpected answer from {}: {e}", self.base))
            });
        }
        if status == 401 && self.token.is_none() {
            return Err(CliError::Auth(
                "no token: run `crpc dev` (it writes one to the config file), `crpc login`, \
                 or set CRPC_TOKEN"
                    .into(),
            ));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => CliError::from_status("server", status, &b.error.code, &b.error.message),
            Err(_) => CliError::from_status(
                "server",
                status,
                "unexpected",
                &format!(
                    "{} does not look like a crpc server: {}",
                    self.base,
                    text.chars().take(120).collect::<String>()
                ),
            ),
        })
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.call(self.req(reqwest::Method::GET, path, Duration::from_secs(30)))
            .await
    }

    /// POST a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> CliResult<T> {
        self.call(
            self.req(reqwest::Method::POST, path, Duration::from_secs(120))
                .json(body),
        )
        .await
    }

    /// `POST /user/submit_task`.
    pub async fn submit(&self, spec: &TaskSpec) -> CliResult<SubmitResponse> {
        self.post("/user/submit_task", spec).await
    }

    /// `POST /user/submit_batch`.
    pub async fn submit_batch(&self, tasks: Vec<TaskSpec>) -> CliResult<SubmitBatchResponse> {
        self.post("/user/submit_batch", &SubmitBatch { tasks })
            .await
    }

    /// `GET /user/request_answer/{id}`, long-polling up to `wait` seconds.
    pub async fn answer(&self, id: &str, wait: f64) -> CliResult<AnswerResponse> {
        let wait = wait.clamp(0.0, MAX_WAIT_S);
        let path = if wait > 0.0 {
            format!("/user/request_answer/{id}?wait={wait:.3}")
        } else {
            format!("/user/request_answer/{id}")
        };
        self.call(self.req(
            reqwest::Method::GET,
            &path,
            Duration::from_secs_f64(wait + 30.0),
        ))
        .await
    }

    /// `POST /user/tasks/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> CliResult<CancelResponse> {
        self.post(&format!("/user/tasks/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    /// `GET /user/batches/{id}/results`, long-polling up to `wait` seconds.
    pub async fn batch_results(
        &self,
        batch: Uuid,
        after: i64,
        wait: f64,
    ) -> CliResult<BatchResultsResponse> {
        let path = format!("/user/batches/{batch}/results?after={after}&limit=1000&wait={wait:.3}");
        self.call(self.req(
            reqwest::Method::GET,
            &path,
            Duration::from_secs_f64(wait + 30.0),
        ))
        .await
    }
}
