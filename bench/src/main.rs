//! crpc benchmark driver: starts the release `task-server`, drives it over HTTP with concurrent
//! submitters and simulated HTTP workers, then end to end with the registry and real
//! `task-processor`s running a WASM package; runs the Celery peer in the same run; prints one
//! table.
//!
//! `cargo run --release -p crpc-bench [-- --tasks 20000 --batched-tasks 100000]`
mod dev_map;
mod processors;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

/// Benchmark the crpc task server beside Celery + Redis.
#[derive(Debug, Parser)]
struct Args {
    /// Tasks for the one-request-per-task run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Tasks for the batched run.
    #[arg(long, default_value_t = 200_000)]
    batched_tasks: usize,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 16)]
    submitters: usize,
    /// Simulated workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Round trips for the latency run.
    #[arg(long, default_value_t = 2000)]
    latency_samples: usize,
    /// Tasks for the Celery peer.
    #[arg(long, default_value_t = 5000)]
    celery_tasks: usize,
    /// Skip the Celery peer.
    #[arg(long)]
    no_celery: bool,
    /// PostgreSQL server for the replicated run (a fresh database is created and dropped).
    #[arg(
        long,
        env = "CRPC_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres: String,
    /// Server replicas for the PostgreSQL run.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Skip the PostgreSQL run.
    #[arg(long)]
    no_postgres: bool,
    /// Skip the SQLite runs (to profile the PostgreSQL ones).
    #[arg(long)]
    no_sqlite: bool,
    /// Real `task-processor` processes in the end-to-end run.
    #[arg(long, default_value_t = 2)]
    processors: usize,
    /// Slots per processor.
    #[arg(long, default_value_t = 1)]
    processor_slots: usize,
    /// Tasks per measurement of the end-to-end run.
    #[arg(long, default_value_t = 10_000)]
    real_tasks: usize,
    /// Skip the end-to-end run with real processors.
    #[arg(long)]
    no_real: bool,
    /// Inputs of the `crpc map` run against `crpc dev`.
    #[arg(long, default_value_t = 100_000)]
    dev_map_inputs: usize,
    /// Skip the `crpc map` run against `crpc dev`.
    #[arg(long)]
    no_dev_map: bool,
    /// Skip the runs with simulated workers (to profile the real processors).
    #[arg(long)]
    no_simulated: bool,
}

use crpc_bench::{rss_mib, start_service, token, Proc};

/// One task-server of the run.
struct Server {
    proc: Proc,
    url: String,
    bin: PathBuf,
}

impl Server {
    /// A token for `role` signed with the run's secret.
    fn token(&self, role: &str) -> anyhow::Result<String> {
        token(&self.bin, self.proc.data_dir(), role)
    }
}

fn server_binary() -> anyhow::Result<PathBuf> {
    let dir = crpc_bench::build_release(&["task-server", "registry", "task-processor", "crpc"])?;
    let bin = dir.join("task-server");
    if !bin.exists() {
        bail!(
            "{} not found; run with `cargo run --release -p crpc-bench`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts a task-server; with its user and worker tokens.
fn start_server(bin: &Path, extra: &[String]) -> anyhow::Result<(Server, String, String)> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let proc = start_service(bin, &extra)?;
    let server = Server {
        url: proc.url.clone(),
        proc,
        bin: bin.to_path_buf(),
    };
    let user = server.token("user")?;
    let worker = server.token("worker")?;
    Ok((server, user, worker))
}

/// The bench's side of the API: crpc's one client, a token per call.
#[derive(Clone)]
struct Http {
    client: crpc_http::Client,
}

impl Http {
    fn new(url: &str) -> anyhow::Result<Http> {
        let client = crpc_http::Client::new(url, None, crpc_http::Options::default())?;
        Ok(Http { client })
    }

    /// The same client aimed at replica `i` of `urls`.
    fn at(&self, urls: &[String], i: usize) -> Http {
        Http {
            client: self.client.at(&urls[i % urls.len()]),
        }
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let c = self.client.with_token(Some(token.to_string()));
        c.post(path, body)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))
    }

    async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let c = self.client.with_token(Some(token.to_string()));
        c.get(path)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))
    }
}

