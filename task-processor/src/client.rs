//! The processor's side of the worker API: long-poll for leases, heartbeats, answers. Every
//! call goes out over plain HTTP from the processor, so processors work behind NAT.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// Client of a task server: one URL, or the replicas of one (sharing a database), used in
/// turn: a call that cannot reach the current one (no answer, 5xx) tries the next at once, and
/// the first that answers becomes current.
#[derive(Debug, Clone)]
pub struct ServerClient {
    servers: Arc<[crpc_http::Client]>,
    current: Arc<AtomicUsize>,
}

#[derive(Deserialize)]
struct AnswersResponse {
    results: Vec<SubmitAnswerResult>,
}

/// Whether another replica may do better: no answer, or a server error.
fn unreachable(e: &crpc_http::Error) -> bool {
    matches!(
        e,
        crpc_http::Error::Unreachable { .. }
            | crpc_http::Error::Status {
                status: 500..=599,
                ..
            }
    )
}

/// The error, naming the route when the server could not be reached, as the log lines of a
/// processor that cannot reach it should.
fn named(base: &str, path: &str, e: CallError) -> CallError {
    match e {
        CallError::Unavailable { reason, .. } => CallError::Unavailable {
            url: format!("{base}{path}"),
            reason,
        },
        other => other,
    }
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
    /// A client for `bases`: one base URL (e.g. `http://127.0.0.1:7700`) or several,
    /// comma-separated (replicas of one server).
    pub fn new(bases: &str, token: Option<String>) -> anyhow::Result<ServerClient> {
        let opts = crpc_http::Options {
            // Above the server's 30 s long-poll ceiling.
            timeout: Some(Duration::from_secs(45)),
            ..Default::default()
        };
        let servers = bases
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| crpc_http::Client::new(b, token.clone(), opts.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        anyhow::ensure!(!servers.is_empty(), "no server URL given");
        Ok(ServerClient {
            servers: servers.into(),
            current: Arc::default(),
        })
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()].base()
    }

    /// Every base URL, comma-separated.
    pub fn bases(&self) -> String {
        let all: Vec<&str> = self.servers.iter().map(|s| s.base()).collect();
        all.join(",")
    }

    /// GETs `path` from the current server for its body, streamed (no overall time limit
    /// but `limit`: files can be large), then from each other one while they cannot be reached.
    pub async fn download(
        &self,
        path: &str,
        limit: Duration,
    ) -> Result<reqwest::Response, CallError> {
        self.failover(path, |server, _| {
            let rb = server.request(reqwest::Method::GET, path).timeout(limit);
            server.send(rb)
        })
        .await
    }

    /// PUTs `size` bytes of `file` to `path` on the current server (a stream cannot be sent
    /// twice: no failover), with at most `limit` for the whole upload.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
        size: u64,
        limit: Duration,
    ) -> Result<T, CallError> {
        let server = &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()];
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let rb = server
            .request(reqwest::Method::PUT, path)
            .timeout(limit)
            .header("content-type", "application/octet-stream")
            .header("content-length", size)
            .body(body);
        server
            .json(rb)
            .await
            .map_err(|e| named(server.base(), path, e.into()))
    }

    /// POSTs to the current server, then to each other one while they cannot be reached.
    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        self.post_again(path, body, |_| {}).await
    }

    /// [`Self::post`], where the body sent to the next server after one that could not be
    /// reached is the JSON of `body` changed by `again` (a lease request says it is sent again).
    async fn post_again<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        again: fn(&mut serde_json::Value),
    ) -> Result<T, CallError> {
        // Made once, for whichever servers are tried after the first.
        let resent = std::sync::OnceLock::new();
        let resent = &resent;
        self.failover(path, |server, first| async move {
            if first {
                return server.post(path, body).await;
            }
            let v = resent.get_or_init(|| {
                let mut v = serde_json::to_value(body).expect("request bodies serialize");
                again(&mut v);
                v
            });
            server.post(path, v).await
        })
        .await
    }

    /// Calls `send` with the current server (`true`: the first tried), then with each other
    /// one while they cannot be reached; the one that answers becomes the current server.
    async fn failover<'s, T, F, Fut>(&'s self, path: &str, mut send: F) -> Result<T, CallError>
    where
        F: FnMut(&'s crpc_http::Client, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, crpc_http::Error>>,
    {
        let n = self.servers.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            let server = &self.servers[i];
            match send(server, i == first).await {
                Ok(v) => {
                    if i != first {
                        self.current.store(i, Ordering::Relaxed);
                        tracing::warn!("failed over to {}", server.base());
                    }
                    return Ok(v);
                }
                Err(e) => {
                    let retry_elsewhere = n > 1 && unreachable(&e);
                    let e = named(server.base(), path, e.into());
                    if !retry_elsewhere {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one server"))
    }

    /// Leases up to `req.max_tasks` tasks, long-polling when none is queued.
    /// Sent to another replica after one that could not be reached, it goes as `again`: that
    /// one may have granted leases before it went away.
    pub async fn request_tasks(&self, req: &RequestTask) -> Result<RequestTaskResponse, CallError> {
        let again = |v: &mut serde_json::Value| v["again"] = serde_json::Value::Bool(true);
        self.post_again("/worker/request_task", req, again).await
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
