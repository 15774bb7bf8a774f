//! End to end with real processors: the registry, the server replica(s) started with
//! `--registry`, the `testkit` WASM package published, and `task-processor` processes pulling
//! from the replicas. Measures no-op and 1 ms tasks (spinning and sleeping) (submitted in batches, timed until the last
//! answer is out), the sequential submit→answer latency of a no-op, the error of the queue's
//! ETA (`estimate_time_left` right after a submission, against the time the queue really took),
//! and the processors' RSS.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::try_join_all;
use serde_json::{json, Value};

use crpc_bench::{publish_testkit, rss_mib, start_processor, start_service};

use crate::{start_server, Http, Server};

/// What one configuration measured.
pub struct RealFigures {
    /// No-op WASM tasks per second, batched submit to last answer.
    pub noop_tps: f64,
    /// 1 ms WASM tasks that spin (CPU-bound) per second.
    pub busy_tps: f64,
    /// Their mean runtime as the processors measured it (`/user/stats`), ms.
    pub busy_ms: f64,
    /// 1 ms WASM tasks that sleep (no CPU: what is left is dispatch) per second.
    pub sleep_tps: f64,
    /// Their mean runtime as measured, ms.
    pub sleep_ms: f64,
    /// Sequential no-op submit→answer, ms.
    pub p50: f64,
    /// Same, p99.
    pub p99: f64,
    /// `eta_s` right after submitting the ETA run, seconds.
    pub eta_predicted: f64,
    /// How long that queue really took, seconds.
    pub eta_actual: f64,
    /// Largest processor RSS after the run, MiB.
    pub processor_rss: f64,
}

/// Run parameters.
pub struct Plan<'a> {
    pub bin_dir: &'a Path,
    pub extra: &'a [String],
    pub replicas: usize,
    pub processors: usize,
    pub slots: usize,
    pub tasks: usize,
    pub label: &'a str,
}

const BATCH: usize = 1000;

/// Submits `n` tasks of `testkit.FUNCTION(args)` in batches of 1,000; returns the batch ids.
async fn submit(
    http: &Http,
    user: &str,
    function: &str,
    args: Value,
    n: usize,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut batches = Vec::new();
    let mut left = n;
    while left > 0 {
        let size = left.min(BATCH);
        let tasks: Vec<Value> = (0..size)
            .map(|_| json!({"package": "testkit", "function": function, "args": args}))
            .collect();
        let v = http
            .post(user, "/user/submit_batch", &json!({"tasks": tasks}))
            .await?;
        batches.push((
            v["batch_id"].as_str().context("batch_id")?.to_string(),
            size,
        ));
        left -= size;
    }
    Ok(batches)
}

/// Drains every batch's results stream until all `size` results are out; fails on a failed task.
async fn drain(http: &Http, user: &str, batches: &[(String, usize)]) -> anyhow::Result<()> {
    try_join_all(batches.iter().map(|(id, size)| async move {
        let (mut after, mut seen) = (0i64, 0usize);
        while seen < *size {
            let v = http
                .get(
                    user,
                    &format!("/user/batches/{id}/results?after={after}&limit=1000&wait=10"),
                )
                .await?;
            let results = v["results"].as_array().context("results")?;
            for r in results {
                if r["state"] != "succeeded" {
                    bail!("task not answered: {r}");
                }
            }
            seen += results.len();
            after = v["next"].as_i64().context("next")?;
        }
        Ok(())
    }))
    .await?;
    Ok(())
}

async fn timed(
    http: &Http,
    user: &str,
    function: &str,
    args: Value,
    n: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let batches = submit(http, user, function, args, n).await?;
    drain(http, user, &batches).await?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn latency(http: &Http, user: &str, samples: usize) -> anyhow::Result<(f64, f64)> {
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 20 {
        let t = Instant::now();
        let v = http
            .post(
                user,
                "/user/submit_task",
                &json!({"package": "testkit", "function": "noop", "args": []}),
            )
            .await?;
        let id = v["id"].as_str().context("id")?;
        let a = http
            .get(user, &format!("/user/request_answer/{id}?wait=10"))
            .await?;
        if a["state"] != "succeeded" {
            bail!("latency task not answered: {a}");
        }
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    ))
}