/// A simulated worker's answer to a lease: the task's first argument.
fn simulated_answer(l: &Value) -> Value {
    json!({"id": l["id"], "lease_epoch": l["lease_epoch"], "answer": l["task"]["args"][0], "runtime_ms": 0.0})
}

/// Workers lease `per_lease` tasks at a time and answer them, each lease request carrying the
/// previous lease's answers (one request per lease, as the real processor), until `target`
/// answers were delivered in all.
fn spawn_workers(
    http: &Http,
    urls: &[String],
    token: &str,
    n: usize,
    per_lease: u32,
    target: usize,
    done: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..n)
        .map(|w| {
            let (http, token, done) = (http.at(urls, w), token.to_string(), done.clone());
            tokio::spawn(async move {
                // As the real processor does: each lease request carries the previous answers.
                let mut answers: Vec<Value> = Vec::new();
                while done.load(Ordering::Relaxed) < target {
                    let body = json!({"worker_id": format!("bw{w}"), "max_tasks": per_lease,
                                      "wait_s": 0.2, "answers": answers});
                    let v = http.post(&token, "/worker/request_task", &body).await?;
                    done.fetch_add(answers.len(), Ordering::Relaxed);
                    answers = v["leases"]
                        .as_array()
                        .map(|ls| ls.iter().map(simulated_answer).collect())
                        .unwrap_or_default();
                }
                if !answers.is_empty() {
                    http.post(
                        &token,
                        "/worker/submit_answer",
                        &json!({"answers": answers}),
                    )
                    .await?;
                    done.fetch_add(answers.len(), Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect()
}

async fn run_throughput(
    http: &Http,
    urls: &[String],
    user: &str,
    worker: &str,
    args: &Args,
    batched: bool,
) -> anyhow::Result<f64> {
    let (n, per) = if batched {
        (args.batched_tasks, 100usize)
    } else {
        (args.tasks, 1)
    };
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let workers = spawn_workers(
        http,
        urls,
        worker,
        args.workers,
        per as u32,
        n,
        done.clone(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..args.submitters)
        .map(|i| {
            let (http, user, next) = (http.at(urls, i), user.to_string(), next.clone());
            tokio::spawn(async move {
                loop {
                    let start = next.fetch_add(per, Ordering::Relaxed);
                    if start >= n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    if per == 1 {
                        http.post(
                            &user,
                            "/user/submit_task",
                            &json!({"function": "noop", "args": [start]}),
                        )
                        .await?;
                    } else {
                        let tasks: Vec<Value> = (start..(start + per).min(n))
                            .map(|i| json!({"function": "noop", "args": [i]}))
                            .collect();
                        http.post(&user, "/user/submit_batch", &json!({"tasks": tasks}))
                            .await?;
                    }
                }
            })
        })
        .collect();
    for s in submitters {
        s.await??;
    }
    for w in workers {
        w.await??;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

async fn run_latency(
    http: &Http,
    urls: &[String],
    user: &str,
    worker: &str,
    samples: usize,
) -> anyhow::Result<(f64, f64)> {
    let done = Arc::new(AtomicUsize::new(0));
    // The worker long-polls the last replica, the client talks to the first: across replicas the
    // wake-up goes through the database (LISTEN/NOTIFY).
    let last = &urls[urls.len() - 1..];
    let workers = spawn_workers(http, last, worker, 1, 1, samples + 250, done.clone());
    let mut lat = Vec::with_capacity(samples);
    let (mut t_livez, mut t_submit, mut t_read) = (0.0, 0.0, 0.0);
    for i in 0..200 {
        let t = Instant::now();
        http.get(user, "/livez").await?;
        t_livez += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let v = http
            .post(
                user,
                "/user/submit_task",
                &json!({"function": "probe", "args": [i]}),
            )
            .await?;
        t_submit += t.elapsed().as_secs_f64();
        let id = v["id"].as_str().context("id")?.to_string();
        let t = Instant::now();
        http.get(user, &format!("/user/request_answer/{id}"))
            .await?;
        t_read += t.elapsed().as_secs_f64();
    }
    eprintln!(
        "  breakdown (mean of 200): GET /livez {:.3} ms, submit {:.3} ms, request_answer (no wait) {:.3} ms",
        t_livez * 5.0, t_submit * 5.0, t_read * 5.0
    );
    for i in 0..samples + 50 {
        let t = Instant::now();
        let v = http
            .post(
                user,
                "/user/submit_task",
                &json!({"function": "noop", "args": [i]}),
            )
            .await?;
        let id = v["id"].as_str().context("id")?.to_string();
        let a = http
            .get(user, &format!("/user/request_answer/{id}?wait=10"))
            .await?;
        if a["state"] != "succeeded" {
            bail!("latency task not answered: {a}");
        }
        if i >= 50 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for w in workers {
        w.abort();
    }
    lat.sort_by(f64::total_cmp);
    Ok((
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    ))
}

fn run_celery(n: usize) -> anyhow::Result<Value> {
    let peer = crpc_bench::repo_root().join("../shared/bench/celery_peer.py");
    if !peer.exists() {
        bail!("{} not found", peer.display());
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let venv = PathBuf::from(home).join(".cache/crpc-bench/celery-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!("installing the Celery peer into {} …", venv.display());
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()?
            .success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "celery[redis]>=5.4,<6"])
                .status()?
                .success();
        if !ok {
            bail!("could not install celery[redis] into {}", venv.display());
        }
    }
    let out = Command::new(&py)
        .arg(&peer)
        .arg(n.to_string())
        .current_dir(peer.parent().expect("dir"))
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("celery peer printed no JSON line")?;
    Ok(serde_json::from_str(line)?)
}

fn ratio(ours: f64, theirs: Option<f64>, higher_is_better: bool) -> String {
    match theirs {
        Some(t) if t > 0.0 && ours > 0.0 => {
            if higher_is_better {
                format!("{:.1}×", ours / t)
            } else {
                format!("{:.2}× (lower is better)", ours / t)
            }
        }
        _ => "n/a".into(),
    }
}

/// One configuration's figures.
struct Figures {
    single: f64,
    batched: f64,
    p50: f64,
    p99: f64,
    rss: Option<(f64, f64)>,
}

fn run_cluster(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    args: &Args,
    extra: &[String],
    replicas: usize,
    label: &str,
) -> anyhow::Result<Figures> {
    let mut servers = Vec::new();
    let (mut user, mut worker) = (String::new(), String::new());
    for _ in 0..replicas {
        let (s, u, w) = start_server(bin, extra)?;
        servers.push(s);
        user = u;
        worker = w;
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let http = Http::new(&urls[0])?;
    eprintln!("{label}: one request per task ({} tasks)…", args.tasks);
    let single = rt.block_on(run_throughput(&http, &urls, &user, &worker, args, false))?;
    eprintln!("{label}: batched by 100 ({} tasks)…", args.batched_tasks);
    let batched = rt.block_on(run_throughput(&http, &urls, &user, &worker, args, true))?;
    eprintln!(
        "{label}: submit→answer latency ({} round trips)…",
        args.latency_samples
    );
    let (p50, p99) = rt.block_on(run_latency(
        &http,
        &urls,
        &user,
        &worker,
        args.latency_samples,
    ))?;
    let rss = servers
        .iter()
        .filter_map(|s| rss_mib(s.proc.pid()))
        .fold(None, |acc: Option<(f64, f64)>, (a, b)| {
            Some(acc.map_or((a, b), |(x, y)| (x.max(a), y.max(b))))
        });
    Ok(Figures {
        single,
        batched,
        p50,
        p99,
        rss,
    })
}

/// Creates a throwaway database on the PostgreSQL server; returns its URL and a dropper.
fn fresh_database(
    rt: &tokio::runtime::Runtime,
    admin_url: &str,
) -> anyhow::Result<(String, impl FnOnce())> {
    use sqlx::Connection;
    let name = format!("crpc_bench_{}", std::process::id());
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let url = format!(
        "{}/{name}",
        &base[..base.rfind('/').context("database in URL")?]
    );
    let admin = admin_url.to_string();
    let drop = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await?;
            Ok::<(), anyhow::Error>(())
        });
    };
    Ok((url, drop))
}

/// The end-to-end run with real processors on one configuration.
fn run_real(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    args: &Args,
    extra: &[String],
    replicas: usize,
    label: &str,
) -> anyhow::Result<processors::RealFigures> {
    processors::run(
        rt,
        &processors::Plan {
            bin_dir: bin.parent().context("bin dir")?,
            extra,
            replicas,
            processors: args.processors.max(1),
            slots: args.processor_slots.max(1),
            tasks: args.real_tasks.max(100),
            label,
        },
    )
}

/// Runs `f` against a fresh PostgreSQL database (created, then dropped); `None` when it cannot
/// be created or `--no-postgres` was given.
fn on_postgres<T>(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    f: impl FnOnce(&[String]) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    if args.no_postgres {
        return Ok(None);
    }
    match fresh_database(rt, &args.postgres) {
        Ok((url, drop)) => {
            let r = f(&["--database-url".to_string(), url]);
            drop();
            Ok(Some(r?))
        }
        Err(e) => {
            eprintln!("PostgreSQL run skipped: {e:#}");
            Ok(None)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_binary()?;
    if !args.no_real {
        crpc_bench::build_examples()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let replicas = args.replicas.max(1);
    let sqlite = if args.no_sqlite || args.no_simulated {
        None
    } else {
        Some(run_cluster(&rt, &bin, &args, &[], 1, "sqlite")?)
    };
    let pg = if args.no_simulated {
        None
    } else {
        on_postgres(&rt, &args, |extra| {
            run_cluster(&rt, &bin, &args, extra, replicas, "postgres")
        })?
    };
    let (real_sqlite, real_pg) = if args.no_real {
        (None, None)
    } else {
        let s = if args.no_sqlite {
            None
        } else {
            Some(run_real(&rt, &bin, &args, &[], 1, "sqlite")?)
        };
        let p = on_postgres(&rt, &args, |extra| {
            run_real(&rt, &bin, &args, extra, replicas, "postgres")
        })?;
        (s, p)
    };
    let dev_map = if args.no_real || args.no_dev_map {
        None
    } else {
        Some(dev_map::run(args.dev_map_inputs)?)
    };

    let celery = if args.no_celery {
        None
    } else {
        eprintln!("celery peer ({} tasks)…", args.celery_tasks);
        match run_celery(args.celery_tasks) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("celery peer unavailable: {e:#}");
                None
            }
        }
    };
    let c = |k: &str| celery.as_ref().and_then(|v| v[k].as_f64());
    let fmt = |v: Option<f64>, d: usize| {
        v.map(|x| format!("{x:.d$}"))
            .unwrap_or_else(|| "n/a".into())
    };
    let pgf = |f: fn(&Figures) -> f64| pg.as_ref().map(f);
    let sqf = |f: fn(&Figures) -> f64| sqlite.as_ref().map(f);
    println!("| metric | crpc SQLite | crpc PostgreSQL ({replicas} replicas) | Celery 5 + Redis | SQLite / Celery | PostgreSQL / Celery |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str,
               ours: Option<f64>,
               pg: Option<f64>,
               theirs: Option<f64>,
               higher: bool,
               d: usize| {
        let vs = |v: Option<f64>| {
            v.map(|v| ratio(v, theirs, higher))
                .unwrap_or_else(|| "n/a".into())
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            fmt(ours, d),
            fmt(pg, d),
            fmt(theirs, d),
            vs(ours),
            vs(pg)
        )
    };
    row(
        "tasks/s, one request per task",
        sqf(|f| f.single),
        pgf(|f| f.single),
        c("tasks_per_s"),
        true,
        0,
    );
    row(
        "tasks/s, batches of 100 (Celery: no batch API)",
        sqf(|f| f.batched),
        pgf(|f| f.batched),
        c("tasks_per_s"),
        true,
        0,
    );
    row(
        "p50 submit→answer, ms",
        sqf(|f| f.p50),
        pgf(|f| f.p50),
        c("p50_ms"),
        false,
        3,
    );
    row(
        "p99 submit→answer, ms",
        sqf(|f| f.p99),
        pgf(|f| f.p99),
        c("p99_ms"),
        false,
        3,
    );
    let rss = |f: &Option<Figures>| {
        f.as_ref()
            .and_then(|f| f.rss)
            .map(|(n, p)| format!("{n:.1} ({p:.1})"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "| server RSS after the run (peak), MiB, largest replica | {} | {} | | | |",
        rss(&sqlite),
        rss(&pg)
    );
    if real_sqlite.is_some() || real_pg.is_some() {
        let (rs, rp) = (real_sqlite.as_ref(), real_pg.as_ref());
        let slots = args.processors.max(1) * args.processor_slots.max(1);
        let n = args.real_tasks.max(100);
        row(
            &format!("tasks/s, no-op WASM tasks, {slots} real processor slot(s), batches of 1000"),
            rs.map(|f| f.noop_tps),
            rp.map(|f| f.noop_tps),
            c("tasks_per_s"),
            true,
            0,
        );
        // Share of the nominal 1 ms per task, and of the slot time the tasks' measured runtime
        // allows (what the slots could do if no time went to dispatch).
        let share = |f: Option<&processors::RealFigures>, spin: bool| {
            f.map(|f| {
                let (tps, ms) = if spin {
                    (f.busy_tps, f.busy_ms)
                } else {
                    (f.sleep_tps, f.sleep_ms)
                };
                format!(
                    "{tps:.0} ({:.0} % of {:.0}/s; slots busy {:.0} % at the measured {ms:.2} ms/task)",
                    100.0 * tps / (slots as f64 * 1000.0),
                    slots as f64 * 1000.0,
                    100.0 * tps * ms / 1000.0 / slots as f64
                )
            })
            .unwrap_or_else(|| "n/a".into())
        };
        for (spin, what) in [(true, "spin (CPU-bound)"), (false, "sleep")] {
            println!(
                "| tasks/s, 1 ms WASM tasks that {what}, {slots} real processor slot(s) | {} | {} | | | |",
                share(rs, spin),
                share(rp, spin),
            );
        }
        row(
            "p50 submit→answer, no-op WASM task on a real processor, ms",
            rs.map(|f| f.p50),
            rp.map(|f| f.p50),
            c("p50_ms"),
            false,
            3,
        );
        row(
            "p99 submit→answer, no-op WASM task on a real processor, ms",
            rs.map(|f| f.p99),
            rp.map(|f| f.p99),
            c("p99_ms"),
            false,
            3,
        );
        let eta = |f: &processors::RealFigures| {
            format!(
                "{:+.0} % ({:.2} s predicted, {:.2} s taken)",
                (f.eta_predicted / f.eta_actual - 1.0) * 100.0,
                f.eta_predicted,
                f.eta_actual
            )
        };
        println!(
            "| ETA error, `estimate_time_left` right after submitting {n} × 1 ms | {} | {} | no ETA | | |",
            rs.map(eta).unwrap_or_else(|| "n/a".into()),
            rp.map(eta).unwrap_or_else(|| "n/a".into())
        );
        row(
            &format!("tasks/s, `crpc map` over {} no-op inputs via `crpc dev` (built-in processor, default slots)", args.dev_map_inputs),
            dev_map,
            None,
            c("tasks_per_s"),
            true,
            0,
        );
        println!(
            "| processor RSS after the run, MiB, largest | {} | {} | | | |",
            fmt(rs.map(|f| f.processor_rss), 1),
            fmt(rp.map(|f| f.processor_rss), 1)
        );
    }
    Ok(())
}
