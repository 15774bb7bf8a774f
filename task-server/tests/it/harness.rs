//! The task server under test: the shared harness (`crpc-tests`) plus task-server helpers.
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use task_api::Role;
use task_server::auth::{mint, Secret};

pub use crpc_tests::{assert_error, Proc};

/// A running `task-server`.
pub struct Server(Proc);

impl Deref for Server {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.0
    }
}

impl Server {
    /// Starts a server on port 0 in a fresh temp dir with extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let mut args = vec!["--http-workers", "2"];
        args.extend_from_slice(extra);
        Server(Proc::start(&binary(), &args))
    }

    /// A token signed with this server's secret.
    pub fn token(&self, role: Role, sub: &str) -> String {
        let secret = Secret::load(None, None, self.data_dir()).expect("secret");
        mint(&secret, sub, role, Duration::from_secs(3600)).expect("mint")
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_task-server"))
}

/// The shared client plus the task-server calls the tests repeat.
#[derive(Clone)]
pub struct Api(pub crpc_tests::Api);

impl Deref for Api {
    type Target = crpc_tests::Api;
    fn deref(&self) -> &crpc_tests::Api {
        &self.0
    }
}

impl Api {
    pub fn new(url: &str, token: Option<String>) -> Api {
        Api(crpc_tests::Api::new(url, token))
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api(self.0.with_token(token))
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
