//! kill -9 in the middle of work: nothing lost, nothing answered twice.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use task_api::Role;

use crate::harness::{Api, Server};

/// Posts until the server gives an HTTP answer (it may be down for a while).
async fn post_retrying(api: &Api, path: &str, body: &Value) -> (u16, Value) {
    loop {
        match api.try_post(path, body).await {
            Ok((st, v)) if st.as_u16() < 500 => return (st.as_u16(), v),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_mid_way_loses_and_duplicates_nothing() {
    const N: usize = 1000;
    let mut server = Server::start(&[
        "--lease-ttl",
        "2s",
        "--retry-backoff",
        "50ms",
        "--reap-interval",
        "100ms",
    ]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let worker = user.with_token(&server.token(Role::Worker, "w"));

    // Submit 1,000 tasks, one request each, 8 at a time.
    let ids: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut subs = Vec::new();
    for s in 0..8 {
        let (user, ids) = (user.clone(), ids.clone());
        subs.push(tokio::spawn(async move {
            for i in (s..N).step_by(8) {
                let body =
                    json!({"function": "double", "args": [i], "idempotency_key": format!("k{i}")});
                let (st, v) = post_retrying(&user, "/user/submit_task", &body).await;
                assert!(st == 201 || st == 200, "{st} {v}");
                ids.lock()
                    .unwrap()
                    .push((i, v["id"].as_str().unwrap().to_string()));
            }
        }));
    }
    for s in subs {
        s.await.unwrap();
    }
    let ids = Arc::try_unwrap(ids).unwrap().into_inner().unwrap();
    assert_eq!(ids.len(), N);

    // 4 workers answer; each records which (task, epoch) the server accepted.
    let accepted: Arc<Mutex<HashMap<String, HashSet<i64>>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (api, accepted, answered, stop) = (
            worker.clone(),
            accepted.clone(),
            answered.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (st, v) = post_retrying(
                    &api,
                    "/worker/request_task",
                    &json!({"worker_id": format!("w{w}"), "max_tasks": 10, "wait_s": 0.5}),
                )
                .await;
                assert_eq!(st, 200, "{v}");
                for l in v["leases"].as_array().unwrap() {
                    let i = l["task"]["args"][0].as_i64().unwrap();
                    tokio::time::sleep(Duration::from_micros(300)).await;
                    let body =
                        json!({"id": l["id"], "lease_epoch": l["lease_epoch"], "answer": i * 2});
                    let (st, v) = post_retrying(&api, "/worker/submit_answer", &body).await;
                    match st {
                        200 => {
                            let id = l["id"].as_str().unwrap().to_string();
                            accepted
                                .lock()
                                .unwrap()
                                .entry(id)
                                .or_default()
                                .insert(l["lease_epoch"].as_i64().unwrap());
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        409 => {} // re-leased after the crash; someone else answers
                        other => panic!("unexpected {other}: {v}"),
                    }
                }
            }
        }));
    }

    // Kill -9 half way through, restart on the same port and data.
    let t = Instant::now();
    while answered.load(Ordering::Relaxed) < N / 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "workers made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    let at_kill = answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();

    // Wait until every task is finished.
    let t = Instant::now();
    loop {
        let (_, v) = user.get("/user/tasks?state=succeeded&limit=1000").await;
        let n = v["tasks"].as_array().map(|a| a.len()).unwrap_or(0);
        if n == N {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "only {n} of {N} succeeded\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        at_kill < N,
        "the kill happened mid-way ({at_kill} answered)"
    );

    // Every task answered exactly once, with the right value.
    let accepted = accepted.lock().unwrap().clone();
    for (i, id) in &ids {
        let epochs = accepted.get(id).cloned().unwrap_or_default();
        assert_eq!(
            epochs.len(),
            1,
            "task {i} ({id}) accepted for epochs {epochs:?}"
        );
        let (st, v) = user.get(&format!("/user/request_answer/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(v["state"], "succeeded");
        assert_eq!(v["answer"], json!(*i as i64 * 2), "task {i}");
    }
    assert_eq!(accepted.len(), N);
}
