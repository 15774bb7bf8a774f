//! Server + registry + real `task-processor` processes running the example packages.
use std::time::{Duration, Instant};

use crpc_tests::Cluster;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_package_answers_and_reports_progress() {
    let c = Cluster::start(&[]);
    c.publish("monte-carlo-pi", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let id = c
        .submit(json!({"function": "estimate_pi", "args": [60_000_000]}))
        .await;
    let mut seen = Vec::new();
    let started = Instant::now();
    let done = loop {
        let v = c.answer(&id).await;
        if v["state"] == "leased" {
            if let Some(p) = v["progress"].as_f64() {
                seen.push(p);
            }
        }
        if v["state"] == "succeeded" || v["state"] == "failed" {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["state"], "succeeded", "{done}; log: {}", p.log());
    let pi = done["answer"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "{pi}");
    assert!(
        seen.iter().any(|&p| p > 0.0 && p < 100.0),
        "progress seen while running: {seen:?}"
    );
    println!(
        "estimate_pi(6e7) = {pi} in {:?}; progress seen while running: {seen:?}",
        started.elapsed()
    );
    // Advertised: the cached package, from the processor's next request after the answer
    // (which may come a moment after the answer is visible).
    let since = Instant::now();
    loop {
        let (_, w) = c.user.get("/user/workers").await;
        if w.to_string().contains("monte-carlo-pi@1.0.0") {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(15), "{w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_stops_timeouts_memory_hogs_and_file_access() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "1", "--wasm-memory-mb", "256"]);
    // Warm the cache so the timings below measure the run, not the install.
    let id = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [1]}))
        .await;
    assert_eq!(c.wait(&id, Duration::from_secs(60)).await["answer"], 1);

    let t = Instant::now();
    let id = c
        .submit(json!({"package": "testkit", "function": "spin", "timeout_s": 2}))
        .await;
    let v = c.wait(&id, Duration::from_secs(30)).await;
    let took = t.elapsed();
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert!(took < Duration::from_secs(3), "timeout took {took:?}");
    println!(
        "loop {{}} with timeout_s=2 failed after {took:?}: {}",
        v["error"]
    );

    // The slot still works (a fresh instance replaced the stopped one).
    let id = c
        .submit(json!({"package": "testkit", "function": "echo", "args": ["after"]}))
        .await;
    assert_eq!(
        c.wait(&id, Duration::from_secs(30)).await["answer"],
        "after"
    );

    let id = c
        .submit(json!({"package": "testkit", "function": "alloc_mb", "args": [512]}))
        .await;
    let v = c.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(v["state"], "failed", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("out of memory") && msg.contains("256 MiB"),
        "{v}"
    );
    let id = c
        .submit(json!({"package": "testkit", "function": "alloc_mb", "args": [64]}))
        .await;
    assert_eq!(c.wait(&id, Duration::from_secs(30)).await["answer"], 64);

    let id = c
        .submit(json!({"package": "testkit", "function": "read_file", "args": ["/etc/passwd"]}))
        .await;
    let v = c.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert!(!v.to_string().contains("root:"), "{v}");
    println!("reading /etc/passwd: {}", v["error"]);

    // A guest-reported retryable error is retried; a fatal one is not.
    let id = c
        .submit(json!({"package": "testkit", "function": "fail", "args": ["fatal", "bad input"], "max_attempts": 3}))
        .await;
    let v = c.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(
        (v["error"]["kind"].as_str(), v["attempt"].as_u64()),
        (Some("fatal"), Some(1)),
        "{v}"
    );
    assert!(
        p.log().contains("no NVIDIA driver found") || p.log().contains("NVML driver"),
        "{}",
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_info_reports_the_slot_devices() {
    let c = Cluster::start(&[]);
    c.publish("gpu-info", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let id = c.submit(json!({"function": "devices"})).await;
    let v = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    if p.log().contains("no NVIDIA driver found") {
        assert_eq!(v["answer"], json!([]), "{v}");
    }
    println!("gpu-info on a CPU slot: {}", v["answer"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_package_sets_up_a_venv_and_runs_two_versions_side_by_side() {
    let c = Cluster::start(&[]);
    c.publish("wordcount", None).await;
    c.publish("wordcount", Some("2.0.0")).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let mut ids = Vec::new();
    for v in ["1.0.0", "2.0.0"] {
        ids.push((
            v,
            c.submit(json!({"package": "wordcount", "version": v, "function": "version"}))
                .await,
            c.submit(json!({"package": "wordcount", "version": v, "function": "top_words", "args": ["a b b c c c"], "kwargs": {"n": 2}}))
                .await,
        ));
    }
    for (v, vid, tid) in ids {
        let a = c.wait(&vid, Duration::from_secs(120)).await;
        assert_eq!(a["answer"], v, "{a}; log: {}", p.log());
        let a = c.wait(&tid, Duration::from_secs(60)).await;
        assert_eq!(a["answer"], json!([["c", 3], ["b", 2]]), "{a}");
        let dir = p.cache.path().join("cache/pkgs/wordcount").join(v);
        assert!(dir.join(".venv/bin/python").exists(), "venv of {v}");
        let setup_log = std::fs::read_to_string(dir.join(".crpc-cache/setup.log")).unwrap();
        assert!(
            setup_log.contains("Successfully installed crpc-worker"),
            "{setup_log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_native_task_kills_its_process_tree() {
    let c = Cluster::start(&["--lease-ttl", "3s"]);
    c.publish("wordcount", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let id = c
        .submit(json!({"package": "wordcount", "function": "pid"}))
        .await;
    let v = c.wait(&id, Duration::from_secs(120)).await;
    let pgid = v["answer"]["pgid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{v}; {}", p.log()));
    // The program runs below the sandbox launcher, which leads the group.
    assert_ne!(v["answer"]["pid"], v["answer"]["pgid"], "{v}");

    let id = c
        .submit(json!({"package": "wordcount", "function": "slow", "args": [60]}))
        .await;
    let until = Instant::now() + Duration::from_secs(30);
    while c.answer(&id).await["progress"].as_f64().unwrap_or(0.0) <= 0.0 {
        assert!(Instant::now() < until, "never made progress: {}", p.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(group_alive(pgid), "the program runs before the cancel");
    let t = Instant::now();
    let (st, b) = c
        .user
        .post(&format!("/user/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    while group_alive(pgid) {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "process group {pgid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("process group gone {:?} after the cancel", t.elapsed());
    assert_eq!(c.answer(&id).await["state"], "cancelled");
    // The next task gets a fresh program.
    let id = c
        .submit(json!({"package": "wordcount", "function": "pid"}))
        .await;
    let v = c.wait(&id, Duration::from_secs(60)).await;
    assert_ne!(v["answer"]["pgid"].as_i64(), Some(pgid), "{v}");
}

fn group_alive(pgid: i64) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_one_processor_loses_and_duplicates_nothing() {
    let c = Cluster::start(&["--lease-ttl", "2s"]);
    c.publish("testkit", None).await;
    let mut a = c.processor(&["--cpu-slots", "2"]);
    let b = c.processor(&["--cpu-slots", "2"]);
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"package": "testkit", "function": "busy_ms", "args": [10 + i % 7]}))
        .collect();
    let (st, batch) = c
        .user
        .post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    assert_eq!(st, 201, "{}", batch["error"]);
    let batch_id = batch["batch_id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = c.user.get(&format!("/user/batches/{batch_id}")).await;
        if v["counts"]["succeeded"].as_u64().unwrap_or(0) >= 60 {
            break;
        }
        assert!(Instant::now() < until, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    let ids: Vec<String> = batch["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    let mut retried = 0;
    for (i, id) in ids.iter().enumerate() {
        let v = c.wait(id, Duration::from_secs(120)).await;
        assert_eq!(v["state"], "succeeded", "{v}; survivor log: {}", b.log());
        assert_eq!(v["answer"], json!(10 + i % 7), "{v}");
        if v["attempt"].as_u64() > Some(1) {
            retried += 1;
        }
    }
    // Exactly once: each task has one accepted answer (fencing refuses any second one).
    let (_, tasks) = c.user.get("/user/tasks?limit=1000").await;
    let rows = tasks["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|t| t["state"] == "succeeded"));
    println!("200 tasks answered once each after kill -9 of one of two processors; {retried} re-run on the survivor");
    // The survivor measured its dispatch overhead (slot idle time between tasks while work was
    // waiting) and reported it with a heartbeat; the ETA uses it.
    let until = Instant::now() + Duration::from_secs(10);
    let dispatch = loop {
        let (_, w) = c.user.get("/user/workers").await;
        let d: Vec<f64> = w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["dispatch_ms"].as_f64())
            .collect();
        if !d.is_empty() {
            break d;
        }
        assert!(Instant::now() < until, "no dispatch_ms reported: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dispatch.iter().all(|d| *d >= 0.0 && *d < 5000.0),
        "{dispatch:?}"
    );
    // With prefetch most tasks start with no round trip, so the figure may be ~0; it is there.
    let (_, est) = c.user.get("/user/estimate_time_left").await;
    assert!(est["dispatch_ms"].as_f64().unwrap() >= 0.0, "{est}");
    println!("dispatch overhead reported: {dispatch:?} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restart_reuses_the_cache() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "1", "--drain-timeout", "10s"]);
    let id = c
        .submit(json!({"package": "testkit", "function": "busy_ms", "args": [1500]}))
        .await;
    while c.answer(&id).await["state"] != "leased" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The running task finishes and its answer is delivered before the processor exits.
    let status = p.terminate();
    assert!(status.success(), "{status}; {}", p.log());
    let v = c.answer(&id).await;
    assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    p.restart();
    assert!(p.log().contains("1 version(s) ready"), "{}", p.log());
    let id = c
        .submit(json!({"package": "testkit", "function": "echo", "args": ["warm"]}))
        .await;
    assert_eq!(c.wait(&id, Duration::from_secs(30)).await["answer"], "warm");
}
