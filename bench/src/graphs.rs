//! Task graphs against independent tasks, in the same run, with a real processor running the
//! `testkit` package:
//!
//! - **independent**: 10,000 `noop` tasks in one batch;
//! - **chain**: 10,000 tasks in one batch, each `echo` of the one before it (`{"$ref": "#i-1"}`);
//! - **map-reduce**: 10,000 tasks in one batch: a root, 9,988 tasks using its answer, 10 partial
//!   reduces of ~999 answers each and a final reduce of the 10 (one fan-out, a two-level fan-in);
//! - **layered fan-out/fan-in**: 10,000 tasks in one batch, ~100 rounds of 98 tasks that each take the
//!   answer of the round's hub, and the next hub, which runs after all 98;
//! - **independent, one at a time**: the 10,000 `noop` tasks on a processor with 1 slot and no
//!   prefetch: the parallelism a chain allows (one task at a time, one round trip each).
//!
//! Each time runs from the submit to the batch's `done`. The overhead of a graph is its time over
//! the independent tasks' on the same processor, in the same round (rounds alternate the
//! shapes, so a busy moment of the machine weighs on both sides of a ratio); the table gives
//! each round's ratio and their median (the chain's also over one-at-a-time).
//!
//! `cargo run --release -p crpc-bench --bin graphs [-- --slots 2 --tasks 10000 --rounds 3]`
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use crpc_bench::{median, Stack};

#[derive(Parser)]
struct Args {
    /// Slots of the processor.
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// Tasks per shape (at most 10,000: one batch).
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Rounds: each runs the independent tasks and then every graph, so that each graph is
    /// compared with independent tasks run moments before it (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn noop() -> Value {
    json!({"package": "testkit", "function": "noop"})
}

fn echo(v: Value) -> Value {
    json!({"package": "testkit", "function": "echo", "args": [v]})
}

/// `n` tasks, each the echo of the one before.
fn chain(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i {
            0 => echo(json!(0)),
            _ => echo(json!({"$ref": format!("#{}", i - 1)})),
        })
        .collect()
}

/// `n` tasks in rounds of 100: a hub, 98 tasks using its answer, and the next hub after them.
fn fan(n: usize) -> Vec<Value> {
    let mut out = vec![echo(json!(0))];
    while out.len() < n {
        let hub = out.len() - 1;
        let width = 98.min(n - out.len() - 1).max(1);
        let first = out.len();
        for _ in 0..width {
            out.push(echo(json!({"$ref": format!("#{hub}")})));
        }
        if out.len() < n {
            let after: Vec<String> = (first..out.len()).map(|i| format!("#{i}")).collect();
            out.push(
                json!({"package": "testkit", "function": "echo", "args": [1], "after": after}),
            );
        }
    }
    out.truncate(n);
    out
}

/// `n` tasks as a map-reduce: a root, `n - 12` map tasks using its answer, 10 partial reduces each
/// taking the answers of a tenth of the maps, and a final reduce taking the 10 partial answers
/// (a task may wait for at most 1,000 others, so the fan-in is a two-level tree).
fn map_reduce(n: usize) -> Vec<Value> {
    const PARTS: usize = 10;
    let maps = n - 2 - PARTS;
    let mut out = vec![echo(json!(0))];
    out.extend((0..maps).map(|_| echo(json!({"$ref": "#0"}))));
    let per = maps.div_ceil(PARTS);
    let mut partials = Vec::new();
    for p in 0..PARTS {
        let refs: Vec<Value> = (1 + p * per..(1 + (p + 1) * per).min(1 + maps))
            .map(|i| json!({"$ref": format!("#{i}")}))
            .collect();
        partials.push(json!({"$ref": format!("#{}", out.len())}));
        out.push(echo(Value::Array(refs)));
    }
    out.push(echo(Value::Array(partials)));
    out
}

/// Submits `tasks` as one batch and waits until it is done; the seconds it took.
async fn run(http: &crpc_http::Client, tasks: Vec<Value>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let v: Value = http
        .post("/user/submit_batch", &json!({ "tasks": tasks }))
        .await?;
    let id = v["batch_id"].as_str().context("batch_id")?.to_string();
    loop {
        let s: Value = http.get(&format!("/user/batches/{id}?wait=30")).await?;
        if s["done"] == true {
            let ok = s["counts"]["succeeded"].as_u64().unwrap_or(0);
            if ok as usize != tasks_len(&s) {
                bail!("not every task succeeded: {s}");
            }
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("batch {id} not done after 30 min: {s}");
        }
    }
}

