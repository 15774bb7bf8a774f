//! Processor benchmarks (issue: task processor): the WASM hot path measured in process, and the
//! package cache and idle footprint measured on the real binaries.
//!
//! `cargo run --release -p crpc-bench --bin processor-bench`
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use task_processor::gpu::Gpus;
use task_processor::handler::Progress;
use task_processor::runtime::wasm::{RunOutcome, WasmRuntime};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "crpc-bench-secret-not-for-production";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Warm `run` calls and fresh instances from `InstancePre`, µs (p50, p99).
fn wasm_hot_path() -> anyhow::Result<((f64, f64), (f64, f64))> {
    let dir = tempfile::tempdir()?;
    let pkg = root().join("examples/testkit");
    std::fs::copy(pkg.join("testkit.wasm"), dir.path().join("testkit.wasm"))
        .context("examples/testkit/testkit.wasm (run ./scripts/build-examples)")?;
    let rt = WasmRuntime::new(256, 2, Arc::new(Gpus::none()))?;
    rt.precompile(dir.path(), "testkit.wasm")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = Arc::new(Progress::detached());
    let cancel = CancellationToken::new();
    let mut inst = rt
        .instantiate(dir.path(), &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = uuid::Uuid::nil();
    let mut warm = Vec::new();
    for i in 0..22_000 {
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        match inst.run(id, "noop", &[], progress.clone(), cancel.clone(), deadline) {
            RunOutcome::Returned(Ok(_)) => {}
            RunOutcome::Returned(Err(e)) | RunOutcome::Trapped(e) => bail!("noop failed: {e}"),
        }
        if i >= 2000 {
            warm.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut fresh = Vec::new();
    for i in 0..2200 {
        let t = Instant::now();
        let inst = rt
            .instantiate(dir.path(), &[])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        drop(inst);
        if i >= 200 {
            fresh.push(us);
        }
    }
    Ok((
        (percentile(&mut warm, 0.5), percentile(&mut warm, 0.99)),
        (percentile(&mut fresh, 0.5), percentile(&mut fresh, 0.99)),
    ))
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join(name)
}

fn start(name: &str, args: &[&str], dir: &Path) -> anyhow::Result<(Service, String)> {
    let mut child = Command::new(bin(name))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("CRPC_LOG", "warn")
        .env("CRPC_JWT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("{name} printed {line:?}"))?
        .to_string();
    Ok((Service(child), url))
}

fn token(dir: &Path, role: &str) -> anyhow::Result<String> {
    let out = Command::new(bin("task-server"))
        .args(["token", "--role", role, "--sub", "bench", "--data-dir"])
        .arg(dir)
        .env("CRPC_JWT_SECRET", SECRET)
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn start_processor(
    server: &str,
    registry: &str,
    tok: &str,
    cache: &Path,
) -> anyhow::Result<Service> {
    let mut child = Command::new(bin("task-processor"))
        .args([
            "--server",
            server,
            "--registry",
            registry,
            "--token",
            tok,
            "--cpu-slots",
            "1",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .env("CRPC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    if !line.contains("pulling from") {
        bail!("task-processor printed {line:?}");
    }
    Ok(Service(child))
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn first_task_ms(http: &reqwest::Client, server: &str, user: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let r: Value = http
        .post(format!("{server}/user/submit_task"))
        .bearer_auth(user)
        .json(&json!({"package": "testkit", "function": "echo", "args": [1]}))
        .send()
        .await?
        .json()
        .await?;
    let id = r["id"].as_str().context("submit")?.to_string();
    let a: Value = http
        .get(format!("{server}/user/request_answer/{id}?wait=60"))
        .bearer_auth(user)
        .send()
        .await?
        .json()
        .await?;
    if a["state"] != "succeeded" {
        bail!("first task: {a}");
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// First task of an uncached package, then the same after a restart with a warm cache (ms), and
/// the idle processor's RSS (MiB).
async fn cache_and_footprint() -> anyhow::Result<(f64, f64, f64)> {
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "task-server",
            "-p",
            "registry",
            "-p",
            "task-processor",
        ])
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    let tmp = tempfile::tempdir()?;
    let (reg_dir, srv_dir, cache) = (
        tmp.path().join("reg"),
        tmp.path().join("srv"),
        tmp.path().join("cache"),
    );
    let (_reg, registry) = start("task-registry", &["--bind", "127.0.0.1:0"], &reg_dir)?;
    let (_srv, server) = start(
        "task-server",
        &["--bind", "127.0.0.1:0", "--registry", &registry],
        &srv_dir,
    )?;
    let (user, worker, publisher) = (
        token(&srv_dir, "user")?,
        token(&srv_dir, "worker")?,
        token(&srv_dir, "publisher")?,
    );
    let http = reqwest::Client::new();
    let archive = crpc_package::archive::build(&root().join("examples/testkit"))?;
    let r = http
        .put(format!("{registry}/v1/packages/testkit/1.0.0"))
        .bearer_auth(&publisher)
        .body(archive)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("publish: {}", r.text().await?);
    }
    let p = start_processor(&server, &registry, &worker, &cache)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(p.0.id());
    let cold = first_task_ms(&http, &server, &user).await?;
    drop(p);
    let _p = start_processor(&server, &registry, &worker, &cache)?;
    let warm = first_task_ms(&http, &server, &user).await?;
    Ok((cold, warm, idle))
}

fn main() -> anyhow::Result<()> {
    let status = Command::new(root().join("scripts/build-examples")).status()?;
    if !status.success() {
        bail!("scripts/build-examples failed");
    }
    let ((warm50, warm99), (fresh50, fresh99)) = wasm_hot_path()?;
    let rt = tokio::runtime::Runtime::new()?;
    let (cold, warm, idle) = rt.block_on(cache_and_footprint())?;
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!("| warm WASM call (testkit `noop`, host side), p50 / p99 µs | {warm50:.2} / {warm99:.2} | p50 ≤ 10 |");
    println!("| fresh instance from `InstancePre` (pooling) + `init`, p50 / p99 µs | {fresh50:.1} / {fresh99:.1} | p50 ≤ 50 |");
    println!(
        "| first task, uncached package (download, verify, unpack, precompile), ms | {cold:.1} | |"
    );
    println!("| first task after a processor restart, warm cache, ms | {warm:.1} | |");
    println!(
        "| warm / cold | {:.4} (1/{:.0}) | ≤ 1/100 |",
        warm / cold,
        cold / warm
    );
    println!("| idle processor RSS, MiB | {idle:.1} | ≤ 30 |");
    Ok(())
}
