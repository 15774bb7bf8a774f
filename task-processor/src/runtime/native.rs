//! Native packages: the manifest's `command`, started once per slot in the unpacked package,
//! speaking JSON lines on stdin/stdout (see `sdk/python/crpc_worker.py` and ARCHITECTURE.md).
//! The child runs under [`NativePolicy`] (cleared environment, private scratch, Landlock) through
//! the sandbox launcher; cancel or timeout kills the whole process tree, and the next task gets a
//! fresh child. `setup` runs once per version under the same policy (the package directory
//! writable), with a time limit and its log kept.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use super::lines::{CappedLines, Line};
use super::sandbox::{kill_tree, NativePolicy, Scratch};
use crate::handler::{Progress, TaskContext, TaskFailure};
use task_api::TaskPayload;

/// The setup log inside an installed package.
pub const SETUP_LOG: &str = ".crpc-cache/setup.log";

/// Longest protocol line accepted from a child (answers included), bytes: the server takes
/// answers of at most 2 MiB by default (`--max-body-bytes`).
const MAX_LINE: usize = 16 << 20;
/// Longest stderr line kept for error messages, bytes (longer ones are skipped).
const MAX_STDERR_LINE: usize = 8 << 10;

/// Runs the manifest's `setup` commands (`sh -c`, in order, in `dir`) under `policy` with `dir`
/// writable, appending their output to `.crpc-cache/setup.log`. Only the policy's environment
/// passes through: name `PIP_INDEX_URL` with `--pass-env` for a private package index.
pub async fn run_setup(
    dir: &Path,
    commands: &[String],
    limit: Duration,
    policy: &NativePolicy,
) -> Result<(), TaskFailure> {
    let log_path = dir.join(SETUP_LOG);
    std::fs::create_dir_all(log_path.parent().unwrap()).map_err(|e| {
        TaskFailure::retryable(format!("cannot create {}: {e}", log_path.display()))
    })?;
    let deadline = Instant::now() + limit;
    for cmd in commands {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                TaskFailure::retryable(format!("cannot open {}: {e}", log_path.display()))
            })?;
        let mut header = log.try_clone().expect("file handle");
        use std::io::Write;
        let _ = writeln!(header, "$ {cmd}");
        let sh = [String::from("-c"), cmd.clone()];
        let (mut command, _scratch) = policy
            .command(Path::new("sh"), &sh, dir, true, &[])
            .map_err(|e| TaskFailure::retryable(format!("cannot make a scratch dir: {e}")))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("file handle"))
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TaskFailure::fatal(format!("setup `{cmd}` did not start: {e}")))?;
        let status = match tokio::time::timeout_at(deadline.into(), child.wait()).await {
            Ok(s) => s.map_err(|e| TaskFailure::retryable(format!("setup `{cmd}`: {e}")))?,
            Err(_) => {
                kill_child(&child);
                let _ = child.wait().await;
                return Err(TaskFailure::retryable(format!(
                    "setup `{cmd}` ran past the {}s setup limit (--setup-timeout); log: {}",
                    limit.as_secs(),
                    log_path.display()
                )));
            }
        };
        if !status.success() {
            return Err(TaskFailure::fatal(format!(
                "setup `{cmd}` failed ({status}): {}; full log: {}",
                tail_of_file(&log_path, 5),
                log_path.display()
            )));
        }
    }
    Ok(())
}

fn tail_of_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Kills the launcher and everything below it.
fn kill_child(child: &Child) {
    if let Some(pid) = child.id() {
        kill_tree(pid);
    }
}

/// A started program of one package version on one slot.
pub struct NativeChild {
    child: Child,
    stdin: ChildStdin,
    stdout: CappedLines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    program: String,
    /// Its private scratch directory (HOME, TMPDIR, task outputs).
    scratch: Scratch,
}

impl Drop for NativeChild {
    fn drop(&mut self) {
        kill_child(&self.child);
    }
}

impl NativeChild {
    /// Starts `command` in `dir` and waits for its `ready` (after `init`).
    pub async fn start(
        dir: &Path,
        command: &[String],
        cuda_visible_devices: &str,
        slot: usize,
        policy: &NativePolicy,
        init: &Value,
    ) -> Result<NativeChild, TaskFailure> {
        let program = resolve_program(dir, &command[0]);
        let env = [
            ("CUDA_VISIBLE_DEVICES", cuda_visible_devices.to_string()),
            ("CRPC_SLOT", slot.to_string()),
            ("PYTHONUNBUFFERED", "1".to_string()),
            ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        ];
        let (mut cmd, scratch) = policy
            .command(&program, &command[1..], dir, false, &env)
            .map_err(|e| TaskFailure::retryable(format!("cannot make a scratch dir: {e}")))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| TaskFailure::fatal(format!("cannot start {}: {e}", program.display())))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = CappedLines::new(
            BufReader::new(child.stdout.take().expect("piped")),
            MAX_LINE,
        );
        let stderr = child.stderr.take().expect("piped");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let name = command.join(" ");
        tokio::spawn(async move {
            let mut lines = CappedLines::new(BufReader::new(stderr), MAX_STDERR_LINE);
            while let Ok(Some(line)) = lines.next_line().await {
                let line = match line {
                    Line::Text(t) => t,
                    Line::TooLong => {
                        format!("(a stderr line over {MAX_STDERR_LINE} bytes, skipped)")
                    }
                };
                tracing::debug!(program = %name, "stderr: {line}");
                let mut t = tail.lock().unwrap();
                if t.len() == 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let mut me = NativeChild {
            child,
            stdin,
            stdout,
            stderr_tail,
            program: command.join(" "),
            scratch,
        };
        me.send(&json!({"op": "init", "config": init})).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let msg = me.recv(deadline, None).await?;
            match msg.get("op").and_then(Value::as_str) {
                Some("ready") => return Ok(me),
                Some("error") => {
                    return Err(TaskFailure::fatal(format!(
                        "{} failed to start: {}",
                        me.program,
                        msg.get("message").and_then(Value::as_str).unwrap_or("?")
                    )))
                }
                _ => me.side_message(&msg, None),
            }
        }
    }

    async fn send(&mut self, msg: &Value) -> Result<(), TaskFailure> {
        let mut line = serde_json::to_vec(msg).expect("JSON");
        line.push(b'\n');
        if let Err(e) = self.stdin.write_all(&line).await {
            return Err(self.died(&format!("write failed: {e}")).await);
        }
        if let Err(e) = self.stdin.flush().await {
            return Err(self.died(&format!("write failed: {e}")).await);
        }
        Ok(())
    }

    async fn died(&mut self, why: &str) -> TaskFailure {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            _ => "still running".into(),
        };
        let tail: Vec<String> = self.stderr_tail.lock().unwrap().iter().cloned().collect();
        let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
        TaskFailure::retryable(format!(
            "{} stopped ({why}; {status}); last stderr: {tail}",
            self.program
        ))
    }

