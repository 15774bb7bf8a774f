//! Test harness shared by the crpc crates: start a real crpc binary on port 0 in its own data
//! directory, kill it (-9 or TERM), restart it on the same port; a small JSON-over-HTTP client.
#![forbid(unsafe_code)]

pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use crpc_service::auth::{mint, Secret};
use reqwest::StatusCode;
use serde_json::Value;
use task_api::Role;

/// A crpc binary built next to the running program (`target/<profile>/<name>`): a test (in
/// `target/<profile>/deps/`) or the bench (in `target/release/`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let mut dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target dir");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The bash block that follows `marker` in the workspace README (docs that are tested).
pub fn readme_block(marker: &str) -> String {
    readme_block_in(marker, "bash")
}

/// The first ```LANG block after `marker` in README.md.
pub fn readme_block_in(marker: &str, lang: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in README.md"));
    let rest = &readme[start..];
    let fence = format!("```{lang}\n");
    let open = rest.find(&fence).expect("code block") + fence.len();
    let close = rest[open..].find("\n```\n").expect("closing fence");
    rest[open..open + close + 1].to_string()
}

/// A running crpc service process with its own data directory.
pub struct Proc {
    child: Option<Child>,
    binary: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound port (kept across restarts).
    pub port: u16,
    /// The data directory (removed when the last holder drops it).
    pub dir: Arc<tempfile::TempDir>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    /// Starts `binary --bind 127.0.0.1:0 --data-dir <fresh temp dir> <extra…>`.
    pub fn start(binary: &Path, extra: &[&str]) -> Proc {
        Self::start_in(
            binary,
            Arc::new(tempfile::tempdir().expect("tempdir")),
            extra,
        )
    }

    /// Same, in a given data directory.
    pub fn start_in(binary: &Path, dir: Arc<tempfile::TempDir>, extra: &[&str]) -> Proc {
        Self::start_with(binary, dir, extra, &[]).expect("service starts")
    }

    /// Same, with more environment (it wins over the harness's: `CRPC_LOG`, a shared
    /// `CRPC_JWT_SECRET`); an error instead of a panic when it does not start.
    pub fn start_with(
        binary: &Path,
        dir: Arc<tempfile::TempDir>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Proc, String> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, port) = spawn(binary, dir.path(), 0, &extra, &env)?;
        Ok(Proc {
            child: Some(child),
            binary: binary.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            extra,
            env,
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// SIGTERM and wait; how long the exit took and the exit status.
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

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let mut last = None;
        for _ in 0..50 {
            match spawn(
                &self.binary,
                self.dir.path(),
                self.port,
                &self.extra,
                &self.env,
            ) {
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

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

/// Peak resident memory of a live process so far (VmHWM), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The first line a just-started child prints on stdout (empty after 30 s of silence).
fn first_stdout_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
}

fn spawn(
    binary: &Path,
    dir: &Path,
    port: u16,
    extra: &[String],
    env: &[(String, String)],
) -> Result<(Child, u16), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("service.log"))
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(binary)
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("CRPC_LOG", "info")
        .env_remove("CRPC_JWT_SECRET")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| e.to_string())?;
    let line = first_stdout_line(&mut child);
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|u| {
            u.strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"))
        })
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok());
    match port {
        Some(p) => Ok((child, p)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} did not print its address (got {line:?}); log: {}",
                binary.display(),
                std::fs::read_to_string(dir.join("service.log")).unwrap_or_default()
            ))
        }
    }
}

/// A running `task-processor` with its own package cache.
pub struct Worker {
    child: Option<Child>,
    /// The cache directory (kept across restarts).
    pub cache: Arc<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    binary: PathBuf,
}

impl Worker {
    /// Starts `task-processor --server S --registry R --token T --cache-dir <fresh> <extra…>` and
    /// waits until it pulls.
    pub fn start(server: &str, registry: &str, token: &str, extra: &[&str]) -> Worker {
        let mut args = vec!["--token", token];
        args.extend_from_slice(extra);
        Self::start_with_env(server, registry, &args, &[])
    }

    /// Starts `task-processor --server S --registry R <extra…>` with more environment (e.g. the
    /// token as CRPC_TOKEN).
    pub fn start_with_env(
        server: &str,
        registry: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let binary = sibling_binary("task-processor");
        Self::start_binary(&binary, server, registry, extra, env)
    }

    /// [`Worker::start_with_env`] with another build's `task-processor` (A/B benchmarks).
    pub fn start_binary(
        binary: &Path,
        server: &str,
        registry: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let mut args: Vec<String> = ["--server", server, "--registry", registry]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut w = Worker {
            child: None,
            cache: Arc::new(tempfile::tempdir().expect("tempdir")),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binary: binary.to_path_buf(),
        };
        w.restart();
        w
    }

