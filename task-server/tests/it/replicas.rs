//! Several stateless server replicas on one PostgreSQL database.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use task_api::Role;
use task_server::auth::{mint, Secret};

use crate::harness::{binary, Proc};
use crate::store_conformance::Postgres;

/// What one simulated worker saw of one lease.
#[derive(Debug, Clone)]
struct Held {
    epoch: i64,
    worker: usize,
    from: Instant,
    to: Instant,
    accepted: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_one_killed_nothing_lost_or_doubled() {
    const N: usize = 10_000;
    let Some(db) = Postgres::new().await else {
        return;
    };
    let url = db.url().to_string();
    let flags = [
        "--database-url",
        &url,
        "--lease-ttl",
        "2s",
        "--retry-backoff",
        "50ms",
        "--http-workers",
        "1",
    ];
    let first = Proc::start(&binary(), &flags);
    let secret_file = first.data_dir().join("jwt_secret");
    let mut with_secret = flags.to_vec();
    with_secret.extend(["--jwt-secret-file", secret_file.to_str().unwrap()]);
    let replicas = vec![
        first,
        Proc::start(&binary(), &with_secret),
        Proc::start(&binary(), &with_secret),
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let secret = Secret::load(None, Some(&secret_file), replicas[0].data_dir()).unwrap();
    let user = mint(&secret, "alice", Role::User, Duration::from_secs(600)).unwrap();
    let worker_token = mint(&secret, "w", Role::Worker, Duration::from_secs(600)).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();

    // Submit 10,000 tasks in batches of 100, spread over the replicas.
    for b in 0..N / 100 {
        let tasks: Vec<Value> = (b * 100..(b + 1) * 100)
            .map(|i| json!({"function": "double", "args": [i]}))
            .collect();
        let r = http
            .post(format!("{}/user/submit_batch", urls[b % 3]))
            .bearer_auth(&user)
            .json(&json!({"tasks": tasks}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    // 4 workers, each starting on its own replica and moving on when that one stops answering
    // (what a load balancer does).
    let held: Arc<Mutex<HashMap<String, Vec<Held>>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (http, urls, token) = (http.clone(), urls.clone(), worker_token.clone());
        let (held, accepted, stop) = (held.clone(), accepted.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut at = w % 3;
            while !stop.load(Ordering::Relaxed) {
                let got = http
                    .post(format!("{}/worker/request_task", urls[at]))
                    .bearer_auth(&token)
                    .json(&json!({"worker_id": format!("w{w}"), "max_tasks": 20, "wait_s": 0.5}))
                    .send()
                    .await;
                let v: Value = match got {
                    Ok(r) if r.status().is_success() => r.json().await.unwrap(),
                    _ => {
                        at = (at + 1) % 3;
                        continue;
                    }
                };
                let from = Instant::now();
                let leases = v["leases"].as_array().cloned().unwrap_or_default();
                if leases.is_empty() {
                    continue;
                }
                let answers: Vec<Value> = leases
                    .iter()
                    .map(|l| json!({"id": l["id"], "lease_epoch": l["lease_epoch"], "answer": l["task"]["args"][0].as_i64().unwrap() * 2}))
                    .collect();
                // Answers are retried (on any replica) until one says what became of them.
                let results = loop {
                    match http
                        .post(format!("{}/worker/submit_answer", urls[at]))
                        .bearer_auth(&token)
                        .json(&json!({"answers": answers}))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => break r.json::<Value>().await.unwrap()["results"].clone(),
                        _ => at = (at + 1) % 3,
                    }
                };
                let to = Instant::now();
                let mut held = held.lock().unwrap();
                for (l, r) in leases.iter().zip(results.as_array().unwrap()) {
                    let ok = r["status"] == 200;
                    if ok {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    held.entry(l["id"].as_str().unwrap().to_string()).or_default().push(Held {
                        epoch: l["lease_epoch"].as_i64().unwrap(),
                        worker: w,
                        from,
                        to,
                        accepted: ok,
                    });
                }
            }
        }));
    }

    let mut replicas = replicas;
    let t = Instant::now();
    while accepted.load(Ordering::Relaxed) < N / 2 {
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[1].kill9();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let t = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if done as usize == N {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "only {done} of {N} succeeded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // Checked in the database: every task answered once, with its own value.
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE state <> 'succeeded' OR answer <> to_jsonb((args->>0)::bigint * 2) \
         OR answered_epoch IS NULL OR answered_epoch <> lease_epoch",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(wrong, 0);
    // Seen by the workers: each task accepted exactly once, and no task held by two workers at
    // once (a second lease only ever starts after the first holder was done with it).
    let held = held.lock().unwrap();
    assert_eq!(held.len(), N, "every task was leased");
    for (id, hs) in held.iter() {
        assert_eq!(
            hs.iter().filter(|h| h.accepted).count(),
            1,
            "task {id}: {hs:?}"
        );
        let mut hs = hs.clone();
        hs.sort_by_key(|h| h.epoch);
        for pair in hs.windows(2) {
            assert!(
                pair[0].epoch < pair[1].epoch,
                "task {id} leased twice at one epoch: {hs:?}"
            );
            assert!(
                pair[0].to <= pair[1].from || pair[0].worker == pair[1].worker,
                "task {id} held by two live workers at once: {hs:?}"
            );
        }
    }
    drop(pool);
    drop(replicas);
}
