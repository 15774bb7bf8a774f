//! Leases, fencing, retries, cancellation, batches, estimates, restarts.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use task_api::Role;

use crate::harness::{assert_error, Api, Server};

fn clients(server: &Server) -> (Api, Api) {
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let worker = user.with_token(&server.token(Role::Worker, "w1"));
    (user, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_worker_loses_lease_and_its_late_answer_is_fenced() {
    let server = Server::start(&["--lease-ttl", "1s", "--retry-backoff", "50ms"]);
    let (user, worker) = clients(&server);
    let id = user.submit(json!({"function": "slow", "args": [1]})).await;

    let first = worker.lease("worker-a", 1, 1.0).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["lease_epoch"], 1);
    // worker-a now goes silent. worker-b long-polls and gets the task once the lease expires.
    let t = Instant::now();
    let second = worker.lease("worker-b", 1, 10.0).await;
    let waited = t.elapsed();
    assert_eq!(second.len(), 1, "re-leased");
    assert_eq!(second[0]["id"], json!(id));
    assert_eq!(second[0]["lease_epoch"], 2);
    assert_eq!(second[0]["task"]["attempt"], 2);
    assert!(
        waited < Duration::from_secs(4),
        "re-leased within the TTL plus a reaper tick: {waited:?}"
    );

    // worker-a wakes up: heartbeat says lost, answer is refused and changes nothing.
    let (_, hb) = worker
        .post(
            "/worker/heartbeat",
            &json!({"worker_id": "worker-a", "leases": [{"id": id, "lease_epoch": 1}]}),
        )
        .await;
    assert_eq!(hb["lost"], json!([id]));
    assert_error(
        &worker.answer(&first[0], json!("from a")).await,
        409,
        "stale_lease",
    );
    let (st, _) = worker.answer(&second[0], json!("from b")).await;
    assert_eq!(st, 200);
    assert_error(
        &worker.answer(&first[0], json!("from a again")).await,
        409,
        "stale_lease",
    );
    // A retried (duplicate) answer from b is accepted idempotently and changes nothing.
    let (st, v) = worker.answer(&second[0], json!("from b")).await;
    assert_eq!(st, 200);
    assert_eq!(v["duplicate"], true);
    let v = user.wait_answer(&id, 5).await;
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["answer"], "from b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_lease_and_carry_progress() {
    let server = Server::start(&["--lease-ttl", "1s"]);
    let (user, worker) = clients(&server);
    let id = user.submit(json!({"function": "long"})).await;
    let lease = worker.lease("w1", 1, 1.0).await.remove(0);
    for pct in [10.0, 40.0, 75.0] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (st, hb) = worker
            .post("/worker/heartbeat", &json!({"worker_id": "w1", "leases": [{"id": id, "lease_epoch": lease["lease_epoch"], "progress": pct}]}))
            .await;
        assert_eq!(st, 200, "{hb}");
        assert_eq!(hb["extended"], json!([id]));
    }
    let (_, v) = user.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(v["state"], "leased", "kept past 1.2 s with a 1 s TTL");
    assert_eq!(v["progress"], 75.0);
    assert_eq!(worker.answer(&lease, json!(1)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_task_fails_after_max_attempts_with_last_error() {
    let server = Server::start(&["--retry-backoff", "20ms"]);
    let (user, worker) = clients(&server);
    let id = user
        .submit(json!({"function": "poison", "max_attempts": 3}))
        .await;
    for attempt in 1..=3 {
        let leases = worker.lease("w1", 1, 5.0).await;
        assert_eq!(leases.len(), 1, "attempt {attempt} leased");
        assert_eq!(leases[0]["task"]["attempt"], attempt);
        let (st, v) = worker
            .post(
                "/worker/submit_answer",
                &json!({"id": id, "lease_epoch": leases[0]["lease_epoch"],
                        "error": {"kind": "retryable", "message": format!("connection reset #{attempt}")}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let v = user.wait_answer(&id, 5).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["attempt"], 3);
    assert_eq!(v["error"]["kind"], "retryable");
    assert_eq!(v["error"]["message"], "connection reset #3");
    assert!(
        worker.lease("w1", 1, 0.3).await.is_empty(),
        "never leased again"
    );
    let (_, stats) = user.get("/user/stats").await;
    assert_eq!(stats["functions"][0]["failures"], 3);

    // A fatal error fails at once.
    let id = user.submit(json!({"function": "bad_input"})).await;
    let l = worker.lease("w1", 1, 5.0).await.remove(0);
    worker
        .post("/worker/submit_answer", &json!({"id": id, "lease_epoch": l["lease_epoch"], "error": {"kind": "fatal", "message": "ValueError"}}))
        .await;
    let v = user.wait_answer(&id, 5).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_fails_a_running_task() {
    let server = Server::start(&["--lease-ttl", "30s"]);
    let (user, worker) = clients(&server);
    let id = user
        .submit(json!({"function": "hang", "timeout_s": 1}))
        .await;
    let lease = worker.lease("w1", 1, 1.0).await.remove(0);
    // Heartbeats cannot extend past timeout_s (+1 s grace).
    let v = user.wait_answer(&id, 10).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "timeout");
    assert_error(&worker.answer(&lease, json!(1)).await, 409, "stale_lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_delete() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    // Queued → cancelled; twice → 409.
    let queued = user.submit(json!({"function": "f", "args": [1]})).await;
    let (st, v) = user
        .post(&format!("/user/tasks/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert_error(
        &user
            .post(&format!("/user/tasks/{queued}/cancel"), &json!({}))
            .await,
        409,
        "already_finished",
    );
    assert!(
        worker.lease("w1", 1, 0.2).await.is_empty(),
        "a cancelled task is never leased"
    );

    // Running → cancelled; the worker hears it at its heartbeat and cannot answer.
    let running = user.submit(json!({"function": "f", "args": [2]})).await;
    let lease = worker.lease("w1", 1, 1.0).await.remove(0);
    let waiter = {
        let user = user.clone();
        let running = running.clone();
        tokio::spawn(async move {
            user.get(&format!("/user/request_answer/{running}?wait=10"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        user.post(&format!("/user/tasks/{running}/cancel"), &json!({}))
            .await
            .0,
        200
    );
    let (_, woke) = waiter.await.unwrap();
    assert_eq!(
        woke["state"], "cancelled",
        "a waiting caller is woken by the cancel"
    );
    let (_, hb) = worker
        .post("/worker/heartbeat", &json!({"worker_id": "w1", "leases": [{"id": running, "lease_epoch": lease["lease_epoch"]}]}))
        .await;
    assert_eq!(hb["cancelled"], json!([running]));
    assert_error(&worker.answer(&lease, json!(2)).await, 409, "stale_lease");

    // Delete removes it.
    let (st, _) = user.delete(&format!("/user/tasks/{running}")).await;
    assert_eq!(st, 200);
    assert_error(
        &user.get(&format!("/user/request_answer/{running}")).await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_then_fifo() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let low = user
        .submit(json!({"function": "f", "args": ["low"], "priority": -5}))
        .await;
    let a = user.submit(json!({"function": "f", "args": ["a"]})).await;
    let b = user.submit(json!({"function": "f", "args": ["b"]})).await;
    let high = user
        .submit(json!({"function": "f", "args": ["high"], "priority": 10}))
        .await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let (_, v) = worker.get("/worker/request_task").await;
        order.push(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(order, vec![high, a, b, low]);
    let (_, v) = worker.get("/worker/request_task").await;
    assert_eq!(
        v["id"],
        Value::Null,
        "seed form: null id when nothing is queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_results_stream_in_completion_order() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let tasks: Vec<Value> = (0..50)
        .map(|i| json!({"function": "square", "args": [i]}))
        .collect();
    let (st, v) = user
        .post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    assert_eq!(st, 201, "{v}");
    let batch = v["batch_id"].as_str().unwrap().to_string();
    let ids: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50);

    // A reader long-polls for results while the worker answers in reverse order.
    let reader = {
        let user = user.clone();
        let batch = batch.clone();
        tokio::spawn(async move {
            let mut got: Vec<(u64, i64)> = Vec::new();
            let mut after = 0;
            loop {
                let (st, v) = user
                    .get(&format!(
                        "/user/batches/{batch}/results?after={after}&limit=7&wait=10"
                    ))
                    .await;
                assert_eq!(st, 200, "{v}");
                for r in v["results"].as_array().unwrap() {
                    got.push((r["index"].as_u64().unwrap(), r["answer"].as_i64().unwrap()));
                }
                after = v["next"].as_i64().unwrap();
                if v["done"] == true {
                    return got;
                }
            }
        })
    };
    let mut leases = worker.lease("w1", 50, 1.0).await;
    assert_eq!(leases.len(), 50);
    leases.reverse();
    for l in &leases {
        let i = l["task"]["args"][0].as_i64().unwrap();
        assert_eq!(worker.answer(l, json!(i * i)).await.0, 200);
    }
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 50, "every result exactly once");
    let expected: Vec<u64> = (0..50).rev().collect();
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        expected,
        "completion order"
    );
    assert!(got.iter().all(|(i, a)| (*i * *i) as i64 == *a));
    let (_, status) = user.get(&format!("/user/batches/{batch}?wait=1")).await;
    assert_eq!(status["done"], true);
    assert_eq!(status["counts"]["succeeded"], 50);
    assert_eq!(status["total"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn estimate_tracks_known_runtime_within_ten_percent() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    // 200 tasks of a function that takes 20 ms, run by 4 simulated workers that report runtime.
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"package": "sim", "function": "sleep20", "args": [i]}))
        .collect();
    let (st, _) = user
        .post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    assert_eq!(st, 201);
    let mut handles = Vec::new();
    for w in 0..4 {
        let worker = worker.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let leases = worker.lease(&format!("sim-{w}"), 1, 0.5).await;
                let Some(l) = leases.into_iter().next() else { return };
                let t = Instant::now();
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))).await.unwrap();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let (st, _) = worker
                    .post("/worker/submit_answer", &json!({"id": l["id"], "lease_epoch": l["lease_epoch"], "answer": null, "runtime_ms": ms}))
                    .await;
                assert_eq!(st, 200);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let (_, stats) = user.get("/user/stats").await;
    let f = &stats["functions"][0];
    assert_eq!(f["count"], 200, "{stats}");
    assert!(
        (f["p50_ms"].as_f64().unwrap() - 20.0).abs() < 3.0,
        "{stats}"
    );

    let tasks: Vec<Value> = (0..100)
        .map(|i| json!({"package": "sim", "function": "sleep20", "args": [i]}))
        .collect();
    user.post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    let (_, est) = user.get("/user/estimate_time_left").await;
    let time = est["time"].as_f64().unwrap();
    let target = 100.0 * 0.020;
    eprintln!("estimate_time_left for 100 queued 20 ms tasks: {time:.4} s (target {target} s)");
    assert!(
        (time - target).abs() / target < 0.10,
        "estimate {time} s vs {target} s: {est}"
    );
    assert_eq!(est["queued"], 100);
    assert_eq!(est["live_slots"], 4, "{est}");
    let eta = est["eta_s"].as_f64().unwrap();
    // The even split over 4 slots, plus half of how late the last task can end (3/4 of one).
    let mean_s = est["per_function"][0]["mean_ms"].as_f64().unwrap() / 1000.0;
    let tail = 0.75 * mean_s / 2.0;
    assert!(
        (eta - (time / 4.0 + tail)).abs() < 1e-9,
        "no overhead reported yet: {est}"
    );
    assert_eq!(est["dispatch_ms"], 0.0);
    // Its argument (0..200) does not explain its runtime: the mean, at half the confidence.
    assert_eq!(est["per_function"][0]["model"], "mean", "{est}");
    assert_eq!(est["confidence"], 0.5, "{est}");

    // Processors report how long a slot idles between tasks (the lease round trip): the ETA
    // adds it once per queued task, and `/user/workers` shows it.
    let (st, e) = worker
        .post(
            "/worker/heartbeat",
            &json!({"worker_id": "sim-0", "dispatch_ms": -1.0}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["error"]["code"], "validation_failed", "{e}");
    for w in 0..4 {
        let (st, _) = worker
            .post(
                "/worker/heartbeat",
                &json!({"worker_id": format!("sim-{w}"), "dispatch_ms": 8.0}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let (_, est) = user.get("/user/estimate_time_left").await;
    assert_eq!(est["dispatch_ms"], 8.0, "{est}");
    let eta = est["eta_s"].as_f64().unwrap();
    let time = est["time"].as_f64().unwrap();
    assert!(
        (eta - ((time + 100.0 * 0.008) / 4.0 + tail)).abs() < 1e-9,
        "{est}"
    );
    let (_, workers) = user.get("/user/workers").await;
    assert_eq!(workers["workers"][0]["dispatch_ms"], 8.0, "{workers}");
    // Processors that run twice as long as predicted count as half the slots.
    for bad in [json!(0.0), json!(1e9), json!("NaN")] {
        let hb = json!({"worker_id": "sim-0", "speed": bad});
        let (st, e) = worker.post("/worker/heartbeat", &hb).await;
        assert_eq!(st, 422, "{bad}: {e}");
    }
    for w in 0..4 {
        let hb = json!({"worker_id": format!("sim-{w}"), "speed": 2.0});
        assert_eq!(worker.post("/worker/heartbeat", &hb).await.0, 200);
    }
    let (_, est) = user.get("/user/estimate_time_left").await;
    let slow = est["eta_s"].as_f64().unwrap();
    assert!(
        (slow - ((time + 100.0 * 0.008) / 2.0 + tail)).abs() < 1e-9,
        "{est}"
    );
    assert_eq!(est["live_slots"], 4, "{est}");
    // A null answer is an answer.
    let (_, list) = user.get("/user/tasks?state=succeeded&limit=1").await;
    let id = list["tasks"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = user.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(v["state"], "succeeded");
    assert!(v.as_object().unwrap().contains_key("answer") || v["answer"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_tasks_answers_and_statistics() {
    let mut server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let done = user
        .submit(json!({"package": "p", "function": "f", "args": [1]}))
        .await;
    let pending = user
        .submit(json!({"package": "p", "function": "f", "args": [2]}))
        .await;
    let l = worker.lease("w1", 1, 1.0).await.remove(0);
    assert_eq!(l["id"], json!(done));
    worker
        .post(
            "/worker/submit_answer",
            &json!({"id": done, "lease_epoch": 1, "answer": {"x": 1}, "runtime_ms": 123.0}),
        )
        .await;

    let (took, status) = server.terminate();
    assert!(status.success(), "clean exit: {status:?}\n{}", server.log());
    assert!(took < Duration::from_secs(5), "drained in {took:?}");

    server.restart();
    let v = user.wait_answer(&done, 1).await;
    assert_eq!(v["answer"], json!({"x": 1}));
    let (_, v) = user.get(&format!("/user/request_answer/{pending}")).await;
    assert_eq!(v["state"], "queued", "{v}");
    let (_, stats) = user.get("/user/stats").await;
    assert_eq!(stats["functions"][0]["count"], 1);
    assert_eq!(stats["functions"][0]["mean_ms"], 123.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_long_polls_at_once() {
    let mut server = Server::start(&[]);
    let (_, worker) = clients(&server);
    let parked = {
        let worker = worker.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = worker
                .try_post(
                    "/worker/request_task",
                    &json!({"worker_id": "parked", "max_tasks": 1, "wait_s": 30}),
                )
                .await;
            (t.elapsed(), r.map(|(s, _)| s.as_u16()))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, status) = server.terminate();
    assert!(status.success());
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    let (elapsed, r) = parked.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(6),
        "long-poll returned in {elapsed:?}"
    );
    assert_eq!(
        r.unwrap(),
        200,
        "the parked worker got an empty answer, not an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed_with_their_slots() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    worker
        .post(
            "/worker/request_task",
            &json!({"worker_id": "gpu-box", "max_tasks": 2, "wait_s": 0,
               "capabilities": {"slots": 3, "gpus": 1, "gpu_names": ["H100"]}}),
        )
        .await;
    let (_, v) = user.get("/user/workers").await;
    assert_eq!(v["live_slots"], 3);
    assert_eq!(v["workers"][0]["worker_id"], "gpu-box");
    assert_eq!(
        v["workers"][0]["capabilities"]["gpu_names"],
        json!(["H100"])
    );

    // A GPU task goes only to a worker that offers a GPU.
    let id = user
        .submit(json!({"function": "train", "resources": {"gpus": 1}}))
        .await;
    assert!(worker.lease("cpu-box", 1, 0.2).await.is_empty());
    let (_, v) = worker
        .post("/worker/request_task", &json!({"worker_id": "gpu-box", "max_tasks": 1, "wait_s": 1, "capabilities": {"slots": 3, "gpus": 1}}))
        .await;
    assert_eq!(v["leases"][0]["id"], json!(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_goes_back_without_using_an_attempt() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let id = user
        .submit(json!({"function": "once", "args": [1], "max_attempts": 1}))
        .await;
    let held = worker.lease("worker-a", 1, 1.0).await;
    assert_eq!(held.len(), 1);
    let refs = json!([{"id": id, "lease_epoch": held[0]["lease_epoch"]}]);

    // Another worker cannot hand it back; too many leases at once is refused.
    let (st, v) = worker
        .post(
            "/worker/release",
            &json!({"worker_id": "worker-b", "leases": refs}),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "{v}");
    assert_eq!(v["released"], json!([]));
    assert_eq!(v["not_released"], json!([id]));
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"id": id, "lease_epoch": 1}))
        .collect();
    let got = worker
        .post(
            "/worker/release",
            &json!({"worker_id": "worker-a", "leases": many}),
        )
        .await;
    assert_error(&got, 422, "validation_failed");

    // Its holder hands it back: queued, attempt 0, and a max_attempts 1 task still runs.
    let (st, v) = worker
        .post(
            "/worker/release",
            &json!({"worker_id": "worker-a", "leases": refs}),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "{v}");
    assert_eq!(v["released"], json!([id]));
    let (_, a) = user.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(
        (a["state"].clone(), a["attempt"].clone()),
        (json!("queued"), json!(0))
    );
    let again = worker.lease("worker-b", 1, 1.0).await;
    assert_eq!(again[0]["task"]["attempt"], 1);
    let (st, _) = worker.answer(&held[0], json!("late")).await;
    assert_eq!(st.as_u16(), 409, "the released lease's answer is stale");
    let (st, v) = worker.answer(&again[0], json!("done")).await;
    assert_eq!(st.as_u16(), 200, "{v}");
    assert_eq!(user.wait_answer(&id, 5).await["answer"], json!("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_follows_measured_runtimes_and_answers_ride_along() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let ask = |max: u32, prefetch: u32, held_ms: f64, answers: Value| {
        json!({"worker_id": "w", "max_tasks": max, "prefetch": prefetch, "held_ms": held_ms,
               "answers": answers, "wait_s": 0})
    };
    for _ in 0..12 {
        user.submit(json!({"function": "fast"})).await;
    }
    // Never measured: only the free slot's lease; the claimed extras went back unused.
    let (st, v) = worker
        .post("/worker/request_task", &ask(1, 5, 0.0, json!([])))
        .await;
    assert_eq!(st.as_u16(), 200, "{v}");
    let first = v["leases"].as_array().unwrap().clone();
    assert_eq!(first.len(), 1, "{v}");
    assert!(first[0].get("expected_ms").is_none(), "{v}");
    let (_, tasks) = user.get("/user/tasks?state=queued&limit=100").await;
    let queued = tasks["tasks"].as_array().unwrap();
    assert_eq!(queued.len(), 11, "{tasks}");
    assert!(queued.iter().all(|t| t["attempt"] == 0), "{tasks}");

    // Its answer rides on a request that asks for nothing (it never waits).
    let answer = json!([{"id": first[0]["id"], "lease_epoch": first[0]["lease_epoch"],
                         "worker_id": "w", "answer": 1, "runtime_ms": 2.0},
                        {"id": "00000000-0000-7000-8000-000000000000", "lease_epoch": 1,
                         "worker_id": "w", "answer": 1}]);
    let mut only_answers = ask(0, 0, 0.0, answer);
    only_answers["wait_s"] = json!(30);
    let (st, v) = tokio::time::timeout(
        Duration::from_secs(10),
        worker.post("/worker/request_task", &only_answers),
    )
    .await
    .expect("max_tasks 0 never long-polls");
    assert_eq!(st.as_u16(), 200, "{v}");
    assert_eq!(v["leases"], json!([]));
    let statuses: Vec<&Value> = v["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(200), &json!(404)], "{v}");

    // Measured at 2 ms: five extras fit one slot's 50 ms; then only what the held work leaves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, v) = worker
        .post("/worker/request_task", &ask(1, 5, 0.0, json!([])))
        .await;
    let leases = v["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 6, "{v}");
    assert!(leases.iter().all(|l| l["expected_ms"] == 2.0), "{v}");
    let (_, v) = worker
        .post("/worker/request_task", &ask(0, 5, 45.0, json!([])))
        .await;
    assert_eq!(
        v["leases"].as_array().unwrap().len(),
        2,
        "45 + 2 + 2 ≤ 50: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lease_requests_are_refused_and_change_nothing() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let id = user.submit(json!({"function": "f"})).await;
    let big_answers: Vec<Value> = (0..1001)
        .map(|_| json!({"id": id, "lease_epoch": 1, "answer": 1}))
        .collect();
    for (body, field) in [
        (json!({"max_tasks": 1001}), "max_tasks"),
        (json!({"max_tasks": 1, "prefetch": 1000}), "prefetch"),
        (json!({"max_tasks": 1, "held_ms": -1.0}), "held_ms"),
        (json!({"max_tasks": 1, "held_ms": 1e20}), "held_ms"),
        (
            json!({"max_tasks": 1, "answers": big_answers.clone()}),
            "answers",
        ),
        (
            json!({"max_tasks": 1, "capabilities": {"slots": 2, "gpu_slots": 3}}),
            "gpu_slots",
        ),
    ] {
        let got = worker.post("/worker/request_task", &body).await;
        assert_error(&got, 422, "validation_failed");
        assert!(got.1.to_string().contains(field), "{field}: {}", got.1);
    }
    let got = worker
        .post("/worker/submit_answer", &json!({"answers": big_answers}))
        .await;
    assert_error(&got, 422, "validation_failed");
    for raw in [
        r#"{"max_tasks": 1, "held_ms": "NaN"}"#,
        r#"{"max_tasks": 1, "prefetch": -1}"#,
        r#"{"max_tasks": 1, "prefetch": 1e20}"#,
        r#"{"max_tasks": 1, "incarnation": "../../etc/passwd"}"#,
        r#"{"max_tasks": 1, "incarnation": 7}"#,
        r#"{"max_tasks": 1, "again": true}"#,
        r#"{"max_tasks": 1, "request_id": "x", "again": true}"#,
        r#"{"max_tasks": 1, "gpu_only": "yes"}"#,
        r#"{"max_tasks": 1, "capabilities": {"gpu_slots": -1}}"#,
    ] {
        let (st, v) = worker
            .post_raw("/worker/request_task", raw.as_bytes().to_vec())
            .await;
        assert_eq!(st.as_u16(), 422, "{raw}: {v}");
    }
    // A run that ended must say which worker it was; an older run of a worker id than one
    // already seen is told it was superseded (and granted nothing).
    let got = worker
        .post("/worker/release", &json!({"ended": uuid::Uuid::now_v7()}))
        .await;
    assert_error(&got, 422, "validation_failed");
    let (old, new) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let ask = |run| json!({"worker_id": "w", "max_tasks": 0, "incarnation": run});
    assert_eq!(worker.post("/worker/request_task", &ask(new)).await.0, 200);
    let got = worker
        .post(
            "/worker/request_task",
            &json!({"worker_id": "w", "max_tasks": 1, "incarnation": old}),
        )
        .await;
    assert_error(&got, 409, "superseded");
    let (_, a) = user.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(
        (a["state"].clone(), a["attempt"].clone()),
        (json!("queued"), json!(0)),
        "{a}"
    );
}

/// Arguments are cost measures now: numbers far out of range, huge strings and nested junk
/// get no measure (the task is predicted at its function's mean), and never break the estimate
/// of anyone else's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cost_measures_leave_the_estimate_finite() {
    let server = Server::start(&[]);
    let (user, worker) = clients(&server);
    let ms =
        |x: f64| json!({"max_tasks": 1, "answers": [], "capabilities": {"slots": 1}, "held_ms": x});
    assert_eq!(worker.post("/worker/request_task", &ms(0.0)).await.0, 200);
    for args in [
        json!([1e300, -1e300, 1.7976931348623157e308]),
        json!(["x".repeat(100_000), [[[[]]]], {"a": 1}]),
        json!([-5, 0, 1e12]),
    ] {
        user.submit(json!({"function": "f", "args": args})).await;
    }
    // One of them runs and is answered, so `f` has statistics and a model.
    let (_, v) = worker.post("/worker/request_task", &ms(0.0)).await;
    let lease = &v["leases"][0];
    let answer = json!({"id": lease["id"], "lease_epoch": lease["lease_epoch"], "answer": 1, "runtime_ms": 5.0});
    let (st, _) = worker
        .post("/worker/submit_answer", &json!({"answers": [answer]}))
        .await;
    assert_eq!(st, 200);
    let (st, est) = user.get("/user/estimate_time_left").await;
    assert_eq!(st, 200, "{est}");
    for k in ["time", "eta_s", "eta_p10_s", "eta_p90_s"] {
        let x = est[k].as_f64().unwrap_or(f64::NAN);
        assert!(x.is_finite() && (0.0..1e6).contains(&x), "{k}: {est}");
    }
    assert_eq!(est["queued"], 2, "{est}");
}
