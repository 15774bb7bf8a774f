//! Issue 23: the estimate predicts each task from its arguments (a declared cost, or an argument
//! found to explain the runtimes), and says when it could only use the mean. Real processors
//! run `testkit`; the queue is read after they stopped, so nothing drains while it is read.
use std::time::Duration;

use crpc_tests::Cluster;
use serde_json::{json, Value};

use crate::prefetch::submit_batch;

fn task(function: &str, args: Value) -> Value {
    json!({"package": "testkit", "function": function, "args": args})
}

/// Runs `tasks` to completion on a fresh 2-slot processor, which then stops (its slots stay
/// live for the server's live window, so the estimate still has them). Each task's runtime as
/// the processor reported it, ms, in submit order.
async fn run_then_stop(c: &Cluster, tasks: Vec<Value>) -> Vec<f64> {
    let p = c.processor(&["--cpu-slots", "2"]);
    let (_, ids) = submit_batch(c, tasks).await;
    for id in &ids {
        let v = c.wait(id, Duration::from_secs(60)).await;
        assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    }
    drop(p);
    let (_, list) = c.user.get("/user/tasks?state=succeeded&limit=1000").await;
    let listed = list["tasks"].as_array().unwrap();
    let runtime = |id: &String| {
        let t = listed.iter().find(|t| t["id"] == id.as_str()).unwrap();
        t["runtime_ms"].as_f64().unwrap()
    };
    ids.iter().map(runtime).collect()
}

/// The least-squares line (intercept, slope) through `(cost, runtime)` points: what a
/// server fitting the same answers must predict, whatever this machine's load made of them.
fn line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

fn function<'a>(est: &'a Value, name: &str) -> &'a Value {
    est["per_function"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == name)
        .unwrap_or_else(|| panic!("{name} in {est}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_cost_predicts_each_task_from_its_argument() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    // sleep_ms declares cost = "ms": 5 and 40 ms tasks, mean 22.5 ms.
    let ms = |i: usize| [5, 40][i % 2];
    let warm = (0..24).map(|i| task("sleep_ms", json!([ms(i)])));
    let took = run_then_stop(&c, warm.collect()).await;
    let points: Vec<(f64, f64)> = (0..24).map(|i| (ms(i) as f64, took[i])).collect();
    let (a, b) = line(&points);
    // 5 × 200 ms + 10 × 10 ms: 1.1 s of work on a quiet machine (the mean alone would say
    // 0.34 s); on a loaded one, what the runtimes it measured extrapolate to.
    let want = (5.0 * (a + 200.0 * b) + 10.0 * (a + 10.0 * b)) / 1000.0;
    assert!(
        want > 0.9,
        "the warm-up's own line predicts {want} s: {points:?}"
    );
    let mut queue: Vec<Value> = (0..5).map(|_| task("sleep_ms", json!([200]))).collect();
    queue.extend((0..10).map(|_| task("sleep_ms", json!([10]))));
    submit_batch(&c, queue).await;
    let (st, est) = c.user.get("/user/estimate_time_left").await;
    assert_eq!(st, 200, "{est}");
    let f = function(&est, "sleep_ms");
    assert_eq!(f["model"], "cost:ms", "{est}");
    let time = est["time"].as_f64().unwrap();
    assert!(
        (time - want).abs() / want < 0.1,
        "time {time}, line {want}: {est}"
    );
    let (p10, eta, p90) = (
        est["eta_p10_s"].as_f64().unwrap(),
        est["eta_s"].as_f64().unwrap(),
        est["eta_p90_s"].as_f64().unwrap(),
    );
    assert!(p10 <= eta && eta <= p90 && p10 > 0.0, "{est}");
    // The longest task may end the queue up to 200 ms past the even split: inside the interval.
    assert!(p90 >= time / 2.0 + 0.1, "{est}");
    let cpu = &est["backlog"][0];
    assert_eq!(
        (cpu["class"].as_str(), cpu["queued"].as_u64()),
        (Some("cpu"), Some(15))
    );
    assert!(cpu["backlog_s"].as_f64().unwrap() > 0.5, "{est}");
    assert_eq!(est["backlog"][1]["queued"], 0, "{est}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_a_usable_argument_falls_back_to_the_mean_and_says_so() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    // echo(true): a boolean has no size. progress_steps(1, ms) declares nothing, but its second
    // argument explains its runtime. The two sizes lie far apart, so a loaded machine's noise
    // (tens of ms on a busy-wait descheduled by a parallel test) cannot hide the line.
    let mut warm: Vec<Value> = (0..24).map(|_| task("echo", json!([true]))).collect();
    let ms = |i: usize| [10, 150][i % 2];
    warm.extend((0..40).map(|i| task("progress_steps", json!([1, ms(i)]))));
    let took = run_then_stop(&c, warm).await;
    let points: Vec<(f64, f64)> = (0..40).map(|i| (ms(i) as f64, took[24 + i])).collect();
    let (a, b) = line(&points);
    // 4 × 100 ms on a quiet machine; on a loaded one, what its measured runtimes extrapolate to.
    let want = 4.0 * (a + 100.0 * b) / 1000.0;
    let mut queue: Vec<Value> = (0..10).map(|_| task("echo", json!([false]))).collect();
    queue.extend((0..4).map(|_| task("progress_steps", json!([1, 100]))));
    submit_batch(&c, queue).await;
    let (_, est) = c.user.get("/user/estimate_time_left").await;
    let echo = function(&est, "echo");
    assert_eq!(
        (echo["model"].as_str(), echo["known"].as_bool()),
        (Some("mean"), Some(true))
    );
    assert!(echo["confidence"].as_f64().unwrap() <= 0.5, "{est}");
    let steps = function(&est, "progress_steps");
    assert_eq!(steps["model"], "arg:1", "{est}; warm-up {points:?}");
    // Its line explains the runtimes (r² ≥ 0.6 on a loaded machine, near 1 on a quiet one).
    let conf = |f: &Value| f["confidence"].as_f64().unwrap();
    assert!(conf(steps) > conf(echo), "{est}");
    let work = steps["time"].as_f64().unwrap();
    assert!(
        (work - want).abs() / want < 0.15,
        "4 × 100 ms by its line ({want} s), not 4 × the mean: {est}"
    );
    assert!(
        want > 0.3,
        "the warm-up's own line predicts {want} s: {points:?}"
    );
    // The CLI says it in words.
    let out = std::process::Command::new(crpc_tests::sibling_binary("crpc"))
        .args([
            "estimate",
            "--server",
            &c.server.url,
            "--token",
            &c.user_token,
        ])
        .env_remove("CRPC_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.contains("mean: no argument explains the runtime"),
        "{out}"
    );
    assert!(out.contains("80% between"), "{out}");
}
