//! Files through the server against a plain static file server, in the same run: `curl`
//! uploads a 1 GiB file (`PUT /files`) and downloads it (`GET /files/{sha256}`), and does the
//! same against a bare server on the same HTTP stack (actix-web) that only streams the bytes to
//! and from a file: no hashing, no database, no token. The task server's resident memory is
//! sampled every 20 ms while it works: a streamed upload must not grow it by the file.
//!
//! `cargo run --release -p crpc-bench --bin files [-- --mib 1024 --rounds 3]`
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crpc_bench::{build_release, rss_mib, start_service, token};

#[derive(Parser)]
struct Args {
    /// Size of the file, MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Rounds (each: the bare server and the task server, upload then download).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// The bare server's file.
struct Plain(PathBuf);

async fn plain_put(store: web::Data<Plain>, mut body: web::Payload) -> HttpResponse {
    // Written in 4 MiB blocks, as the task server's store writes parts: a strong baseline.
    let f = tokio::fs::File::create(&store.0).await.expect("create");
    let mut f = tokio::io::BufWriter::with_capacity(4 << 20, f);
    while let Some(chunk) = body.next().await {
        f.write_all(&chunk.expect("body")).await.expect("write");
    }
    f.flush().await.expect("flush");
    HttpResponse::Ok().finish()
}

async fn plain_get(store: web::Data<Plain>) -> HttpResponse {
    let f = tokio::fs::File::open(&store.0).await.expect("open");
    let len = f.metadata().await.expect("meta").len();
    // The same read size as the task server's blob store.
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 << 10);
    HttpResponse::Ok().body(actix_web::body::SizedStream::new(len, stream))
}

/// Starts the bare server on a free port in its own thread; its URL.
fn start_plain(dir: &Path) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/f", listener.local_addr()?);
    let data = web::Data::new(Plain(dir.join("plain.bin")));
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/f", web::put().to(plain_put))
                    .route("/f", web::get().to(plain_get))
            })
            .listen(listener)
            .expect("listen")
            .run()
            .await
        })
    });
    Ok(url)
}

/// `n` MiB of bytes that do not compress or repeat.
fn make_file(path: &Path, mib: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.flush()?;
    Ok(())
}

/// Runs curl; seconds taken, and what it printed. Dirty pages are written back first, so no
/// transfer pays for the one before it.
fn curl(args: &[&str]) -> anyhow::Result<(f64, String)> {
    Command::new("sync").status().context("sync")?;
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()
        .context("curl")?;
    let took = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "curl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Samples the resident memory of `pid` until stopped; the largest sample, MiB.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            if let Some((now, _)) = rss_mib(pid) {
                peak = peak.max(now);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = build_release(&["task-server", "registry"])?;
    let dir = tempfile::Builder::new()
        .prefix("crpc-files-bench-")
        .tempdir()?;
    let file = dir.path().join("big.bin");
    eprintln!("writing {} MiB…", args.mib);
    make_file(&file, args.mib)?;
    let file_s = file.display().to_string();
    let plain = start_plain(dir.path())?;
    let server = start_service(&bin.join("task-server"), &[])?;
    let user = token(&bin.join("task-server"), server.data_dir(), "user")?;
    let auth = format!("Authorization: Bearer {user}");
    let put_url = format!("{}/files", server.url);
    let mib = args.mib as f64;
    let (mut rows, mut growth) = (Vec::new(), 0.0f64);
    for round in 1..=args.rounds {
        eprintln!("round {round}…");
        let (p_up, _) = curl(&["-T", &file_s, &plain])?;
        let (p_down, _) = curl(&["-o", "/dev/null", &plain])?;
        let before = rss_mib(server.pid()).context("server rss")?.0;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_rss(server.pid(), stop.clone());
        let (c_up, body) = curl(&["-T", &file_s, "-H", &auth, &put_url])?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let sha = v["sha256"].as_str().context("sha256")?.to_string();
        let get_url = format!("{}/files/{sha}", server.url);
        let (c_down, _) = curl(&["-o", "/dev/null", "-H", &auth, &get_url])?;
        stop.store(true, Ordering::Relaxed);
        let peak = sampler.join().expect("sampler");
        growth = growth.max(peak - before);
        rows.push((p_up, c_up, p_down, c_down, before, peak));
    }
    println!(
        "| {} MiB, curl on loopback | bare server | crpc server | crpc / bare |",
        args.mib
    );
    println!("|---|---|---|---|");
    for (i, (p_up, c_up, p_down, c_down, before, peak)) in rows.iter().enumerate() {
        let r = i + 1;
        println!(
            "| upload, round {r} | {:.0} MiB/s | {:.0} MiB/s | {:.0} % |",
            mib / p_up,
            mib / c_up,
            100.0 * p_up / c_up
        );
        println!(
            "| download, round {r} | {:.0} MiB/s | {:.0} MiB/s | {:.0} % |",
            mib / p_down,
            mib / c_down,
            100.0 * p_down / c_down
        );
        println!(
            "| server RSS, round {r} | | {before:.0} → {peak:.0} MiB | +{:.0} MiB |",
            peak - before
        );
    }
    println!();
    println!("largest server RSS growth during a transfer: {growth:.0} MiB");
    Ok(())
}
