//! The user side of the task server's HTTP API, with every failure turned into a [`CliError`].
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use task_api::{
    AnswerResponse, BatchResultsResponse, CancelResponse, SubmitBatch, SubmitBatchResponse,
    SubmitResponse, TaskSpec,
};
use uuid::Uuid;

use crpc_http::reqwest;

use crate::error::{CliError, CliResult};

/// Longest single long-poll the server grants (`?wait=`), seconds.
pub const MAX_WAIT_S: f64 = 60.0;

/// A task server client.
#[derive(Debug, Clone)]
pub struct Api {
    http: crpc_http::Client,
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
        let http = crpc_http::Client::new(base, token, crpc_http::Options::default())
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Api { http })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        self.http.base()
    }

    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, path).timeout(timeout)
    }

    async fn call<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> CliResult<T> {
        self.http.json(rb).await.map_err(|e| self.cli_error(e))
    }

    /// The CLI's reading of a failed call (its exit code follows from the variant).
    fn cli_error(&self, e: crpc_http::Error) -> CliError {
        let base = self.base().to_string();
        match e {
            crpc_http::Error::Unreachable { reason, .. } => CliError::Unreachable {
                what: "server",
                url: base,
                reason,
            },
            crpc_http::Error::Decode { reason, .. } => {
                CliError::Other(format!("unexpected answer from {base}: {reason}"))
            }
            crpc_http::Error::Build(reason) => CliError::Other(reason),
            crpc_http::Error::Status { status: 401, .. } if self.http.token().is_none() => {
                CliError::Auth(
                    "no token: run `crpc dev` (it writes one to the config file), `crpc login`, \
                     or set CRPC_TOKEN"
                        .into(),
                )
            }
            crpc_http::Error::Status {
                status,
                code,
                message,
                crpc: true,
            } => CliError::from_status("server", status, &code, &message),
            crpc_http::Error::Status {
                status, message, ..
            } => CliError::from_status(
                "server",
                status,
                "unexpected",
                &format!(
                    "{base} does not look like a crpc server: {}",
                    message.chars().take(120).collect::<String>()
                ),
            ),
        }
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

    /// `PUT /files`: streams `file` (`size` bytes) up.
    pub async fn put_file(
        &self,
        file: tokio::fs::File,
        size: u64,
    ) -> CliResult<task_api::FileStored> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let rb = self
            .req(
                reqwest::Method::PUT,
                "/files",
                Duration::from_secs(24 * 3600),
            )
            .header("content-type", "application/octet-stream")
            .header("content-length", size)
            .body(body);
        self.call(rb).await
    }

    /// `GET /files/{sha256}`: the response, its body not yet read.
    pub async fn get_file(&self, sha256: &str) -> CliResult<reqwest::Response> {
        let path = format!("/files/{sha256}");
        let rb = self.req(reqwest::Method::GET, &path, Duration::from_secs(24 * 3600));
        self.http.send(rb).await.map_err(|e| self.cli_error(e))
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

    /// `POST /user/batches/{id}/cancel`: every task of the batch not finished yet.
    pub async fn cancel_batch(&self, batch: Uuid) -> CliResult<task_api::CancelBatchResponse> {
        self.post(
            &format!("/user/batches/{batch}/cancel"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /user/batches/{id}/results`, long-polling up to `wait` seconds; `ordered`: in input
    /// order (`after` is then an index).
    pub async fn batch_results(
        &self,
        batch: Uuid,
        after: i64,
        wait: f64,
        ordered: bool,
    ) -> CliResult<BatchResultsResponse> {
        let order = if ordered { "submitted" } else { "finished" };
        let path = format!(
            "/user/batches/{batch}/results?after={after}&limit=1000&wait={wait:.3}&order={order}"
        );
        self.call(self.req(
            reqwest::Method::GET,
            &path,
            Duration::from_secs_f64(wait + 30.0),
        ))
        .await
    }
}