    /// Starts it again with the same cache.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cache.path().join("processor.log"))
            .expect("log");
        let mut child = Command::new(&self.binary)
            .args(&self.args)
            .arg("--cache-dir")
            .arg(self.cache.path().join("cache"))
            .env("CRPC_LOG", "info,task_processor=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("task-processor starts");
        let line = first_stdout_line(&mut child);
        assert!(
            line.contains("pulling from"),
            "task-processor did not start (printed {line:?}); log: {}",
            self.log()
        );
        self.child = Some(child);
    }

    /// The exit status, once it exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for it to exit (after a signal sent by other means).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        c.wait().expect("wait")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.cache.path().join("processor.log")).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An example package directory (`examples/NAME`), checked to hold what
/// `scripts/build-examples` builds.
pub fn example_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let built = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.ends_with(".wasm") || n == "wheels" || n == "crpc_worker.py"
            })
        })
        .unwrap_or(false);
    assert!(
        built,
        "{} lacks its built component, wheel or SDK copy: run ./scripts/build-examples (./scripts/test does)",
        dir.display()
    );
    dir
}

/// A task server wired to a registry, with tokens for each role, for tests that run processors.
pub struct Cluster {
    /// The registry.
    pub registry: Proc,
    /// The server (started with `--registry`).
    pub server: Proc,
    /// Client with a `user` token (alice).
    pub user: Api,
    /// Registry client with a `publisher` token.
    pub publisher: Api,
    /// A `worker` token.
    pub worker_token: String,
    /// Alice's `user` token.
    pub user_token: String,
    /// The server's flags (for more replicas).
    server_args: Vec<String>,
    /// The server's extra environment (for more replicas).
    server_env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts both; `server_extra` are more server flags.
    pub fn start(server_extra: &[&str]) -> Cluster {
        Self::start_with_env(server_extra, &[])
    }

    /// Same, the server with more environment.
    pub fn start_with_env(server_extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let registry = Proc::start(&sibling_binary("task-registry"), &[]);
        let secret_file = registry.data_dir().join("jwt_secret");
        let mut args: Vec<String> = vec![
            "--registry".into(),
            registry.url.clone(),
            "--jwt-secret-file".into(),
            secret_file.to_str().unwrap().into(),
        ];
        args.extend(server_extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = args.iter().map(String::as_str).collect();
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let server = Proc::start_with(&sibling_binary("task-server"), dir, &flags, env)
            .expect("task-server starts");
        let secret = Secret::load(None, Some(&secret_file), registry.data_dir()).unwrap();
        let tok = |role, sub: &str| mint(&secret, sub, role, Duration::from_secs(3600)).unwrap();
        let user_token = tok(Role::User, "alice");
        Cluster {
            user: Api::new(&server.url, Some(user_token.clone())),
            publisher: Api::new(&registry.url, Some(tok(Role::Publisher, "ci"))),
            worker_token: tok(Role::Worker, "proc"),
            user_token,
            server_args: args,
            server_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            registry,
            server,
        }
    }

    /// Same, the server on a PostgreSQL database (so more replicas can share it).
    pub fn start_with_database(url: &str, server_extra: &[&str]) -> Cluster {
        let mut extra = vec!["--database-url", url];
        extra.extend_from_slice(server_extra);
        Self::start(&extra)
    }

    /// A token for `role` and `sub`, signed with the cluster's secret.
    pub fn mint(&self, role: Role, sub: &str) -> String {
        let dir = self.registry.data_dir();
        let secret = Secret::load(None, Some(&dir.join("jwt_secret")), dir).unwrap();
        mint(&secret, sub, role, Duration::from_secs(3600)).unwrap()
    }

    /// Another server replica with the same flags (and database, when PostgreSQL).
    pub fn replica(&self) -> Proc {
        let flags: Vec<&str> = self.server_args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .server_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Proc::start_with(&sibling_binary("task-server"), dir, &flags, &env)
            .expect("task-server replica starts")
    }

    /// Publishes `examples/NAME`, optionally under another version.
    pub async fn publish(&self, name: &str, version: Option<&str>) {
        let src = example_dir(name);
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&src, tmp.path());
        let manifest = tmp.path().join("crpc.toml");
        let mut text = std::fs::read_to_string(&manifest).unwrap();
        if let Some(v) = version {
            text = text.replacen("version = \"1.0.0\"", &format!("version = \"{v}\""), 1);
            std::fs::write(&manifest, &text).unwrap();
        }
        let v = version.unwrap_or("1.0.0");
        let archive = crpc_package::archive::build(tmp.path()).unwrap();
        let (st, b) = self
            .publisher
            .put_bytes(&format!("/v1/packages/{name}/{v}"), archive, &[])
            .await;
        assert_eq!(st, 201, "publish {name}@{v}: {b}");
    }

