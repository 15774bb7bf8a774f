//! Fleet control's cost to uncapped tasks, A/B in the same run: real processors run `noop`
//! tasks in batches on the build before fair share and caps (`--baseline`, from
//! `bench/build-baseline`) and on this build, alternating; on this build also with the
//! machinery busy: the tasks split between two owners (fair-share turns interleave them) and a
//! backlog of 5,000 gated tasks under a full concurrency key beside them.
//!
//! `cargo run --release -p crpc-bench --bin fleet -- --baseline DIR [--rounds 3 --tasks 20000 --slots 2]`
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use crpc_bench::{build_examples, build_release, median, Stack};

#[derive(Parser)]
struct Args {
    /// The older build's binaries (task-server, task-processor).
    #[arg(long)]
    baseline: PathBuf,
    /// Alternating rounds of each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tasks per round (batches of 10,000).
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Slots of the processor.
    #[arg(long, default_value_t = 2)]
    slots: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Before,
    After,
    Busy,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Before => "before fair share and caps (baseline build)",
            Mode::After => "this build",
            Mode::Busy => "this build, 2 owners + 5,000 gated tasks beside",
        }
    }
}

/// Drops the manifest keys an older processor does not know.
fn strip_caps(manifest: String) -> String {
    manifest
        .lines()
        .filter(|l| !l.starts_with("max_concurrent") && !l.starts_with("rate_per_s"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Submits `batches` concurrently (each with its own client) and waits until all are done;
/// the seconds it took.
async fn run(clients: &[crpc_http::Client], batches: Vec<Vec<Value>>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, tasks) in batches.into_iter().enumerate() {
        let http = &clients[i % clients.len()];
        let v: Value = http
            .post("/user/submit_batch", &json!({ "tasks": tasks }))
            .await?;
        ids.push((
            i % clients.len(),
            v["batch_id"].as_str().context("batch_id")?.to_string(),
        ));
    }
    for (c, id) in ids {
        loop {
            let s: Value = clients[c]
                .get(&format!("/user/batches/{id}?wait=30"))
                .await?;
            if s["done"] == true {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("batch {id} not done: {s}");
            }
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One round of `mode`: the seconds `n` uncapped tasks took.
fn round(rt: &tokio::runtime::Runtime, args: &Args, mode: Mode) -> anyhow::Result<f64> {
    let own = std::env::current_exe()?
        .parent()
        .context("bin")?
        .to_path_buf();
    let stack = match mode {
        Mode::Before => Stack::start_from(rt, args.baseline.clone(), strip_caps)?,
        _ => Stack::start_from(rt, own, |m| m)?,
    };
    let opts = crpc_http::Options::default();
    let mut clients = vec![crpc_http::Client::new(
        &stack.server.url,
        Some(stack.user.clone()),
        opts.clone(),
    )?];
    if mode == Mode::Busy {
        let bin = stack.bin.join("task-server");
        let other = crpc_bench::token_for(&bin, stack.server.data_dir(), "user", "other")?;
        clients.push(crpc_http::Client::new(
            &stack.server.url,
            Some(other),
            opts,
        )?);
    }
    let _p = stack.processor(args.slots, "fleet");
    let noop = json!({"package": "testkit", "function": "noop"});
    rt.block_on(async {
        run(&clients[..1], vec![vec![noop.clone(); 2000]]).await?;
        if mode == Mode::Busy {
            let held = json!({"package": "testkit", "function": "noop", "delay_s": 3600,
                              "concurrency_key": "held", "max_concurrent": 1});
            run_submit(&clients[0], vec![held; 5000]).await?;
        }
        let batches: Vec<Vec<Value>> = (0..args.tasks.div_ceil(10_000))
            .map(|_| vec![noop.clone(); 10_000.min(args.tasks)])
            .collect();
        run(&clients, batches).await
    })
}

/// Submits without waiting.
async fn run_submit(http: &crpc_http::Client, tasks: Vec<Value>) -> anyhow::Result<()> {
    let _: Value = http
        .post("/user/submit_batch", &json!({ "tasks": tasks }))
        .await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    build_release(&["task-server", "registry", "task-processor"])?;
    build_examples()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut times: Vec<(Mode, Vec<f64>)> = [Mode::Before, Mode::After, Mode::Busy]
        .into_iter()
        .map(|m| (m, Vec::new()))
        .collect();
    for r in 0..args.rounds {
        for (mode, t) in times.iter_mut() {
            let s = round(&rt, &args, *mode)?;
            eprintln!("round {}: {}: {s:.2} s", r + 1, mode.label());
            t.push(s);
        }
    }
    let base = median(&times[0].1);
    let n = args.tasks as f64;
    println!(
        "| {} uncapped tasks, {} slots (median of {}) | tasks/s | against the baseline |",
        args.tasks, args.slots, args.rounds
    );
    println!("|---|---|---|");
    for (mode, t) in &times {
        let m = median(t);
        println!(
            "| {} | {:.0} | {:+.1} % |",
            mode.label(),
            n / m,
            (base / m - 1.0) * 100.0
        );
    }
    Ok(())
}
