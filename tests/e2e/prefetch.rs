//! Issue 15's acceptance: real processors lease ahead (prefetch) without hoarding long tasks,
//! and hand back what they never started, their attempt unused.
use std::time::{Duration, Instant};

use crpc_tests::{Cluster, Worker};
use serde_json::{json, Value};

pub(crate) fn sleep_task(ms: u64) -> Value {
    json!({"package": "testkit", "function": "sleep_ms", "args": [ms]})
}

/// Submits `tasks` in one batch; their ids.
pub(crate) async fn submit_batch(c: &Cluster, tasks: Vec<Value>) -> (String, Vec<String>) {
    let (st, b) = c
        .user
        .post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    assert_eq!(st, 201, "{b}");
    let ids = b["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    (b["batch_id"].as_str().unwrap().to_string(), ids)
}

/// Until every task of the batch succeeded; how long from `since`.
async fn batch_done(c: &Cluster, batch: &str, since: Instant, logs: &[&Worker]) -> Duration {
    loop {
        let (_, v) = c.user.get(&format!("/user/batches/{batch}")).await;
        let total = v["total"].as_u64().unwrap_or(u64::MAX);
        if v["counts"]["succeeded"].as_u64() == Some(total) {
            return since.elapsed();
        }
        let logs: Vec<String> = logs.iter().map(|w| w.log()).collect();
        assert!(since.elapsed() < Duration::from_secs(60), "{v}; {logs:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `sleep_ms` until every processor has the package loaded and the server's statistics
/// say the function is short (the lease sizing reads them at most once a second).
pub(crate) async fn warm(c: &Cluster, workers: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, ids) = submit_batch(c, (0..4 * workers).map(|_| sleep_task(5)).collect()).await;
        for id in &ids {
            assert_eq!(
                c.wait(id, Duration::from_secs(60)).await["state"],
                "succeeded"
            );
        }
        let (_, w) = c.user.get("/user/workers").await;
        let loaded = w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w.to_string().contains("testkit@1.0.0"))
            .count();
        let (_, stats) = c.user.get("/user/stats").await;
        let short = stats["functions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["function"] == "sleep_ms" && f["mean_ms"].as_f64() < Some(25.0));
        if loaded >= workers && short {
            break;
        }
        assert!(Instant::now() < until, "not warm: {w}; {stats}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_single_slot_processors_share_twenty_half_second_tasks_evenly() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let a = c.processor(&["--cpu-slots", "1"]);
    let b = c.processor(&["--cpu-slots", "1"]);
    warm(&c, 2).await;
    let since = Instant::now();
    let (batch, _) = submit_batch(&c, (0..20).map(|_| sleep_task(500)).collect()).await;
    let took = batch_done(&c, &batch, since, &[&a, &b]).await;
    println!("20 × 500 ms on 2 processors × 1 slot: {took:?} (ideal 5 s)");
    assert!(
        took <= Duration::from_millis(5500),
        "{took:?}: a processor held tasks the other could have run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tasks_never_wait_behind_a_long_one() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    warm(&c, 1).await;
    let since = Instant::now();
    let mut tasks = vec![sleep_task(10_000)];
    tasks.extend((0..100).map(|_| sleep_task(10)));
    let (batch, ids) = submit_batch(&c, tasks).await;
    let took = batch_done(&c, &batch, since, &[&p]).await;
    // The 100 short ones finished on the other slot while the long one ran.
    let finished = finished_at(&c).await;
    let long = finished[&ids[0]];
    let last_short = ids[1..].iter().map(|id| finished[id]).max().unwrap();
    println!(
        "10 s + 100 × 10 ms on 2 slots: {took:?}; the last short task finished {} ms before the long one",
        long - last_short
    );
    assert!(last_short < long);
    assert!(took <= Duration::from_secs(11), "{took:?}; {}", p.log());
}

/// `finished_at` of every task, by id.
async fn finished_at(c: &Cluster) -> std::collections::HashMap<String, i64> {
    let (_, v) = c.user.get("/user/tasks?limit=1000").await;
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t["id"].as_str()?.to_string(), t["finished_at"].as_i64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_single_attempt_task_handed_back_on_sigterm_later_succeeds() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "1", "--drain-timeout", "20s"]);
    warm(&c, 1).await;
    // The server sizes prefetch from runtime predictors it rereads at most once a second: let
    // the warm-up's measurements reach them, or the short task may not be prefetched at all.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut short = sleep_task(10);
    short["max_attempts"] = json!(1);
    let (_, ids) = submit_batch(&c, vec![sleep_task(2000), short]).await;
    // One slot, two leased tasks: the second is prefetched, not running.
    let until = Instant::now() + Duration::from_secs(10);
    // Leased and still leased 300 ms later: a grant the server trims (a lease it claimed but
    // the processor may not keep goes back at once) can show `leased` for an instant, and the
    // grant that keeps it may still be on its way to the processor. The 2 s task runs meanwhile.
    let mut leased_since: Option<Instant> = None;
    loop {
        let leased = c.answer(&ids[1]).await["state"] == "leased";
        leased_since = if leased {
            leased_since.or(Some(Instant::now()))
        } else {
            None
        };
        if leased_since.is_some_and(|t| t.elapsed() >= Duration::from_millis(300)) {
            break;
        }
        assert!(Instant::now() < until, "never prefetched; {}", p.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c.answer(&ids[0]).await["state"], "leased");
    let status = p.terminate();
    assert!(status.success(), "{status}; {}", p.log());
    assert!(
        p.log().contains("handing back 1 prefetched task"),
        "{}",
        p.log()
    );
    assert_eq!(c.answer(&ids[0]).await["state"], "succeeded", "drained");
    let v = c.answer(&ids[1]).await;
    assert_eq!(v["state"], "queued", "{v}");
    assert_eq!(v["attempt"], 0, "the hand-back used no attempt: {v}");
    p.restart();
    let v = c.wait(&ids[1], Duration::from_secs(30)).await;
    assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    assert_eq!(v["attempt"], 1, "{v}");
}