fn tasks_len(status: &Value) -> usize {
    status["total"].as_u64().unwrap_or(0) as usize
}

/// The seconds of each shape in one round, in the order they run: independent (the baseline),
/// map-reduce, layered, chain.
type Round = [f64; 4];

/// One round on the 2-slot processor: the independent tasks, then each graph.
async fn round(http: &crpc_http::Client, n: usize) -> anyhow::Result<Round> {
    eprintln!("{n} independent tasks…");
    let ind = run(http, vec![noop(); n]).await?;
    eprintln!("map-reduce of {n}…");
    let mr = run(http, map_reduce(n)).await?;
    eprintln!("fan-out/fan-in of {n}…");
    let fa = run(http, fan(n)).await?;
    eprintln!("a chain of {n}…");
    let ch = run(http, chain(n)).await?;
    Ok([ind, mr, fa, ch])
}

/// The independent tasks, one at a time: a processor with 1 slot and no prefetch.
fn one_at_a_time(
    stack: &Stack,
    rt: &tokio::runtime::Runtime,
    http: &crpc_http::Client,
    n: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let one = crpc_tests::Worker::start_with_env(
        &stack.server.url,
        &stack.registry.url,
        &[
            "--token",
            &stack.worker,
            "--cpu-slots",
            "1",
            "--prefetch",
            "0",
            "--worker-id",
            "graphs-one",
        ],
        &[("CRPC_LOG", "warn")],
    );
    let times = rt.block_on(async {
        run(http, vec![noop(); 200]).await?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            eprintln!("{n} independent tasks one at a time…");
            times.push(run(http, vec![noop(); n]).await?);
        }
        anyhow::Ok(times)
    })?;
    drop(one);
    Ok(times)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.tasks.clamp(100, 10_000);
    let rounds = args.rounds.clamp(1, 15);
    let rt = tokio::runtime::Runtime::new()?;
    let stack = Stack::start(&rt)?;
    let opts = crpc_http::Options::default();
    let http = crpc_http::Client::new(&stack.server.url, Some(stack.user.clone()), opts)?;
    let p = stack.processor(args.slots, "graphs");
    let all: Vec<Round> = rt.block_on(async {
        eprintln!("warming up…");
        run(&http, vec![noop(); 2000]).await?;
        run(&http, chain(200)).await?;
        let mut all = Vec::new();
        for r in 0..rounds {
            eprintln!("round {} of {rounds}", r + 1);
            all.push(round(&http, n).await?);
        }
        anyhow::Ok(all)
    })?;
    drop(p);
    let serial = one_at_a_time(&stack, &rt, &http, n, rounds)?;
    print_table(&args, n, &all, &serial);
    Ok(())
}

/// One row per shape: each round's time, then the median of each round's ratio to that round's
/// independent tasks (the chain's also to the median one-at-a-time time).
fn print_table(args: &Args, n: usize, all: &[Round], serial: &[f64]) {
    let times = |i: usize| -> Vec<f64> { all.iter().map(|r| r[i]).collect() };
    let list = |v: &[f64], f: &dyn Fn(f64) -> String| -> String {
        v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" / ")
    };
    let ratios = |i: usize| -> Vec<f64> { all.iter().map(|r| r[i] / r[0]).collect() };
    let secs = |x: f64| format!("{x:.2}");
    let times_x = |x: f64| format!("{x:.2}×");
    let ind = median(&times(0));
    println!(
        "| shape ({n} tasks, one batch; {} rounds) | time per round, s | median tasks/s | over independent, per round | median |",
        all.len()
    );
    println!("|---|---|---|---|---|");
    let labels = [
        format!("independent, {} slots", args.slots),
        format!("map-reduce (1 → {} → 10 → 1), {} slots", n - 12, args.slots),
        format!(
            "layered fan-out/fan-in (rounds of 1 → 98 → 1), {} slots",
            args.slots
        ),
        format!("chain, {} slots", args.slots),
    ];
    for (i, label) in labels.iter().enumerate() {
        let t = times(i);
        let r = ratios(i);
        println!(
            "| {label} | {} | {:.0} | {} | {:.2}× |",
            list(&t, &secs),
            n as f64 / median(&t),
            list(&r, &times_x),
            median(&r)
        );
    }
    let one = median(serial);
    println!(
        "| independent, one at a time (1 slot, no prefetch) | {} | {:.0} | – | {:.2}× |",
        list(serial, &secs),
        n as f64 / one,
        one / ind
    );
    let chain = median(&times(3));
    println!(
        "\nchain against one at a time (medians): {:.2}×",
        chain / one
    );
}
