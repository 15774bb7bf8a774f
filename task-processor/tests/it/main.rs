//! The processor against a server that goes away: it reconnects with backoff and delivers the
//! answers it could not send, so nothing is lost and nothing runs twice.
use std::time::Duration;

use crpc_tests::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_server_restart_and_delivers_held_answers() {
    let mut c = Cluster::start(&["--lease-ttl", "20s"]);
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let warm = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [0]}))
        .await;
    assert_eq!(c.wait(&warm, Duration::from_secs(60)).await["answer"], 0);

    // Two tasks that finish while the server is down: their answers wait in the outbox.
    let a = c
        .submit(json!({"package": "testkit", "function": "busy_ms", "args": [1500]}))
        .await;
    let b = c
        .submit(json!({"package": "testkit", "function": "busy_ms", "args": [1600]}))
        .await;
    wait_running(&p, &a).await;
    wait_running(&p, &b).await;
    c.server.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.server.restart();
    for (id, ms) in [(&a, 1500), (&b, 1600)] {
        let v = c.wait(id, Duration::from_secs(60)).await;
        assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
        assert_eq!(v["answer"], ms);
        assert_eq!(v["attempt"], 1, "answered from the outbox, not re-run: {v}");
    }
    // One line when the server went away and one when it came back (written just after the
    // call that got through returns, so it may trail the answers by a moment), not one per retry.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !p.log().contains("server reachable again after") {
        assert!(std::time::Instant::now() < until, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log();
    assert_eq!(log.matches("cannot reach the server").count(), 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // And it keeps pulling.
    let id = c
        .submit(json!({"package": "testkit", "function": "echo", "args": ["again"]}))
        .await;
    assert_eq!(
        c.wait(&id, Duration::from_secs(60)).await["answer"],
        "again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_processor_with_a_clear_error() {
    let c = Cluster::start(&[]);
    let mut w = crpc_tests::Worker::start(&c.server.url, &c.registry.url, "not-a-token", &[]);
    let status = loop {
        if let Some(s) = w.try_wait() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = w.log();
    assert!(log.contains("refused this processor's token (401"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// SIGTERM while the server is down, with a finished answer not yet delivered: the stopping
/// processor keeps trying (its outbox), and the answer lands once the server is back, so the
/// task is not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_finished_while_the_server_is_down_survives_a_sigterm() {
    let mut c = Cluster::start(&["--lease-ttl", "30s"]);
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "1"]);
    let warm = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [0]}))
        .await;
    assert_eq!(c.wait(&warm, Duration::from_secs(60)).await["answer"], 0);
    let id = c
        .submit(json!({"package": "testkit", "function": "busy_ms", "args": [500]}))
        .await;
    wait_running(&p, &id).await;
    c.server.kill9();
    // The task finishes, its answer cannot be delivered, the pull loop backs off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = p.pid().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| c.server.restart());
    let status = tokio::task::block_in_place(|| p.wait());
    assert!(status.success(), "{}", p.log());
    let v = c.answer(&id).await;
    assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    assert_eq!(v["attempt"], 1, "delivered, not run again: {v}");
}

/// Waits until the processor has started task `id`. A task the server shows as `leased` may
/// not have reached the processor yet: a server killed between committing a grant and sending
/// it leaves the lease with nobody running it, and a stopping processor then hands it back to
/// the queue (right, but not what these tests are about).
async fn wait_running(p: &crpc_tests::Worker, id: &str) {
    let line = format!("running task={id}");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !p.log().contains(&line) {
        assert!(std::time::Instant::now() < until, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
