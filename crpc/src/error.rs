//! What can go wrong, as one human line and an exit code that means something.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; every task asked about succeeded |
//! | 1 | anything else (local I/O, a bad file, an unexpected answer) |
//! | 2 | bad command line (clap) |
//! | 3 | a task ended without success (failed, cancelled, expired) |
//! | 4 | not found (task, package, batch) |
//! | 5 | refused: missing, expired or wrong token, or the wrong role |
//! | 6 | the server or registry cannot be reached, or is draining |
//! | 7 | the server refused the input (bad arguments, unknown function, conflict, too large) |
//! | 8 | the task has not finished yet (`crpc result`) |
//! | 124 | `--timeout` ran out while waiting |
//! | 130 | interrupted (Ctrl-C) |

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No answer from a service.
    #[error("cannot reach the {what} at {url}: {reason}")]
    Unreachable {
        /// "server" or "registry".
        what: &'static str,
        /// Base URL.
        url: String,
        /// Why, shortest form.
        reason: String,
    },
    /// 401/403.
    #[error("{0}")]
    Auth(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400/409/413/422/429.
    #[error("{0}")]
    Rejected(String),
    /// 503 or another server-side failure.
    #[error("{0}")]
    Unavailable(String),
    /// A task ended without success.
    #[error("{0}")]
    TaskFailed(String),
    /// A task is still queued or running.
    #[error("{0}")]
    NotFinished(String),
    /// A wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// Ctrl-C.
    #[error("{0}")]
    Interrupted(String),
    /// Everything else.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Other(_) => 1,
            CliError::TaskFailed(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Auth(_) => 5,
            CliError::Unreachable { .. } | CliError::Unavailable(_) => 6,
            CliError::Rejected(_) => 7,
            CliError::NotFinished(_) => 8,
            CliError::Timeout(_) => 124,
            CliError::Interrupted(_) => 130,
        }
    }

    /// An error for an HTTP error answer of `what` ("server" or "registry").
    pub fn from_status(what: &str, status: u16, code: &str, message: &str) -> CliError {
        let text = format!("{what}: {message} ({status} {code})");
        match status {
            401 => CliError::Auth(format!(
                "{text}; get a fresh token with `crpc token` (or `crpc login`), or check CRPC_TOKEN"
            )),
            403 => CliError::Auth(text),
            404 => CliError::NotFound(text),
            400 | 405 | 409 | 413 | 422 | 429 => CliError::Rejected(text),
            _ => CliError::Unavailable(text),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.to_string())
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(format!("{e:#}"))
    }
}

impl From<crpc_package::client::ClientError> for CliError {
    fn from(e: crpc_package::client::ClientError) -> Self {
        use crpc_package::client::ClientError as E;
        match e {
            E::Unreachable { url, reason } => CliError::Unreachable {
                what: "registry",
                url,
                reason: short_reason(&reason),
            },
            E::Status {
                status,
                code,
                message,
            } => CliError::from_status("registry", status, &code, &message),
            other => CliError::Other(other.to_string()),
        }
    }
}

/// The innermost cause of a reqwest error text ("connection refused" rather than three layers
/// of "error sending request for url").
pub fn short_reason(text: &str) -> String {
    let last = text.rsplit(": ").next().unwrap_or(text);
    match last.find(" (os error ") {
        Some(i) => last[..i].to_string(),
        None => last.to_string(),
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
