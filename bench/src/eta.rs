//! How well `estimate_time_left` holds on queues whose runtimes depend on the arguments, with
//! real processors running the `testkit` package (its `busy_ms` and `sleep_ms` declare
//! `cost = "ms"`):
//!
//! - (a) `busy_ms` with 1, 50 and 200 ms mixed in one queue, one processor;
//! - (b) two functions, `busy_ms(1)` and `sleep_ms(50)`, one processor;
//! - (c) the queue of (a) on two processors with different slot counts.
//!
//! Each queue is read right after it is submitted and again once a quarter, half and three
//! quarters of its tasks finished; each reading's `eta_s` (and its `[eta_p10_s, eta_p90_s]`) is compared with the time the
//! queue really took from then on. The statistics are warmed first on a smaller queue of the
//! same mix, as a user's would be from earlier runs. For (c) the makespan is also compared with
//! the ideal placement: the queue's total work spread evenly over every slot.
//!
//! `cargo run --release -p crpc-bench --bin eta [-- --slots 2 --scale 1]`
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use crpc_bench::Stack;

#[derive(Parser)]
struct Args {
    /// Slots of the first processor; the second one of (c) gets half as many (at least 1).
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// Multiplies every queue's task counts.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

/// `(function, ms, count)`.
type Mix = [(&'static str, u64, usize)];

/// (a) and (c): 1 ms, 50 ms and 200 ms `busy_ms` in one queue (21 s of work at scale 1).
const MIXED: &Mix = &[
    ("busy_ms", 1, 1000),
    ("busy_ms", 50, 200),
    ("busy_ms", 200, 50),
];
/// (b): two functions, 1 ms spinning and 50 ms sleeping (12 s of work at scale 1).
const TWO: &Mix = &[("busy_ms", 1, 2000), ("sleep_ms", 50, 200)];

/// The tasks of `mix` × `scale`, interleaved so every part of the queue has every size.
fn tasks(mix: &Mix, scale: f64) -> Vec<Value> {
    let mut parts: Vec<(Value, usize, usize)> = mix
        .iter()
        .map(|&(f, ms, n)| {
            let n = ((n as f64 * scale).round() as usize).max(1);
            let t = json!({"package": "testkit", "function": f, "args": [ms]});
            (t, n, 0)
        })
        .collect();
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        // Bresenham-like: each part gets its share of every prefix.
        let pick = parts
            .iter()
            .enumerate()
            .min_by(|a, b| {
                let due = |p: &(Value, usize, usize)| (p.2 as f64 + 1.0) / p.1 as f64;
                due(a.1).total_cmp(&due(b.1))
            })
            .map(|(j, _)| j)
            .expect("a mix has parts");
        parts[pick].2 += 1;
        out.push(parts[pick].0.clone());
        debug_assert!(out.len() == i + 1);
    }
    out
}

/// Total nominal work of `mix` × `scale`, seconds.
fn work_s(mix: &Mix, scale: f64) -> f64 {
    mix.iter()
        .map(|&(_, ms, n)| ms as f64 * ((n as f64 * scale).round()).max(1.0) / 1000.0)
        .sum()
}

struct Client {
    http: crpc_http::Client,
}

impl Client {
    async fn submit(&self, tasks: Vec<Value>) -> anyhow::Result<Vec<(String, u64)>> {
        let mut batches = Vec::new();
        for chunk in tasks.chunks(1000) {
            let v: Value = self
                .http
                .post("/user/submit_batch", &json!({"tasks": chunk}))
                .await?;
            let id = v["batch_id"].as_str().context("batch_id")?.to_string();
            batches.push((id, chunk.len() as u64));
        }
        Ok(batches)
    }

    /// Tasks of `batches` finished so far; fails on a failed task.
    async fn finished(&self, batches: &[(String, u64)]) -> anyhow::Result<u64> {
        let mut done = 0;
        for (b, _) in batches {
            let v: Value = self.http.get(&format!("/user/batches/{b}")).await?;
            if v["counts"]["failed"].as_u64().unwrap_or(0) > 0 {
                bail!("a task failed: {v}");
            }
            done += v["counts"]["succeeded"].as_u64().unwrap_or(0);
        }
        Ok(done)
    }

    /// Σ runtime_ms of the newest `n` succeeded tasks (as their processors measured them), s.
    async fn work_done(&self, n: usize) -> anyhow::Result<f64> {
        let (mut sum, mut seen, mut cursor) = (0.0, 0, None::<i64>);
        while seen < n {
            let page = match cursor {
                Some(c) => format!("/user/tasks?state=succeeded&limit=1000&cursor={c}"),
                None => "/user/tasks?state=succeeded&limit=1000".to_string(),
            };
            let v: Value = self.http.get(&page).await?;
            for t in v["tasks"]
                .as_array()
                .context("tasks")?
                .iter()
                .take(n - seen)
            {
                sum += t["runtime_ms"].as_f64().context("runtime_ms")?;
                seen += 1;
            }
            match v["next"].as_i64() {
                Some(c) => cursor = Some(c),
                None if seen < n => bail!("only {seen} of {n} tasks listed"),
                None => {}
            }
        }
        Ok(sum / 1000.0)
    }

    async fn estimate(&self) -> anyhow::Result<Reading> {
        let v: Value = self.http.get("/user/estimate_time_left").await?;
        let f = |k: &str| v[k].as_f64().with_context(|| format!("{k} in {v}"));
        let slots = f("live_slots")?.max(1.0);
        let dispatch_s = f("dispatch_ms")? / 1000.0;
        let per: &[Value] = v["per_function"].as_array().map_or(&[], Vec::as_slice);
        let mean_work: f64 = per
            .iter()
            .map(|p| {
                let n = p["queued"].as_f64().unwrap_or(0.0) + p["running"].as_f64().unwrap_or(0.0);
                n * (p["mean_ms"].as_f64().unwrap_or(0.0) / 1000.0 + dispatch_s)
            })
            .sum();
        Ok(Reading {
            at: Instant::now(),
            mean_eta: mean_work / slots,
            eta: f("eta_s")?,
            p10: f("eta_p10_s")?,
            p90: f("eta_p90_s")?,
            models: format!(
                "time {:.2} s, dispatch_ms {}, live_slots {}, {}",
                f("time")?,
                v["dispatch_ms"],
                v["live_slots"],
                v["per_function"]
                    .as_array()
                    .map(|fs| {
                        fs.iter()
                            .map(|f| format!("{} {} {}", f["function"], f["model"], f["time"]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            ),
        })
    }

    /// Submits `mix`, reads the estimate at once and at 25, 50 and 75 % of the tasks done,
    /// waits for the end.
    async fn row(&self, mix: &Mix, scale: f64) -> anyhow::Result<(Vec<Reading>, Instant)> {
        let list = tasks(mix, scale);
        let total = list.len() as u64;
        let batches = self.submit(list).await?;
        let mut readings = vec![self.estimate().await?];
        loop {
            let done = self.finished(&batches).await?;
            // Reading k (1..=3) once k quarters are done.
            while readings.len() < 4 && done * 4 >= total * readings.len() as u64 {
                readings.push(self.estimate().await?);
            }
            if done == total {
                return Ok((readings, Instant::now()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One estimate.
struct Reading {
    at: Instant,
    /// What one mean per function (the estimate before cost models) would say.
    mean_eta: f64,
    eta: f64,
    p10: f64,
    p90: f64,
    models: String,
}

/// Prints the table rows of one queue; whether every reading held.
fn report(name: &str, readings: &[Reading], end: Instant) -> bool {
    let mut held = true;
    for (r, when) in readings.iter().zip(["submit", "25 %", "50 %", "75 %"]) {
        let actual = end.duration_since(r.at).as_secs_f64();
        let err = 100.0 * (r.eta - actual) / actual;
        let inside = r.p10 <= actual && actual <= r.p90;
        // The acceptance reads right after submitting and at 50 %.
        if when == "submit" || when == "50 %" {
            held &= err.abs() <= 10.0 && inside;
        }
        let mean_err = 100.0 * (r.mean_eta - actual) / actual;
        println!(
            "| {name} | {when} | {:.2} | {:.2}–{:.2} | {actual:.2} | {err:+.1} % | {} | {mean_err:+.1} % |",
            r.eta,
            r.p10,
            r.p90,
            if inside { "yes" } else { "no" }
        );
        eprintln!("  models: {}", r.models);
    }
    held
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    let stack = Stack::start(&rt)?;
    let first = stack.processor(args.slots, "eta-a");
    let opts = crpc_http::Options::default();
    let http = crpc_http::Client::new(&stack.server.url, Some(stack.user.clone()), opts)?;
    let c = Client { http };
    let mut held = true;
    println!(
        "| queue | read at | eta_s | p10–p90 | real | error | inside | one mean per function |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    rt.block_on(async {
        eprintln!("warming the statistics…");
        c.row(MIXED, args.scale * 0.2).await?;
        c.row(TWO, args.scale * 0.1).await?;
        let (r, end) = c.row(MIXED, args.scale).await?;
        held &= report("(a) busy_ms 1/50/200", &r, end);
        let (r, end) = c.row(TWO, args.scale).await?;
        held &= report("(b) 1 ms + 50 ms functions", &r, end);
        anyhow::Ok(())
    })?;
    let second_slots = (args.slots / 2).max(1);
    let second = stack.processor(second_slots, "eta-c");
    rt.block_on(async {
        // The second processor warms its instances (and reports its dispatch overhead).
        c.row(MIXED, args.scale * 0.1).await?;
        let t = Instant::now();
        let (r, end) = c.row(MIXED, args.scale).await?;
        let name = format!("(c) (a) on {} + {second_slots} slots", args.slots);
        held &= report(&name, &r, end);
        let makespan = end.duration_since(t).as_secs_f64();
        let slots = (args.slots + second_slots) as f64;
        let nominal = work_s(MIXED, args.scale);
        let measured = c.work_done(tasks(MIXED, args.scale).len()).await?;
        let ideal = measured / slots;
        println!(
            "\n(c) makespan {makespan:.2} s; ideal placement {ideal:.2} s ({:+.1} %): the tasks' \
             measured runtimes ({measured:.2} s; nominal {nominal:.2} s) packed on {slots} slots \
             with no dispatch overhead",
            100.0 * (makespan - ideal) / ideal
        );
        anyhow::Ok(())
    })?;
    drop((first, second));
    if !held {
        eprintln!("some estimate was off by more than 10 % or outside its interval");
    }
    Ok(())
}
