//! What both benchmark drivers share: the release build, the example components, starting the
//! services and processors, publishing the testkit package, reading RSS.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// One JWT secret for every service of a run (they must accept each other's tokens).
pub const SECRET: &str = "crpc-bench-secret-not-for-production";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// `cargo build --release` of `packages`; returns the directory of the binaries (this
/// driver's own, as `cargo run --release -p crpc-bench` builds it).
pub fn build_release(packages: &[&str]) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--quiet"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .current_dir(repo_root())
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("cargo build --release of {packages:?} failed");
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("target dir")?.to_path_buf())
}

/// `scripts/build-examples` (its output goes to stderr: stdout is the table).
pub fn build_examples() -> anyhow::Result<()> {
    let status = Command::new(repo_root().join("scripts/build-examples"))
        .stdout(std::io::stderr())
        .status()?;
    if !status.success() {
        bail!("scripts/build-examples failed");
    }
    Ok(())
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address a service prints on its first stdout line (`listening on URL`).
pub fn read_listening(child: &mut Child) -> anyhow::Result<String> {
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    Ok(line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("expected `listening on URL`, got {line:?}"))?
        .to_string())
}

/// Starts a `task-processor` with `slots` CPU slots; returns once it is pulling.
pub fn start_processor(
    bin_dir: &Path,
    server: &str,
    registry: &str,
    token: &str,
    slots: usize,
    worker_id: Option<&str>,
    cache: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin_dir.join("task-processor"));
    cmd.args(["--server", server, "--registry", registry, "--token", token])
        .args(["--cpu-slots", &slots.to_string()])
        .arg("--cache-dir")
        .arg(cache);
    if let Some(id) = worker_id {
        cmd.args(["--worker-id", id]);
    }
    let mut child = cmd
        .env("CRPC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start task-processor")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if !line.contains("pulling from") {
        bail!("task-processor printed {line:?}");
    }
    Ok(Proc(child))
}

/// Publishes `examples/testkit` as testkit 1.0.0.
pub async fn publish_testkit(registry: &str, publisher_token: &str) -> anyhow::Result<()> {
    let archive = crpc_package::archive::build(&repo_root().join("examples/testkit"))
        .context("examples/testkit (run ./scripts/build-examples)")?;
    crpc_package::client::RegistryClient::new(registry, Some(publisher_token.to_string()))
        .publish("testkit", "1.0.0", archive, None)
        .await
        .context("publish testkit")?;
    Ok(())
}

/// RSS now and its peak, MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
