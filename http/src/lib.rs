//! The HTTP client every crpc client uses (the CLI, the processor, the registry client, the test
//! harness and the bench): a base URL, an optional bearer token, rustls with the system's roots
//! plus a private CA ([`trust_ca_file`]), and crpc's JSON error body turned into [`Error`].
#![forbid(unsafe_code)]

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod tls;

pub use reqwest;
pub use tls::{client_builder, trust_ca_file};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No HTTP answer: connection refused, DNS, TLS, timeout, or the body broke off.
    #[error("{url} did not answer: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The innermost cause, in words.
        reason: String,
        /// Whether it was our timeout.
        timeout: bool,
    },
    /// An answer other than 2xx.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error body's `code`; `unexpected` when the body was not crpc's error JSON.
        code: String,
        /// The error body's `message` (else the body's first 200 characters).
        message: String,
        /// The body was crpc's error JSON (else: probably not a crpc service).
        crpc: bool,
    },
    /// A 2xx answer whose body was not the JSON expected.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The base URL.
        url: String,
        /// What did not parse.
        reason: String,
    },
    /// The client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Build(String),
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Timeouts and pooling of a [`Client`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Giving up on connecting.
    pub connect_timeout: Duration,
    /// Whole-request limit (`None`: per request, see [`Client::request`]).
    pub timeout: Option<Duration>,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            timeout: None,
            max_idle_per_host: 64,
        }
    }
}

/// A client of one crpc service.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: task_api::ErrorDetail,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`) with an optional bearer token.
    pub fn new(base: &str, token: Option<String>, opts: Options) -> Result<Client, Error> {
        let mut b = client_builder()
            .connect_timeout(opts.connect_timeout)
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .tcp_nodelay(true);
        if let Some(t) = opts.timeout {
            b = b.timeout(t);
        }
        Ok(Client {
            http: b.build().map_err(|e| Error::Build(describe(&e)))?,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The same client (and connection pool) with another token.
    pub fn with_token(&self, token: Option<String>) -> Client {
        Client {
            token,
            ..self.clone()
        }
    }

    /// The same client (and connection pool) aimed at another base URL.
    pub fn at(&self, base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A request to `path` (from the base URL) carrying the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends; a 2xx response, or the error answer as [`Error::Status`].
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, Error> {
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => Error::Status {
                status,
                code: b.error.code,
                message: b.error.message,
                crpc: true,
            },
            Err(_) => Error::Status {
                status,
                code: "unexpected".into(),
                message: text.chars().take(200).collect(),
                crpc: false,
            },
        })
    }

    /// Sends and reads the JSON body of a 2xx answer.
    pub async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, Error> {
        let text = self
            .send(rb)
            .await?
            .text()
            .await
            .map_err(|e| self.unreachable(&e))?;
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends and returns whatever came back: the status and the body (tests look at both).
    pub async fn raw(&self, rb: RequestBuilder) -> Result<(StatusCode, String), Error> {
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        Ok((status, text))
    }

    /// `GET path`, JSON back.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.json(self.request(Method::GET, path)).await
    }

    /// `POST path` with a JSON body, JSON back.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.base.clone(),
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                describe(e)
            },
            timeout: e.is_timeout(),
        }
    }
}

/// The innermost cause of an error, without the `(os error N)` suffix: "Connection refused"
/// rather than reqwest's "error sending request for url (…)".
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_innermost_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Options::default(),
        )
        .unwrap();
        assert_eq!(c.base(), format!("http://127.0.0.1:{port}"));
        match c.get::<serde_json::Value>("/health").await {
            Err(Error::Unreachable {
                reason, timeout, ..
            }) => {
                assert!(!timeout);
                assert!(reason.to_lowercase().contains("refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
