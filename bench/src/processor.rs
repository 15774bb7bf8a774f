//! Processor benchmarks (issue: task processor): the WASM hot path measured in process, and the
//! package cache and idle footprint measured on the real binaries.
//!
//! `cargo run --release -p crpc-bench --bin processor-bench`
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crpc_bench::{
    build_examples, build_release, publish_testkit, repo_root, rss_mib, start_processor,
    start_service, token,
};
use serde_json::json;
use task_api::{AnswerResponse, SubmitResponse, TaskState};
use task_processor::compute::Compute;
use task_processor::gpu::Gpus;
use task_processor::handler::Progress;
use task_processor::runtime::wasm::{Call, RunOutcome, WasmRuntime};
use tokio_util::sync::CancellationToken;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Warm `run` calls and fresh instances from `InstancePre`, µs (p50, p99).
fn wasm_hot_path() -> anyhow::Result<((f64, f64), (f64, f64))> {
    let dir = tempfile::tempdir()?;
    let pkg = repo_root().join("examples/testkit");
    std::fs::copy(pkg.join("testkit.wasm"), dir.path().join("testkit.wasm"))
        .context("examples/testkit/testkit.wasm (run ./scripts/build-examples)")?;
    let rt = WasmRuntime::new(256, 2, Arc::new(Gpus::none()), Arc::new(Compute::none()))?;
    rt.precompile(dir.path(), "testkit.wasm")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = Arc::new(Progress::detached());
    let cancel = CancellationToken::new();
    let mut inst = rt
        .instantiate(dir.path(), &[], "{}")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = uuid::Uuid::nil();
    let mut warm = Vec::new();
    for i in 0..22_000 {
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let call = Call {
            task: id,
            function: "noop",
            args: &[],
            progress: progress.clone(),
            cancel: cancel.clone(),
            deadline,
            files: None,
        };
        match inst.run(call) {
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
            .instantiate(dir.path(), &[], "{}")
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

async fn first_task_ms(server: &str, user: &str) -> anyhow::Result<f64> {
    let opts = crpc_http::Options {
        timeout: Some(Duration::from_secs(90)),
        ..Default::default()
    };
    let http = crpc_http::Client::new(server, Some(user.to_string()), opts)?;
    let t = Instant::now();
    let task = json!({"package": "testkit", "function": "echo", "args": [1]});
    let r: SubmitResponse = http.post("/user/submit_task", &task).await?;
    let path = format!("/user/request_answer/{}?wait=60", r.id);
    let a: AnswerResponse = http.get(&path).await?;
    if a.state != TaskState::Succeeded {
        bail!("first task: {a:?}");
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// First task of an uncached package, then the same after a restart with a warm cache (ms), and
/// the idle processor's RSS (MiB).
async fn cache_and_footprint() -> anyhow::Result<(f64, f64, f64)> {
    let bins = build_release(&["task-server", "registry", "task-processor"])?;
    let reg = start_service(&bins.join("task-registry"), &[])?;
    let registry = reg.url.clone();
    let srv = start_service(&bins.join("task-server"), &["--registry", &registry])?;
    let server = srv.url.clone();
    let server_bin = bins.join("task-server");
    let (user, worker, publisher) = (
        token(&server_bin, srv.data_dir(), "user")?,
        token(&server_bin, srv.data_dir(), "worker")?,
        token(&server_bin, srv.data_dir(), "publisher")?,
    );
    publish_testkit(&registry, &publisher).await?;
    let mut p = start_processor(&server, &registry, &worker, 1, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(p.pid()).map_or(f64::NAN, |(now, _)| now);
    let cold = first_task_ms(&server, &user).await?;
    // The same processor again, on the cache it just filled.
    p.kill9();
    p.restart();
    let warm = first_task_ms(&server, &user).await?;
    Ok((cold, warm, idle))
}

fn main() -> anyhow::Result<()> {
    build_examples()?;
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
