//! What both benchmark drivers share: the release build, the example components, starting the
//! services and processors, publishing the testkit package, reading RSS.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
pub use crpc_tests::{Proc, Worker};

/// One JWT secret for every service of a run (they must accept each other's tokens).
pub const SECRET: &str = "crpc-bench-secret-not-for-production";

/// The middle of `v` (the mean of the two middle values for an even count): what the benches
/// report over their rounds.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

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

/// What every service of a run gets: quiet logs and the run's one secret.
const SERVICE_ENV: [(&str, &str); 2] = [("CRPC_LOG", "warn"), ("CRPC_JWT_SECRET", SECRET)];

/// Starts a service binary (`task-server`, `task-registry`) on a free port with a fresh data
/// directory, through the test harness's process handling (killed when dropped).
pub fn start_service(binary: &Path, extra: &[&str]) -> anyhow::Result<Proc> {
    let dir = tempfile::Builder::new().prefix("crpc-bench-").tempdir()?;
    Proc::start_with(binary, Arc::new(dir), extra, &SERVICE_ENV).map_err(anyhow::Error::msg)
}

/// A token for `role` (subject `bench`) signed with the run's secret.
pub fn token(server_bin: &Path, data_dir: &Path, role: &str) -> anyhow::Result<String> {
    token_for(server_bin, data_dir, role, "bench")
}

/// A token for `role` and subject `sub` signed with the run's secret.
pub fn token_for(
    server_bin: &Path,
    data_dir: &Path,
    role: &str,
    sub: &str,
) -> anyhow::Result<String> {
    let out = Command::new(server_bin)
        .args(["token", "--role", role, "--sub", sub, "--data-dir"])
        .arg(data_dir)
        .env("CRPC_JWT_SECRET", SECRET)
        .output()?;
    if !out.status.success() {
        bail!(
            "task-server token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Starts a `task-processor` (the release build beside this driver) with `slots` CPU slots and
/// its own cache; returns once it is pulling.
pub fn start_processor(
    server: &str,
    registry: &str,
    token: &str,
    slots: usize,
    worker_id: Option<&str>,
) -> Worker {
    let slots = slots.to_string();
    let mut extra = vec!["--token", token, "--cpu-slots", &slots];
    if let Some(id) = worker_id {
        extra.extend(["--worker-id", id]);
    }
    Worker::start_with_env(server, registry, &extra, &[("CRPC_LOG", "warn")])
}

/// Publishes `examples/testkit` as testkit 1.0.0.
pub async fn publish_testkit(registry: &str, publisher_token: &str) -> anyhow::Result<()> {
    publish_testkit_as(registry, publisher_token, |m| m).await
}

/// Publishes `examples/testkit` as testkit 1.0.0 with its manifest passed through `edit` (an
/// older build's processor may not know a newer manifest key).
pub async fn publish_testkit_as(
    registry: &str,
    publisher_token: &str,
    edit: impl Fn(String) -> String,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for f in ["crpc.toml", "testkit.wasm"] {
        std::fs::copy(
            repo_root().join("examples/testkit").join(f),
            dir.path().join(f),
        )
        .context("examples/testkit (run ./scripts/build-examples)")?;
    }
    let manifest = dir.path().join("crpc.toml");
    std::fs::write(&manifest, edit(std::fs::read_to_string(&manifest)?))?;
    let archive = crpc_package::archive::build(dir.path())?;
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

/// A registry and one SQLite task server started from the release build, testkit published,
/// with a user and a worker token.
pub struct Stack {
    /// The release binaries' directory.
    pub bin: PathBuf,
    /// The registry.
    pub registry: Proc,
    /// The task server.
    pub server: Proc,
    /// A `user` token.
    pub user: String,
    /// A `worker` token.
    pub worker: String,
}

impl Stack {
    /// Builds what is missing, starts the services and publishes `examples/testkit`.
    pub fn start(rt: &tokio::runtime::Runtime) -> anyhow::Result<Stack> {
        let bin = build_release(&["task-server", "registry", "task-processor"])?;
        build_examples()?;
        Self::start_from(rt, bin, |m| m)
    }

    /// The same from the binaries in `bin` (another build's server and processor; this
    /// build's registry), testkit's manifest passed through `edit`.
    pub fn start_from(
        rt: &tokio::runtime::Runtime,
        bin: PathBuf,
        edit: impl Fn(String) -> String,
    ) -> anyhow::Result<Stack> {
        let own = std::env::current_exe()?;
        let own = own.parent().context("target dir")?;
        let registry = start_service(&own.join("task-registry"), &[])?;
        let server = start_service(&bin.join("task-server"), &["--registry", &registry.url])?;
        let server_bin = bin.join("task-server");
        let role = |r: &str| token(&server_bin, server.data_dir(), r);
        let (user, worker, publisher) = (role("user")?, role("worker")?, role("publisher")?);
        rt.block_on(publish_testkit_as(&registry.url, &publisher, edit))?;
        Ok(Stack {
            bin,
            registry,
            server,
            user,
            worker,
        })
    }

    /// A processor with `slots` CPU slots pulling from the server.
    pub fn processor(&self, slots: usize, worker_id: &str) -> Worker {
        let slots = slots.to_string();
        let extra = [
            "--token",
            &self.worker,
            "--cpu-slots",
            &slots,
            "--worker-id",
            worker_id,
        ];
        Worker::start_binary(
            &self.bin.join("task-processor"),
            &self.server.url,
            &self.registry.url,
            &extra,
            &[("CRPC_LOG", "warn")],
        )
    }
}
