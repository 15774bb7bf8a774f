//! Starting, killing and restarting the real server binary; a tiny HTTP client; simulated workers.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use task_api::Role;
use task_server::auth::{mint, Secret};

/// A running `task-server` process with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
    extra: Vec<String>,
}

impl Server {
    /// Starts a server on port 0 in a fresh temp dir with extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, port) = spawn(dir.path(), 0, &extra);
        Server {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            extra,
        }
    }

    /// Path of the data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A token signed with this server's secret.
    pub fn token(&self, role: Role, sub: &str) -> String {
        let secret = Secret::load(None, None, self.data_dir()).expect("secret");
        mint(&secret, sub, role, Duration::from_secs(3600)).expect("mint")
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// SIGTERM and wait; returns how long the exit took and the exit status.
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let mut c = self.child.take().expect("running");
        let t = std::time::Instant::now();
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        let status = c.wait().expect("wait");
        (t.elapsed(), status)
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let mut last = None;
        for _ in 0..50 {
            match try_spawn(self.data_dir(), self.port, &self.extra) {
                Ok((child, _)) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!("restart failed: {last:?}");
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_task-server"))
}

fn spawn(dir: &Path, port: u16, extra: &[String]) -> (Child, u16) {
    try_spawn(dir, port, extra).expect("server starts")
}

fn try_spawn(dir: &Path, port: u16, extra: &[String]) -> Result<(Child, u16), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(binary())
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--http-workers", "2"])
        .args(extra)
        .env("CRPC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok());
    match port {
        Some(p) => Ok((child, p)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "server did not print its address (got {line:?}); log: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            ))
        }
    }
}

/// HTTP client bound to a server URL and a token.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

impl Api {
    pub fn new(url: &str, token: Option<String>) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            url: url.to_string(),
            token,
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.url, path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and returns status + JSON body (Null when the body is not JSON).
    pub async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let resp = rb.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::GET, path))
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
            .expect("POST")
    }

    pub async fn try_post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.req(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
        .expect("POST raw")
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::DELETE, path))
            .await
            .expect("DELETE")
    }

    /// Submits one task; returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let (st, v) = self.post("/user/submit_task", &body).await;
        assert!(st.is_success(), "submit: {st} {v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Leases up to `n` tasks, waiting up to `wait` seconds.
    pub async fn lease(&self, worker: &str, n: u32, wait: f64) -> Vec<Value> {
        let (st, v) = self
            .post(
                "/worker/request_task",
                &json!({"worker_id": worker, "max_tasks": n, "wait_s": wait}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "request_task: {v}");
        v["leases"].as_array().cloned().unwrap_or_default()
    }

    /// Answers a lease.
    pub async fn answer(&self, lease: &Value, answer: Value) -> (StatusCode, Value) {
        self.post(
            "/worker/submit_answer",
            &json!({"id": lease["id"], "lease_epoch": lease["lease_epoch"], "answer": answer}),
        )
        .await
    }

    /// Waits for a task to finish; returns the answer body.
    pub async fn wait_answer(&self, id: &str, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (st, v) = self.get(&format!("/user/request_answer/{id}?wait=5")).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            let state = v["state"].as_str().unwrap_or("");
            if ["succeeded", "failed", "cancelled"].contains(&state)
                || std::time::Instant::now() > deadline
            {
                return v;
            }
        }
    }
}

/// Asserts the one JSON error body with a given status and code.
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    assert_eq!(got.1["success"], json!(false), "body: {}", got.1);
    assert_eq!(got.1["error"]["code"], json!(code), "body: {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {}",
        got.1
    );
}
