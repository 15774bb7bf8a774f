//! `soak`: runs crpc for N minutes at about half its measured capacity with mixed task lengths
//! (real processors, the testkit WASM package, SQLite), prints the server's and the processors'
//! RSS every minute, and at the end the RSS growth over the second half and whether every task
//! succeeded exactly once. Not in CI: `bench/soak --minutes 15`.
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use crpc_bench::{rss_mib, Stack};

#[derive(Parser)]
#[command(name = "soak")]
struct Args {
    /// How long to run at half capacity, minutes.
    #[arg(long, default_value_t = 15)]
    minutes: u64,
    /// Processors.
    #[arg(long, default_value_t = 2)]
    processors: usize,
    /// Slots per processor.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// Seconds of the capacity measurement before the soak.
    #[arg(long, default_value_t = 20)]
    calibrate_s: u64,
}

/// Largest batch the server takes.
const BATCH: usize = 10_000;

/// One task of the mix: 60 % no-op, 30 % sleeping 5 ms, 10 % spinning 20 ms.
fn task(i: usize) -> Value {
    match i % 10 {
        0 => json!({"package": "testkit", "function": "busy_ms", "args": [20]}),
        1..=3 => json!({"package": "testkit", "function": "sleep_ms", "args": [5]}),
        _ => json!({"package": "testkit", "function": "noop"}),
    }
}

struct Run {
    http: crpc_http::Client,
    submitted: usize,
    /// Batches not known to be finished: id and size.
    open: Vec<(String, u64)>,
    /// Tasks of finished batches: succeeded, failed.
    closed: (u64, u64),
}

impl Run {
    /// Submits `n` tasks of the mix in one batch.
    async fn submit(&mut self, n: usize) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let tasks: Vec<Value> = (self.submitted..self.submitted + n).map(task).collect();
        let v: Value = self
            .http
            .post("/user/submit_batch", &json!({"tasks": tasks}))
            .await?;
        let id = v["batch_id"].as_str().context("batch_id")?;
        self.open.push((id.into(), n as u64));
        self.submitted += n;
        Ok(())
    }

    /// Tasks finished so far (succeeded, failed) over every batch; finished batches are read
    /// once.
    async fn finished(&mut self) -> anyhow::Result<(u64, u64)> {
        let (mut ok, mut failed) = self.closed;
        let mut still = Vec::new();
        for (b, n) in std::mem::take(&mut self.open) {
            let v: Value = self.http.get(&format!("/user/batches/{b}")).await?;
            let s = v["counts"]["succeeded"].as_u64().unwrap_or(0);
            let f = v["counts"]["failed"].as_u64().unwrap_or(0);
            ok += s;
            failed += f;
            if s + f == n {
                self.closed = (self.closed.0 + s, self.closed.1 + f);
            } else {
                still.push((b, n));
            }
        }
        self.open = still;
        Ok((ok, failed))
    }

    /// Waits until everything submitted finished; how long it took.
    async fn drain(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        loop {
            let (ok, failed) = self.finished().await?;
            if (ok + failed) as usize >= self.submitted {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                bail!(
                    "{ok} + {failed} of {} finished after {limit:?}",
                    self.submitted
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    let stack = Stack::start(&rt)?;
    let procs: Vec<_> = (0..args.processors)
        .map(|i| stack.processor(args.slots, &format!("soak-{i}")))
        .collect();
    let opts = crpc_http::Options::default();
    let http = crpc_http::Client::new(&stack.server.url, Some(stack.user.clone()), opts)?;
    let mut pids = vec![("server".to_string(), stack.server.pid())];
    pids.extend(
        procs
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("processor {i}"), p.pid())),
    );
    rt.block_on(soak(&args, http, &pids))
}

async fn soak(args: &Args, http: crpc_http::Client, pids: &[(String, u32)]) -> anyhow::Result<()> {
    let mut run = Run {
        http,
        submitted: 0,
        open: Vec::new(),
        closed: (0, 0),
    };
    // Capacity: as many tasks as the processors finish in `calibrate_s`, queued all at once.
    let guess = (2000 * args.calibrate_s as usize).min(100_000);
    for _ in 0..guess / BATCH {
        run.submit(BATCH).await?;
    }
    let took = run.drain(Duration::from_secs(600)).await?;
    let capacity = run.submitted as f64 / took.as_secs_f64();
    let rate = capacity / 2.0;
    println!(
        "capacity with the mix: {capacity:.0} tasks/s; soaking at {rate:.0} tasks/s for {} min",
        args.minutes
    );
    println!(
        "| minute | tasks done | {} |",
        pids.iter()
            .map(|(n, _)| format!("{n} RSS MiB"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(pids.len()));
    let start = Instant::now();
    let (mut minute, mut owed) = (0, 0.0);
    let mut samples: Vec<Vec<f64>> = Vec::new();
    while minute < args.minutes {
        tokio::time::sleep(Duration::from_millis(250)).await;
        owed += rate * 0.25;
        let n = (owed as usize).min(BATCH);
        owed -= n as f64;
        run.submit(n).await?;
        if start.elapsed() >= Duration::from_secs(60 * (minute + 1)) {
            minute += 1;
            let rss: Vec<f64> = pids
                .iter()
                .map(|(_, p)| rss_mib(*p).map_or(0.0, |r| r.0))
                .collect();
            let (ok, failed) = run.finished().await?;
            let cells: Vec<String> = rss.iter().map(|r| format!("{r:.1}")).collect();
            println!("| {minute} | {} | {} |", ok + failed, cells.join(" | "));
            samples.push(rss);
        }
    }
    run.drain(Duration::from_secs(600)).await?;
    report(&mut run, pids, &samples).await
}

/// RSS growth over the second half, and whether every task succeeded.
async fn report(run: &mut Run, pids: &[(String, u32)], samples: &[Vec<f64>]) -> anyhow::Result<()> {
    let (ok, failed) = run.finished().await?;
    println!(
        "tasks: {} submitted, {ok} succeeded, {failed} failed",
        run.submitted
    );
    if samples.len() >= 2 {
        let (mid, last) = (
            &samples[(samples.len() - 1) / 2],
            &samples[samples.len() - 1],
        );
        for (i, (name, _)) in pids.iter().enumerate() {
            let growth = 100.0 * (last[i] - mid[i]) / mid[i].max(1e-9);
            println!(
                "{name}: RSS {:.1} → {:.1} MiB over the second half ({growth:+.1} %)",
                mid[i], last[i]
            );
        }
    }
    if failed > 0 || ok as usize != run.submitted {
        bail!("not every task succeeded");
    }
    Ok(())
}
