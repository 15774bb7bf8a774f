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
//! the independent tasks' on the same processor (the chain's also over one-at-a-time).
//!
//! `cargo run --release -p crpc-bench --bin graphs [-- --slots 2 --tasks 10000]`
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use crpc_bench::Stack;

#[derive(Parser)]
struct Args {
    /// Slots of the processor.
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// Tasks per shape (at most 10,000: one batch).
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.tasks.clamp(100, 10_000);
    let rt = tokio::runtime::Runtime::new()?;
    let stack = Stack::start(&rt)?;
    let opts = crpc_http::Options::default();
    let http = crpc_http::Client::new(&stack.server.url, Some(stack.user.clone()), opts)?;
    let p = stack.processor(args.slots, "graphs");
    let (ind, ch, fa, mr) = rt.block_on(async {
        eprintln!("warming up…");
        run(&http, vec![noop(); 2000]).await?;
        run(&http, chain(200)).await?;
        eprintln!("{n} independent tasks…");
        let ind = run(&http, vec![noop(); n]).await?;
        eprintln!("a chain of {n}…");
        let ch = run(&http, chain(n)).await?;
        eprintln!("fan-out/fan-in of {n}…");
        let fa = run(&http, fan(n)).await?;
        eprintln!("map-reduce of {n}…");
        let mr = run(&http, map_reduce(n)).await?;
        anyhow::Ok((ind, ch, fa, mr))
    })?;
    drop(p);
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
    let serial = rt.block_on(async {
        run(&http, vec![noop(); 200]).await?;
        eprintln!("{n} independent tasks one at a time…");
        run(&http, vec![noop(); n]).await
    })?;
    drop(one);
    let rate = |s: f64| n as f64 / s;
    println!("| shape ({n} tasks, one batch) | time | tasks/s | over independent |");
    println!("|---|---|---|---|");
    println!(
        "| independent, {} slots | {ind:.2} s | {:.0} | 1.00× |",
        args.slots,
        rate(ind)
    );
    println!(
        "| map-reduce (1 → {} → 10 → 1), {} slots | {mr:.2} s | {:.0} | {:.2}× |",
        n - 12,
        args.slots,
        rate(mr),
        mr / ind
    );
    println!(
        "| layered fan-out/fan-in (rounds of 1 → 98 → 1), {} slots | {fa:.2} s | {:.0} | {:.2}× |",
        args.slots,
        rate(fa),
        fa / ind
    );
    println!(
        "| chain, {} slots | {ch:.2} s | {:.0} | {:.2}× ({:.2}× one at a time) |",
        args.slots,
        rate(ch),
        ch / ind,
        ch / serial
    );
    println!(
        "| independent, one at a time (1 slot, no prefetch) | {serial:.2} s | {:.0} | {:.2}× |",
        rate(serial),
        serial / ind
    );
    Ok(())
}