    /// Starts a processor against this cluster.
    pub fn processor(&self, extra: &[&str]) -> Worker {
        self.processor_with_env(extra, &[])
    }

    /// [`Cluster::processor`] with more environment.
    pub fn processor_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut args = vec!["--token", self.worker_token.as_str()];
        args.extend_from_slice(extra);
        Worker::start_with_env(&self.server.url, &self.registry.url, &args, env)
    }

    /// Submits as alice; the task id.
    pub async fn submit(&self, body: Value) -> String {
        let (st, v) = self.user.post("/user/submit_task", &body).await;
        assert_eq!(st, 201, "{body} → {v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// `request_answer` without waiting.
    pub async fn answer(&self, id: &str) -> Value {
        self.user.get(&format!("/user/request_answer/{id}")).await.1
    }

    /// Waits (long-poll) until the task is finished.
    pub async fn wait(&self, id: &str, limit: Duration) -> Value {
        let until = Instant::now() + limit;
        loop {
            let (_, v) = self
                .user
                .get(&format!("/user/request_answer/{id}?wait=5"))
                .await;
            if matches!(
                v["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return v;
            }
            assert!(Instant::now() < until, "task {id} not finished: {v}");
        }
    }
}

/// Copies a directory tree (without venvs and caches).
pub fn copy_dir(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == ".venv" || e.file_name() == "__pycache__" {
                continue;
            }
            std::fs::create_dir_all(&to).unwrap();
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// JSON-over-HTTP client bound to a base URL and an optional bearer token (crpc's one client,
/// with the answer returned whatever its status: tests look at both).
#[derive(Clone)]
pub struct Api {
    http: crpc_http::Client,
}

impl Api {
    /// A client for `url`.
    pub fn new(url: &str, token: Option<String>) -> Api {
        let opts = crpc_http::Options {
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        Api {
            http: crpc_http::Client::new(url, token, opts).expect("client"),
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            http: self.http.with_token(Some(token.to_string())),
        }
    }

    /// A request with the token set.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, path)
    }

    /// Sends; status + JSON body (Null when the body is not JSON).
    pub async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value), crpc_http::Error> {
        let (status, text) = self.http.raw(rb).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::GET, path))
            .await
            .expect("GET")
    }

    /// `POST /user/submit_batch {"tasks": tasks}`, which must answer 201; the task ids.
    pub async fn submit_batch(&self, tasks: Vec<Value>) -> Vec<String> {
        let (st, v) = self
            .post("/user/submit_batch", &serde_json::json!({ "tasks": tasks }))
            .await;
        assert_eq!(st, 201, "{v}");
        let ids = v["ids"].as_array().expect("ids");
        ids.iter()
            .map(|i| i.as_str().expect("id").to_string())
            .collect()
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
            .expect("POST")
    }

    /// POST JSON, errors (server down) returned.
    pub async fn try_post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), crpc_http::Error> {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
    }

    /// POST raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.req(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
        .expect("POST raw")
    }

    /// PUT raw bytes with headers.
    pub async fn put_bytes(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut rb = self.req(reqwest::Method::PUT, path).body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        self.send(rb).await.expect("PUT")
    }

    /// Any method with a JSON body.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.send(self.req(method, path).json(body))
            .await
            .expect("request")
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.req(reqwest::Method::DELETE, path))
            .await
            .expect("DELETE")
    }
}

/// Asserts the one JSON error body with a given status and code.
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    assert_eq!(got.1["success"], Value::Bool(false), "body: {}", got.1);
    assert_eq!(
        got.1["error"]["code"],
        Value::String(code.into()),
        "body: {}",
        got.1
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {}",
        got.1
    );
}

/// A fresh PostgreSQL database per test, dropped afterwards.
pub struct TestDatabase {
    admin_url: String,
    url: String,
    name: String,
}

impl TestDatabase {
    /// `None` (test skipped) without `CRPC_TEST_POSTGRES_URL`, unless `CI=true`: then a missing
    /// PostgreSQL fails the run.
    pub async fn new() -> Option<Self> {
        let Ok(admin_url) = std::env::var("CRPC_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CRPC_TEST_POSTGRES_URL is required under CI=true (PostgreSQL tests must run)"
            );
            eprintln!("skipped: set CRPC_TEST_POSTGRES_URL to run the PostgreSQL store tests");
            return None;
        };
        let name = format!("crpc_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to CRPC_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = admin_url.split('?').next().unwrap();
        let url = format!(
            "{}/{name}",
            &base[..base.rfind('/').expect("database in URL")]
        );
        Some(TestDatabase {
            admin_url,
            url,
            name,
        })
    }
}

