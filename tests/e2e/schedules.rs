//! Recurring schedules against the real server: one task per tick across PostgreSQL replicas,
//! missed ticks fired once at start, hostile schedules refused; and a batch's results in input
//! order, streamed as NDJSON, and cancelled in one request.
use std::time::Duration;

use crpc_tests::{assert_error, Api, Cluster, Proc, TestDatabase};
use serde_json::{json, Value};
use task_api::Role;

fn every_second() -> Value {
    json!({"cron": "* * * * * *", "task": {"package": "testkit", "function": "noop"}})
}

/// The tick (ms) of each task a schedule submitted, from its idempotency key, sorted.
fn ticks(keys: Vec<String>) -> Vec<i64> {
    let mut t: Vec<i64> = keys
        .iter()
        .map(|k| k.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    t.sort_unstable();
    t
}

/// 3 replicas on one database, a schedule every second for 20 s: every tick from the first to
/// the last submitted exactly one task (checked in the database), none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_fires_once_across_three_postgres_replicas() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let c = Cluster::start_with_database(db.url(), &[]);
    let more: Vec<Proc> = (0..2).map(|_| c.replica()).collect();
    c.publish("testkit", None).await;
    let (st, v) = c.user.post("/user/schedules", &every_second()).await;
    assert_eq!(st, 201, "{v}");
    let id = v["schedule"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (st, v) = Api::new(&more[1].url, Some(c.user_token.clone()))
        .delete(&format!("/user/schedules/{id}"))
        .await;
    assert_eq!(st, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM tasks WHERE owner = 'alice'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let t = ticks(keys);
    assert!(t.len() >= 18, "{} ticks fired in 20 s: {t:?}", t.len());
    let steps: Vec<i64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&s| s == 1000),
        "each tick once, none skipped: {steps:?}"
    );
    let (_, list) = c.user.get("/user/schedules").await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 0, "{list}");
    println!("3 replicas, 20 s: {} ticks, each fired once", t.len());
}

/// Ticks missed while the server was down fire once when it starts, then it keeps time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_down_fire_once_at_start() {
    let mut c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let (st, v) = c.user.post("/user/schedules", &every_second()).await;
    assert_eq!(st, 201, "{v}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.server.terminate();
    let down = Duration::from_secs(4);
    tokio::time::sleep(down).await;
    c.server.restart();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let db = c.server.data_dir().join("crpc.db");
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM tasks")
        .fetch_all(&pool)
        .await
        .unwrap();
    let t = ticks(keys);
    let gaps: Vec<i64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // One gap spans the outage (the first missed tick fired at start, then the clock's next).
    let long: Vec<&i64> = gaps.iter().filter(|&&g| g > 1000).collect();
    assert_eq!(long.len(), 1, "one catch-up, then every second: {gaps:?}");
    assert!(
        *long[0] >= 3000,
        "the missed ticks were not each fired: {gaps:?}"
    );
    assert!(gaps.iter().all(|&g| g >= 1000), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schedules_are_refused_and_change_nothing() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let noop = json!({"package": "testkit", "function": "noop"});
    for (body, field) in [
        (json!({"cron": "* * * *", "task": noop}), "cron"),
        (json!({"cron": "* * * * * * *", "task": noop}), "cron"),
        (json!({"cron": "0 0 30 2 *", "task": noop}), "cron"),
        (json!({"cron": "61 * * * *", "task": noop}), "cron"),
        (json!({"cron": "x".repeat(100_000), "task": noop}), "cron"),
        (
            json!({"cron": "* * * * *", "timezone": "../../etc/passwd", "task": noop}),
            "timezone",
        ),
        (
            json!({"cron": "* * * * *", "task": {"package": "testkit", "function": "nope"}}),
            "task.function",
        ),
        (
            json!({"cron": "* * * * *", "task": {"package": "testkit", "function": "noop", "idempotency_key": "k"}}),
            "task.idempotency_key",
        ),
        (
            json!({"cron": "* * * * *", "task": {"package": "testkit", "function": "echo", "args": [{"$ref": "#0"}]}}),
            "task.args[0]",
        ),
    ] {
        let got = c.user.post("/user/schedules", &body).await;
        assert_error(&got, 422, "validation_failed");
        assert_eq!(got.1["error"]["details"]["field"], field, "{}", got.1);
    }
    let (_, list) = c.user.get("/user/schedules").await;
    assert_eq!(list["schedules"], json!([]));
    // Someone else's schedule cannot be seen or deleted.
    let (st, v) = c
        .user
        .post(
            "/user/schedules",
            &json!({"cron": "0 0 1 1 *", "task": noop}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["schedule"]["id"].as_str().unwrap();
    let bob = Api::new(&c.server.url, Some(c.mint(Role::User, "bob")));
    assert_error(
        &bob.delete(&format!("/user/schedules/{id}")).await,
        404,
        "not_found",
    );
    assert_eq!(bob.get("/user/schedules").await.1["schedules"], json!([]));
    assert_eq!(
        c.user.get("/user/schedules").await.1["schedules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Results in input order, streamed as NDJSON over one response, and a batch cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_streamed_and_cancelled_batches() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let _p = c.processor(&["--cpu-slots", "2"]);
    // Later inputs finish first: input order must still come out in order.
    let tasks: Vec<Value> = [300, 200, 100, 0]
        .iter()
        .map(|ms| json!({"package": "testkit", "function": "sleep_ms", "args": [ms]}))
        .collect();
    let (_, b) = c
        .user
        .post("/user/submit_batch", &json!({"tasks": tasks}))
        .await;
    let batch = b["batch_id"].as_str().unwrap().to_string();
    let resp = c
        .user
        .req(
            reqwest::Method::GET,
            &format!("/user/batches/{batch}/results?stream=ndjson&order=submitted"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answers: Vec<&Value> = lines.iter().map(|l| &l["answer"]).collect();
    assert_eq!(
        answers,
        [&json!(300), &json!(200), &json!(100), &json!(0)],
        "{text}"
    );
    let idx: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, [0, 1, 2, 3]);

    // A stream of someone else's batch is a plain 404.
    let bob = Api::new(&c.server.url, Some(c.mint(Role::User, "bob")));
    let got = bob
        .get(&format!("/user/batches/{batch}/results?stream=ndjson"))
        .await;
    assert_error(&got, 404, "not_found");

    // Cancel: what has not finished is cancelled in one request; finished results stay.
    let slow: Vec<Value> = (0..50)
        .map(|_| json!({"package": "testkit", "function": "sleep_ms", "args": [200]}))
        .collect();
    let (_, b) = c
        .user
        .post("/user/submit_batch", &json!({"tasks": slow}))
        .await;
    let batch = b["batch_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_error(
        &bob.post(&format!("/user/batches/{batch}/cancel"), &json!({}))
            .await,
        404,
        "not_found",
    );
    let (st, v) = c
        .user
        .post(&format!("/user/batches/{batch}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let cancelled = v["cancelled"].as_u64().unwrap();
    assert!((40..50).contains(&cancelled), "{v}");
    let (_, s) = c.user.get(&format!("/user/batches/{batch}?wait=10")).await;
    assert_eq!(s["done"], true, "{s}");
    let (_, again) = c
        .user
        .post(&format!("/user/batches/{batch}/cancel"), &json!({}))
        .await;
    assert_eq!(again["cancelled"], 0);
}