/// The mean runtime `/user/stats` holds for `testkit.FUNCTION`, ms.
async fn mean_ms(http: &Http, user: &str, function: &str) -> anyhow::Result<f64> {
    let stats = http.get(user, "/user/stats").await?;
    stats["functions"]
        .as_array()
        .context("functions")?
        .iter()
        .find(|f| f["function"] == function)
        .and_then(|f| f["mean_ms"].as_f64())
        .context("no statistics")
}

/// The ETA the server gives right after a submission, against the time the queue really took.
async fn eta_error(http: &Http, user: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let batches = submit(http, user, "busy_ms", json!([1]), n).await?;
    let t = Instant::now();
    let est = http.get(user, "/user/estimate_time_left").await?;
    let predicted = est["eta_s"].as_f64().context("eta_s")?;
    eprintln!(
        "estimate: eta_s {predicted:.2}, time {}, live_slots {}, dispatch_ms {}, per_function {}",
        est["time"], est["live_slots"], est["dispatch_ms"], est["per_function"]
    );
    drain(http, user, &batches).await?;
    Ok((predicted, t.elapsed().as_secs_f64()))
}

/// Starts the registry, `plan.replicas` servers and the processors; runs the measurements.
pub fn run(rt: &tokio::runtime::Runtime, plan: &Plan) -> anyhow::Result<RealFigures> {
    let label = plan.label;
    let reg = start_service(&plan.bin_dir.join("task-registry"), &[])?;
    let registry = reg.url.clone();

    let mut extra = plan.extra.to_vec();
    extra.extend(["--registry".to_string(), registry.clone()]);
    let mut servers: Vec<Server> = Vec::new();
    let (mut user, mut worker) = (String::new(), String::new());
    for _ in 0..plan.replicas {
        let (s, u, w) = start_server(&plan.bin_dir.join("task-server"), &extra)?;
        servers.push(s);
        (user, worker) = (u, w);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let publisher = servers[0].token("publisher")?;

    rt.block_on(publish_testkit(&registry, &publisher))?;

    let mut procs = Vec::new();
    for p in 0..plan.processors {
        procs.push(start_processor(
            &urls[p % urls.len()],
            &registry,
            &worker,
            plan.slots,
            Some(&format!("bench-{label}-{p}")),
        ));
    }

    let http = Http::new(&urls[0])?;
    let figures = rt.block_on(async {
        // Every processor installs the package and warms its instances first.
        timed(&http, &user, "noop", json!([]), 200 * plan.processors).await?;
        eprintln!("{label}, real processors: no-op ({} tasks)…", plan.tasks);
        let noop_tps = timed(&http, &user, "noop", json!([]), plan.tasks).await?;
        eprintln!("{label}, real processors: 1 ms ({} tasks)…", plan.tasks);
        let busy_tps = timed(&http, &user, "busy_ms", json!([1]), plan.tasks).await?;
        let busy_ms = mean_ms(&http, &user, "busy_ms").await?;
        eprintln!(
            "{label}, real processors: 1 ms sleeping ({} tasks)…",
            plan.tasks
        );
        let sleep_tps = timed(&http, &user, "sleep_ms", json!([1]), plan.tasks).await?;
        let sleep_ms = mean_ms(&http, &user, "sleep_ms").await?;
        eprintln!("{label}, real processors: submit→answer latency…");
        let (p50, p99) = latency(&http, &user, 1000).await?;
        eprintln!("{label}, real processors: ETA of a fresh queue of 1 ms tasks…");
        let (eta_predicted, eta_actual) = eta_error(&http, &user, plan.tasks).await?;
        Ok::<_, anyhow::Error>((
            noop_tps,
            (busy_tps, busy_ms),
            (sleep_tps, sleep_ms),
            p50,
            p99,
            eta_predicted,
            eta_actual,
        ))
    })?;
    let processor_rss = procs
        .iter()
        .filter_map(|p| rss_mib(p.pid()))
        .map(|(now, _)| now)
        .fold(0.0, f64::max);
    drop(procs);
    let (noop_tps, (busy_tps, busy_ms), (sleep_tps, sleep_ms), p50, p99, eta_predicted, eta_actual) =
        figures;
    // Give the processors a moment to hand back before the servers go.
    std::thread::sleep(Duration::from_millis(100));
    Ok(RealFigures {
        noop_tps,
        busy_tps,
        busy_ms,
        sleep_tps,
        sleep_ms,
        p50,
        p99,
        eta_predicted,
        eta_actual,
        processor_rss,
    })
}