    /// Next protocol message before `deadline`.
    async fn recv(
        &mut self,
        deadline: Instant,
        cancel: Option<&CancellationToken>,
    ) -> Result<Value, TaskFailure> {
        let next = self.stdout.next_line();
        let cancelled = async {
            match cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = next => match line {
                Ok(Some(Line::Text(line))) => serde_json::from_str(&line).map_err(|e| {
                    TaskFailure::fatal(format!("{} wrote a line that is not protocol JSON ({e}): {}", self.program, line.chars().take(200).collect::<String>()))
                }),
                Ok(Some(Line::TooLong)) => {
                    kill_child(&self.child);
                    Err(TaskFailure::fatal(format!("{} wrote a line over {} MiB; it was stopped", self.program, MAX_LINE >> 20)))
                }
                Ok(None) => Err(self.died("stdout closed").await),
                Err(e) => Err(self.died(&format!("read failed: {e}")).await),
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                kill_child(&self.child);
                Err(TaskFailure::timeout("the task ran past its time limit; its process tree was killed"))
            }
            _ = cancelled => {
                kill_child(&self.child);
                Err(TaskFailure::cancelled("cancelled; its process tree was killed"))
            }
        }
    }

    fn side_message(&self, msg: &Value, progress: Option<&Progress>) {
        match msg.get("op").and_then(Value::as_str) {
            Some("progress") => {
                if let (Some(p), Some(pct)) = (progress, msg.get("pct").and_then(Value::as_f64)) {
                    p.set(pct);
                }
            }
            Some("log") => {
                let text = msg.get("message").and_then(Value::as_str).unwrap_or("");
                match msg.get("level").and_then(Value::as_str) {
                    Some("error") => tracing::error!(program = %self.program, "{text}"),
                    Some("warn") | Some("warning") => {
                        tracing::warn!(program = %self.program, "{text}")
                    }
                    Some("debug") => tracing::debug!(program = %self.program, "{text}"),
                    _ => tracing::info!(program = %self.program, "{text}"),
                }
            }
            other => tracing::warn!(program = %self.program, "ignored protocol message {other:?}"),
        }
    }

    /// Task `id`'s output directory, inside the program's scratch (it may write there): the
    /// files its answer names as `{"$output": NAME}` are read from here. The caller removes it.
    pub fn output_dir(&self, id: uuid::Uuid) -> std::path::PathBuf {
        self.scratch.path().join("out").join(id.to_string())
    }

    /// Runs one task. On `Err`, the child is unusable when [`NativeChild::is_alive`] says so.
    pub async fn run(
        &mut self,
        task: &TaskPayload,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let (id, function, args, kwargs) = (ctx.id, &task.function, &task.args, &task.kwargs);
        let (progress, cancel, deadline) = (&*ctx.progress, &ctx.cancel, ctx.deadline);
        let id_s = id.to_string();
        let out = self.output_dir(id);
        std::fs::create_dir_all(&out)
            .map_err(|e| TaskFailure::retryable(format!("cannot make an output dir: {e}")))?;
        let output_dir = out.display().to_string();
        self.send(&json!({
            "op": "run", "id": id_s, "function": function, "args": args, "kwargs": kwargs,
            "output_dir": output_dir,
        }))
        .await?;
        loop {
            let msg = self.recv(deadline, Some(cancel)).await?;
            let same = msg.get("id").and_then(Value::as_str) == Some(id_s.as_str());
            match msg.get("op").and_then(Value::as_str) {
                Some("result") if same => return Ok(msg.get("ok").cloned().unwrap_or(Value::Null)),
                Some("error") if same => {
                    let message = msg
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("failed")
                        .to_string();
                    return Err(match msg.get("kind").and_then(Value::as_str) {
                        Some("retryable") => TaskFailure::retryable(message),
                        _ => TaskFailure::fatal(message),
                    });
                }
                _ => self.side_message(&msg, Some(progress)),
            }
        }
    }

    /// Sends a broadcast to the child.
    pub async fn update(&mut self, payload: &Value) -> Result<(), TaskFailure> {
        self.send(&json!({"op": "update", "payload": payload}))
            .await
    }

    /// Whether the child still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The child's process id (its process group id too).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// `.venv/bin/python` is relative to the package, `python3` is looked up on PATH.
fn resolve_program(dir: &Path, program: &str) -> PathBuf {
    let p = Path::new(program);
    if p.is_absolute() || !program.contains('/') {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}