impl TestDatabase {
    /// URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running `crpc dev` (server + registry + processor in one process) in a fresh directory,
/// with the `export` lines it printed, and helpers to run the `crpc` CLI against it.
pub struct Dev {
    child: Option<Child>,
    /// Working directory of the CLI commands; holds `data/`, `config.toml` and `dev.log`.
    pub dir: tempfile::TempDir,
    /// `CRPC_SERVER`, `CRPC_REGISTRY`, `CRPC_TOKEN` (and `PATH` when printed) as exported.
    pub exports: Vec<(String, String)>,
    /// From spawning `crpc dev` to its export lines.
    pub ready_after: Duration,
}

impl Dev {
    /// Starts `crpc dev` on free ports with `--cpu-slots 2` and `extra`, and reads its exports.
    pub fn start(extra: &[&str]) -> Dev {
        let mut args = vec!["--cpu-slots", "2"];
        args.extend_from_slice(extra);
        Dev::start_with_args(&args)
    }

    /// Starts `crpc dev` on free ports with only `args` besides, as a user would (default slots).
    pub fn start_with_args(extra: &[&str]) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("dev.log")).expect("log");
        let started = Instant::now();
        let mut child = Command::new(sibling_binary("crpc"))
            .args([
                "dev",
                "--bind",
                "127.0.0.1:0",
                "--registry-bind",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .current_dir(dir.path())
            .env("CRPC_CONFIG", dir.path().join("config.toml"))
            .env("CRPC_LOG", "info")
            .env_remove("CRPC_JWT_SECRET")
            .env_remove("CRPC_SERVER")
            .env_remove("CRPC_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("crpc dev starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut exports = Vec::new();
        while !exports
            .iter()
            .any(|(k, _): &(String, String)| k == "CRPC_TOKEN")
        {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "crpc dev printed no exports; log: {}",
                        std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default()
                    )
                });
            let (k, v) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|kv| kv.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {line:?}"));
            exports.push((k.to_string(), v.trim_matches('"').to_string()));
        }
        Dev {
            child: Some(child),
            dir,
            exports,
            ready_after: started.elapsed(),
        }
    }

    /// An exported value.
    pub fn export(&self, key: &str) -> &str {
        self.exports
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no export {key}"))
    }

    /// The directory of the `crpc` and `task-processor` binaries under test.
    pub fn bin_dir() -> PathBuf {
        sibling_binary("crpc")
            .parent()
            .expect("bin dir")
            .to_path_buf()
    }

    /// A command with the exports in its environment (the binaries' dir first on `PATH`), run in
    /// the dev directory with its own config file.
    pub fn command(&self, program: &str) -> Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut c = Command::new(program);
        c.current_dir(self.dir.path())
            .env("PATH", format!("{}:{path}", Self::bin_dir().display()))
            .env("CRPC_CONFIG", self.dir.path().join("config.toml"))
            .env_remove("CRPC_JWT_SECRET")
            .env_remove("CRPC_DATA_DIR");
        for (k, v) in &self.exports {
            if k != "PATH" {
                c.env(k, v);
            }
        }
        c
    }

    /// `crpc ARGS…` to completion.
    pub fn crpc(&self, args: &[&str]) -> std::process::Output {
        self.command(&sibling_binary("crpc").display().to_string())
            .args(args)
            .output()
            .expect("crpc runs")
    }

    /// `bash -euo pipefail -c SCRIPT` to completion.
    pub fn bash(&self, script: &str) -> std::process::Output {
        self.command("bash")
            .args(["-euo", "pipefail", "-c", script])
            .output()
            .expect("bash runs")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default()
    }

    /// SIGINT (Ctrl-C) and the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status()
            .expect("kill -INT");
        c.wait().expect("wait")
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child started in its own process group (`process_group(0)`): `terminate` sends SIGTERM to
/// the whole group and waits; dropping it (a failed assert, say) SIGKILLs the group, so no
/// process outlives its test.
pub struct ProcessGroup(Option<std::process::Child>);

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(Some(cmd.process_group(0).spawn().expect("spawn")))
    }

    fn signal(pid: u32, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, "--", &format!("-{pid}")])
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// SIGTERM to the group, then the leader's exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().expect("running");
        Self::signal(c.id(), "TERM");
        c.wait().expect("wait")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            Self::signal(c.id(), "KILL");
            let _ = c.wait();
        }
    }
}
