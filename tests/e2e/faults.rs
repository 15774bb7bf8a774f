//! Issue 18's acceptance: real processors and servers killed, stopped and restarted while they
//! work; nothing is lost or done twice, and recovery does not wait out lease TTLs.
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crpc_tests::{Cluster, Proc, TestDatabase, Worker};
use serde_json::{json, Value};

use crate::prefetch::{sleep_task, submit_batch, warm};

/// Until the batch is finished (every task terminal), at most `limit`; its record.
async fn batch_finished(c: &Cluster, batch: &str, limit: Duration, logs: &[&Worker]) -> Value {
    let until = Instant::now() + limit;
    loop {
        let (_, v) = c.user.get(&format!("/user/batches/{batch}")).await;
        let counts = &v["counts"];
        let terminal: u64 = ["succeeded", "failed", "cancelled"]
            .iter()
            .filter_map(|s| counts[*s].as_u64())
            .sum();
        if Some(terminal) == v["total"].as_u64() {
            return v;
        }
        if Instant::now() > until {
            let logs: Vec<String> = logs.iter().map(|w| tail(&w.log())).collect();
            panic!("batch not finished after {limit:?}: {v}; logs: {logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(log: &str) -> String {
    let start = log.len().saturating_sub(4000);
    log[log.ceil_char_boundary(start)..].to_string()
}

/// Every result the batch streams, read page by page: how often each task id appears, and the
/// results themselves.
async fn batch_results(c: &Cluster, batch: &str) -> (HashMap<String, usize>, Vec<Value>) {
    let (mut seen, mut all, mut after) = (HashMap::new(), Vec::new(), 0);
    loop {
        let path = format!("/user/batches/{batch}/results?after={after}&limit=1000");
        let (st, v) = c.user.get(&path).await;
        assert_eq!(st, 200, "{v}");
        let page = v["results"].as_array().unwrap().clone();
        for r in &page {
            *seen
                .entry(r["id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        all.extend(page.iter().cloned());
        after = v["next"].as_i64().unwrap();
        if page.is_empty() {
            return (seen, all);
        }
    }
}

/// Every task of the batch succeeded, each result streamed exactly once, none missing.
async fn exactly_once(c: &Cluster, batch: &str, ids: &[String]) {
    let (seen, results) = batch_results(c, batch).await;
    assert_eq!(seen.len(), ids.len(), "every task has a result");
    for id in ids {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "task {id}: results {:?}",
            seen.get(id)
        );
    }
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| r["state"] != "succeeded")
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// 1,000 × 40 ms on 2 processors × 1 slot, undisturbed, then again while one processor is
/// killed -9 every 2 s and restarted under its worker id (lease TTL 4 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_every_two_seconds_loses_nothing_and_costs_little() {
    let c = Cluster::start(&["--lease-ttl", "4s"]);
    c.publish("testkit", None).await;
    let mut victim = c.processor(&["--cpu-slots", "1", "--worker-id", "victim"]);
    let steady = c.processor(&["--cpu-slots", "1", "--worker-id", "steady"]);
    warm(&c, 2).await;
    let tasks = || (0..1000).map(|_| sleep_task(40)).collect::<Vec<_>>();

    let since = Instant::now();
    let (calm_batch, calm_ids) = submit_batch(&c, tasks()).await;
    let limit = Duration::from_secs(120);
    batch_finished(&c, &calm_batch, limit, &[&victim, &steady]).await;
    let calm = since.elapsed();
    exactly_once(&c, &calm_batch, &calm_ids).await;

    let since = Instant::now();
    let (batch, ids) = submit_batch(&c, tasks()).await;
    let mut kills = 0;
    loop {
        let (_, v) = c.user.get(&format!("/user/batches/{batch}")).await;
        if v["counts"]["succeeded"].as_u64() == v["total"].as_u64() {
            break;
        }
        assert!(since.elapsed() < limit, "not done: {v}");
        if since.elapsed() >= Duration::from_secs(2 * (kills + 1)) {
            victim.kill9();
            tokio::task::block_in_place(|| victim.restart());
            kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stormy = since.elapsed();
    batch_finished(&c, &batch, limit, &[&victim, &steady]).await;
    exactly_once(&c, &batch, &ids).await;
    println!(
        "1,000 × 40 ms on 2 × 1 slot: undisturbed {calm:.1?}, one processor killed -9 {kills} times: {stormy:.1?} ({:.2}×)",
        stormy.as_secs_f64() / calm.as_secs_f64()
    );
    assert!(kills >= 3, "the run outlasted few kills ({kills})");
    assert!(
        stormy.as_secs_f64() <= 2.0 * calm.as_secs_f64(),
        "recovery too slow: {stormy:?} against {calm:?} undisturbed"
    );
}

/// SIGSTOP a processor holding a lease: it expires and the other processor runs the task; after
/// SIGCONT the stopped one drops what it can no longer deliver and goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_processor_loses_its_lease_and_drops_its_late_answer() {
    let c = Cluster::start(&["--lease-ttl", "2s"]);
    c.publish("testkit", None).await;
    let mut stalled = c.processor(&["--cpu-slots", "1", "--worker-id", "stalled"]);
    let id = c.submit(sleep_task(1500)).await;
    let until = Instant::now() + Duration::from_secs(30);
    while c.answer(&id).await["state"] != "leased" {
        assert!(Instant::now() < until, "never leased: {}", stalled.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(stalled.pid(), "-STOP");
    let stopped_at = Instant::now();
    let mut other = c.processor(&["--cpu-slots", "1", "--worker-id", "other"]);
    let v = c.wait(&id, Duration::from_secs(30)).await;
    println!(
        "SIGSTOP with a 1.5 s task leased (TTL 2 s): done by the other processor {:.1?} later",
        stopped_at.elapsed()
    );
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(
        v["attempt"], 2,
        "re-leased once the stopped one's lease expired: {v}"
    );
    signal(stalled.pid(), "-CONT");
    // Its late answer is refused (or its heartbeat learns first that the lease is gone): it
    // says so once, sends nothing more for it, and the task's result stays the other's.
    let until = Instant::now() + Duration::from_secs(10);
    let dropped = |log: &str| {
        log.contains("answer(s) not recorded, dropped") || log.contains("lease lost: stopping it")
    };
    while !dropped(&stalled.log()) {
        assert!(Instant::now() < until, "{}", stalled.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.answer(&id).await["attempt"], 2);
    // It goes on working: with the other one gone, it runs the next task.
    other.terminate();
    let next = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [7]}))
        .await;
    let v = c.wait(&next, Duration::from_secs(30)).await;
    assert_eq!(v["answer"], 7, "{v}; {}", stalled.log());
    assert!(stalled.try_wait().is_none(), "it kept running");
}

/// kill -9 the server (SQLite) while 2 processors work through 2,000 tasks; restarted on the
/// same data directory, the batch completes exactly once and the processors come back alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_batch_and_restarted_loses_nothing() {
    let mut c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let a = c.processor(&["--cpu-slots", "1"]);
    let b = c.processor(&["--cpu-slots", "1"]);
    warm(&c, 2).await;
    let (batch, ids) = submit_batch(&c, (0..2000).map(|_| sleep_task(5)).collect()).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = c.user.get(&format!("/user/batches/{batch}")).await;
        if v["counts"]["succeeded"].as_u64() >= Some(700) {
            break;
        }
        assert!(Instant::now() < until, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.server.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| c.server.restart());
    let restarted = Instant::now();
    batch_finished(&c, &batch, Duration::from_secs(90), &[&a, &b]).await;
    let after = restarted.elapsed();
    println!(
        "server killed -9 with 2,000 × 5 ms tasks under way, restarted 2 s later: batch done {after:.1?} after the restart ({:.1?} after the kill)",
        killed.elapsed()
    );
    // No lease waits out its 30 s TTL: a lease request whose answer died with the server is
    // sent again, and gets back what the server had granted it.
    assert!(
        after < Duration::from_secs(20),
        "{after:?}: a lease waited out its TTL"
    );
    exactly_once(&c, &batch, &ids).await;
    for w in [&a, &b] {
        // Logged just after the call that got through returns: it may trail the batch a moment.
        let until = Instant::now() + Duration::from_secs(10);
        while !w.log().contains("server reachable again") {
            assert!(Instant::now() < until, "{}", tail(&w.log()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            w.log().contains("cannot reach the server"),
            "{}",
            tail(&w.log())
        );
    }
}

/// Three replicas on one PostgreSQL database; each processor is given all three URLs. One
/// replica killed -9 halfway through 5,000 tasks: every task answered exactly once, checked in
/// the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_fail_over_between_replicas_and_nothing_runs_twice() {
    const N: usize = 5000;
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let mut c = Cluster::start_with_database(db.url(), &["--lease-ttl", "4s"]);
    let more: Vec<Proc> = (0..2).map(|_| c.replica()).collect();
    let urls = [
        c.server.url.clone(),
        more[0].url.clone(),
        more[1].url.clone(),
    ];
    c.publish("testkit", None).await;
    let first = format!("{},{},{}", urls[0], urls[1], urls[2]);
    let second = format!("{},{},{}", urls[1], urls[2], urls[0]);
    let a = Worker::start(
        &first,
        &c.registry.url,
        &c.worker_token,
        &["--cpu-slots", "2"],
    );
    let b = Worker::start(
        &second,
        &c.registry.url,
        &c.worker_token,
        &["--cpu-slots", "2"],
    );
    let tasks: Vec<Value> = (0..N)
        .map(|i| json!({"package": "testkit", "function": "echo", "args": [i]}))
        .collect();
    let (batch, _) = submit_batch(&c, tasks).await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let done = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
        n as usize
    };
    let until = Instant::now() + Duration::from_secs(120);
    while done().await < N / 2 {
        assert!(Instant::now() < until, "{}", tail(&a.log()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.server.kill9();
    let killed = Instant::now();
    c.user = crpc_tests::Api::new(&urls[1], Some(c.user_token.clone()));
    while done().await < N {
        assert!(
            Instant::now() < until,
            "{} of {N}; {}; {}",
            done().await,
            tail(&a.log()),
            tail(&b.log())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE state <> 'succeeded' OR answer <> args->0 \
         OR answered_epoch IS NULL OR answered_epoch <> lease_epoch",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "every task answered once, with its own value");
    println!(
        "one of 3 replicas killed -9 halfway through {N} tasks: the rest done {:.1?} later",
        killed.elapsed()
    );
    let (seen, _) = batch_results(&c, &batch).await;
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|n| *n == 1), "a result streamed twice");
    assert!(a.log().contains("failed over to"), "{}", tail(&a.log()));
    drop(pool);
}

/// An idle processor stopped with SIGTERM and another killed -9 while their long-polls wait: a
/// task submitted right then goes to the processor still running, not to a poll that is going
/// away (which would hold it for a whole lease TTL). Five rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_never_go_to_the_long_poll_of_a_processor_that_is_gone() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let live = c.processor(&["--cpu-slots", "1", "--worker-id", "live"]);
    let mut stopped = c.processor(&["--cpu-slots", "1", "--worker-id", "stopped"]);
    let mut killed = c.processor(&["--cpu-slots", "1", "--worker-id", "killed"]);
    // Loaded and measured on all three, then idle: every one waits in a long-poll.
    warm(&c, 3).await;
    for round in 0..5 {
        if round > 0 {
            tokio::task::block_in_place(|| {
                stopped.restart();
                killed.restart();
            });
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        signal(stopped.pid(), "-TERM");
        killed.kill9();
        let since = Instant::now();
        let id = c
            .submit(json!({"package": "testkit", "function": "echo", "args": [round]}))
            .await;
        let v = c.wait(&id, Duration::from_secs(60)).await;
        let took = since.elapsed();
        assert_eq!(v["answer"], round, "{v}");
        println!("round {round}: answered {took:.1?} after SIGTERM + kill -9 of the idle others");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: the task took {took:?} (attempt {}): granted to a poll that was going away? {}",
            v["attempt"],
            tail(&stopped.log())
        );
        assert!(tokio::task::block_in_place(|| stopped.wait()).success());
    }
    drop(live);
}

/// A task that takes down every processor it lands on (here the test kills the processor
/// whenever the task runs on it, and restarts it, as a supervisor would) stops at its
/// `max_attempts`, and its error says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_kills_every_processor_stops_at_max_attempts() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "1", "--worker-id", "doomed"]);
    let mut task = sleep_task(60_000);
    task["max_attempts"] = json!(3);
    let id = c.submit(task).await;
    let (until, mut kills) = (Instant::now() + Duration::from_secs(90), 0);
    let v = loop {
        let v = c.answer(&id).await;
        if v["state"] == "failed" {
            break v;
        }
        assert!(Instant::now() < until, "{v}; {}", tail(&p.log()));
        if v["state"] == "leased" && v["attempt"].as_u64() == Some(kills + 1) {
            p.kill9();
            tokio::task::block_in_place(|| p.restart());
            kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("a task whose processor dies each time: {}", v["error"]);
    assert_eq!((v["attempt"].clone(), kills), (json!(3), 3), "{v}");
    assert_eq!(v["error"]["kind"], "lease_expired", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("lost_lease × 3") && message.contains("restarted"),
        "{message}"
    );
    // The processor restarted after the last one goes on working.
    let next = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [1]}))
        .await;
    assert_eq!(c.wait(&next, Duration::from_secs(60)).await["answer"], 1);
}

/// A CPU-bound task on every slot (a WASM spin and a native busy loop, on a 2-slot processor)
/// for 3× the lease TTL keeps its lease: one attempt each, both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_tasks_on_every_slot_keep_their_leases() {
    let c = Cluster::start(&["--lease-ttl", "2s"]);
    c.publish("testkit", None).await;
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let wasm = c
        .submit(json!({"package": "testkit", "function": "busy_ms", "args": [6000]}))
        .await;
    let native = c
        .submit(json!({"package": "nativekit", "function": "spin", "args": [6]}))
        .await;
    for id in [wasm, native] {
        let v = c.wait(&id, Duration::from_secs(60)).await;
        println!(
            "CPU-bound 6 s task, lease TTL 2 s: {} on attempt {}",
            v["state"], v["attempt"]
        );
        assert_eq!(v["state"], "succeeded", "{v}; {}", tail(&p.log()));
        assert_eq!(v["attempt"], 1, "the lease held: {v}");
    }
}
