//! Fleet control with real processors, on SQLite and on PostgreSQL with two replicas:
//! broadcasts to every loaded instance, concurrency caps and rate limits across processors, and
//! fair share across owners within a priority.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crpc_tests::{assert_error, Api, Cluster, TestDatabase};
use serde_json::{json, Value};
use task_api::Role;

fn sleep_ms(ms: u64) -> Value {
    json!({"package": "testkit", "function": "sleep_ms", "args": [ms]})
}

/// Submits a batch through `api`; the task ids.
async fn batch(api: &Api, tasks: Vec<Value>) -> Vec<String> {
    api.submit_batch(tasks).await
}

/// Bob queues 3,000 tasks of 5 ms on 2 slots (7.5 s of work); Alice's one task, submitted while
/// they run (through `alice`, maybe another replica), answers within 2 s and before most of
/// Bob's: owners take turns within a priority.
async fn fair_share(c: &Cluster, alice: &Api) {
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let bob = Api::new(&c.server.url, Some(c.mint(Role::User, "bob")));
    let warm = batch(&bob, vec![sleep_ms(5); 20]).await;
    let (_, v) = bob
        .get(&format!("/user/request_answer/{}?wait=60", warm[19]))
        .await;
    assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
    let bobs = batch(&bob, vec![sleep_ms(5); 3000]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (st, v) = alice.post("/user/submit_task", &sleep_ms(5)).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let (_, v) = alice
        .get(&format!("/user/request_answer/{id}?wait=30"))
        .await;
    let took = started.elapsed();
    assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
    assert!(
        took < Duration::from_secs(2),
        "alice waited {took:?} behind bob's 3,000 tasks"
    );
    let (_, last) = bob
        .get(&format!("/user/request_answer/{}", bobs[2999]))
        .await;
    assert_ne!(
        last["state"], "succeeded",
        "bob's backlog was done first: {last}"
    );
    let (_, done) = bob
        .get(&format!("/user/request_answer/{}?wait=30", bobs[2999]))
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_take_turns_on_sqlite() {
    let c = Cluster::start(&[]);
    let alice = Api::new(&c.server.url, Some(c.user_token.clone()));
    fair_share(&c, &alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_take_turns_on_two_postgres_replicas() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let c = Cluster::start_with_database(db.url(), &[]);
    let other = c.replica();
    let alice = Api::new(&other.url, Some(c.user_token.clone()));
    fair_share(&c, &alice).await;
}

fn call(package: &str, function: &str) -> Value {
    json!({"package": package, "function": function})
}

/// Runs `n` tasks of `package.updates` as one batch; (processor, answer) of each.
async fn updates(c: &Cluster, package: &str, n: usize) -> Vec<(String, Value)> {
    let ids = batch(&c.user, vec![call(package, "updates"); n]).await;
    let mut out = Vec::new();
    for id in ids {
        let v = c.wait(&id, Duration::from_secs(60)).await;
        assert_eq!(v["state"], "succeeded", "{v}");
        let (_, d) = c.user.get(&format!("/user/tasks/{id}")).await;
        let worker = d["attempts"][0]["worker_id"].as_str().unwrap().to_string();
        out.push((worker, v["answer"].clone()));
    }
    out
}

/// Until both processors ran a task of `package` (so each has a loaded instance of it).
async fn load_on_both(c: &Cluster, package: &str) {
    for _ in 0..20 {
        let ran: BTreeSet<String> = updates(c, package, 8)
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        if ran.len() == 2 {
            return;
        }
    }
    panic!("the tasks of {package} never ran on both processors");
}

/// Polls `GET /admin/broadcasts/{id}` until `workers` all applied it.
async fn applied_by(admin: &Api, id: &str, workers: &[&str]) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = admin.get(&format!("/admin/broadcasts/{id}")).await;
        assert_eq!(st, 200, "{v}");
        let got: BTreeSet<&str> = v["applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["worker_id"].as_str().unwrap())
            .collect();
        if workers.iter().all(|w| got.contains(w)) {
            return v;
        }
        assert!(Instant::now() < until, "not applied by {workers:?}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A broadcast reaches the loaded instances of both processors (WASM and native), so later
/// tasks on both return it; a processor started after it gets it right after `init`; one for
/// another version reaches nobody; the status shows who applied it and when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_instance_and_later_processors() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    c.publish("nativekit", None).await;
    let admin = Api::new(&c.server.url, Some(c.mint(Role::Admin, "ops")));
    let mut a = c.processor(&["--cpu-slots", "1", "--worker-id", "a"]);
    let mut b = c.processor(&["--cpu-slots", "1", "--worker-id", "b"]);
    // One slot each: its instance is of the package it ran last (testkit, here).
    for package in ["nativekit", "testkit"] {
        load_on_both(&c, package).await;
        assert!(updates(&c, package, 2)
            .await
            .iter()
            .all(|r| r.1 == json!([])));
    }
    load_on_both(&c, "testkit").await;

    let made = Instant::now();
    let (st, v) = admin
        .post(
            "/admin/broadcast",
            &json!({"package": "testkit", "payload": {"mode": "v2"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["broadcast"]["id"].as_str().unwrap().to_string();
    let live: BTreeSet<&str> = v["live_processors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(live, BTreeSet::from(["a", "b"]), "{v}");
    let status = applied_by(&admin, &id, &["a", "b"]).await;
    // Idle processors ask every 2 s and report at once.
    assert!(
        made.elapsed() < Duration::from_secs(8),
        "took {:?}",
        made.elapsed()
    );
    assert_eq!(status["pending"], json!([]), "{status}");
    for r in status["applied"].as_array().unwrap() {
        assert_eq!(r["instances"], 1, "the idle instance got it: {status}");
        assert!(r["error"].is_null(), "{status}");
    }
    let after = updates(&c, "testkit", 12).await;
    let ran: BTreeSet<&str> = after.iter().map(|r| r.0.as_str()).collect();
    assert!(
        after.iter().all(|r| r.1 == json!([{"mode": "v2"}])),
        "{after:?}"
    );
    assert_eq!(ran.len(), 2, "{after:?}");
    // Another package's instances are untouched.
    assert!(updates(&c, "nativekit", 4)
        .await
        .iter()
        .all(|r| r.1 == json!([])));

    // Native programs get it as one `update` line, whatever newlines or protocol-looking text
    // the payload holds.
    let payload = json!([1, "two\nlines\n{\"op\":\"result\",\"id\":null,\"ok\":1}\n"]);
    let (st, v) = admin
        .post(
            "/admin/broadcast",
            &json!({"package": "nativekit", "version": "^1", "payload": payload}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let nid = v["broadcast"]["id"].as_str().unwrap().to_string();
    applied_by(&admin, &nid, &["a", "b"]).await;
    assert!(updates(&c, "nativekit", 6)
        .await
        .iter()
        .all(|r| r.1 == json!([payload])));

    // A version nobody runs reaches nobody's instances (the processors still report it).
    let (st, v) = admin
        .post(
            "/admin/broadcast",
            &json!({"package": "testkit", "version": "2.0.0", "payload": "not for 1.0.0"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let vid = v["broadcast"]["id"].as_str().unwrap().to_string();
    let s = applied_by(&admin, &vid, &["a", "b"]).await;
    assert!(
        s["applied"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["instances"] == 0),
        "{s}"
    );

    // From the CLI: it prints each processor's report as it comes.
    let admin_token = c.mint(Role::Admin, "ops");
    let out = std::process::Command::new(crpc_tests::sibling_binary("crpc"))
        .args([
            "broadcast",
            "testkit",
            r#"{"mode": "v3"}"#,
            "--version",
            "^1",
            "--wait",
            "20s",
        ])
        .env("CRPC_SERVER", &c.server.url)
        .env("CRPC_TOKEN", &admin_token)
        .env("HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("to 2 live processor(s)"), "{text}");
    for w in ["a: applied to", "b: applied to"] {
        assert!(text.contains(w), "{text}");
    }
    // The slots hold nativekit now: testkit starts anew and gets the latest only.
    let after = updates(&c, "testkit", 6).await;
    let v3 = json!([{"mode": "v3"}]);
    assert!(after.iter().all(|r| r.1 == v3), "{after:?}");

    // A processor started later gets the latest for its instances right after init.
    a.terminate();
    b.terminate();
    let _late = c.processor(&["--cpu-slots", "1", "--worker-id", "late"]);
    let late = updates(&c, "testkit", 3).await;
    assert!(
        late.iter()
            .all(|r| r.0 == "late" && r.1 == json!([{"mode": "v3"}])),
        "{late:?}"
    );
    let late = updates(&c, "nativekit", 2).await;
    assert!(late.iter().all(|r| r.1 == json!([payload])), "{late:?}");
}

/// Only an admin may broadcast or read broadcasts; bad names, versions and payloads are
/// refused naming the field; nothing reaches the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_broadcasts_are_refused_and_change_nothing() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let admin = Api::new(&c.server.url, Some(c.mint(Role::Admin, "ops")));
    let worker = Api::new(&c.server.url, Some(c.worker_token.clone()));
    let _p = c.processor(&["--cpu-slots", "1"]);
    let body = json!({"package": "testkit", "payload": "x"});
    assert_error(
        &c.user.post("/admin/broadcast", &body).await,
        403,
        "forbidden",
    );
    assert_error(
        &worker.post("/admin/broadcast", &body).await,
        403,
        "forbidden",
    );
    let big = "x".repeat(70 * 1024);
    for (bad, field) in [
        (json!({"package": "../etc", "payload": 1}), "package"),
        (json!({"package": "", "payload": 1}), "package"),
        (
            json!({"package": "testkit", "version": "1.0.0; rm -rf /", "payload": 1}),
            "version",
        ),
        (
            json!({"package": "testkit", "version": "x".repeat(200), "payload": 1}),
            "version",
        ),
        (json!({"package": "testkit", "payload": big}), "payload"),
    ] {
        let got = admin.post("/admin/broadcast", &bad).await;
        assert_error(&got, 422, "validation_failed");
        assert_eq!(got.1["error"]["details"]["field"], field, "{}", got.1);
    }
    let got = admin
        .post(
            "/admin/broadcast",
            &json!({"package": "testkit", "payload": 1, "extra": 1}),
        )
        .await;
    assert_eq!(got.0, 422, "{}", got.1);
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &admin.get(&format!("/admin/broadcasts/{unknown}")).await,
        404,
        "not_found",
    );
    assert_error(
        &admin.get("/admin/broadcasts/..%2F..%2Fetc").await,
        404,
        "not_found",
    );
    assert_error(
        &c.user.get(&format!("/admin/broadcasts/{unknown}")).await,
        403,
        "forbidden",
    );
    // A worker reporting broadcasts that do not exist changes nothing; too many is a 422.
    let fake = json!({"id": unknown, "applied_at": 1, "instances": 5});
    let (st, v) = worker
        .post(
            "/worker/heartbeat",
            &json!({"applied": [fake], "broadcasts_since": 0}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v.get("broadcasts"), None, "{v}");
    let many: Vec<Value> = (0..101).map(|_| fake.clone()).collect();
    let got = worker
        .post("/worker/heartbeat", &json!({"applied": many}))
        .await;
    assert_error(&got, 422, "validation_failed");
    assert_error(
        &admin.get(&format!("/admin/broadcasts/{unknown}")).await,
        404,
        "not_found",
    );
    let (_, v) = c.user.get("/user/tasks?limit=10").await;
    let id = c.submit(call("testkit", "updates")).await;
    let v2 = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(v2["answer"], json!([]), "{v2}; {v}");
}

/// `[start, end]` of each answer (`testkit.span*`).
async fn spans(api: &Api, ids: &[String]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for id in ids {
        let (_, v) = api.get(&format!("/user/request_answer/{id}?wait=60")).await;
        assert_eq!(v["state"], "succeeded", "{v}");
        out.push((
            v["answer"][0].as_u64().unwrap(),
            v["answer"][1].as_u64().unwrap(),
        ));
    }
    out
}

/// The most spans running at one instant.
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = spans.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort(); // an end (-1) sorts before a start at the same ms
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The most starts within any `window` ms.
fn most_starts_within(spans: &[(u64, u64)], window: u64) -> usize {
    let mut starts: Vec<u64> = spans.iter().map(|s| s.0).collect();
    starts.sort_unstable();
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|&&s| s < starts[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A function with `max_concurrent = 2` never runs more than 2 at once across 3 processors;
/// a concurrency key with `max_concurrent: 1` runs its tasks one at a time (another owner's
/// same key is its own); `rate_per_s = 20` holds over 10 s across 2 processors. `users`
/// submit through different replicas where there are several.
async fn caps_hold(c: &Cluster, users: [&Api; 2]) {
    c.publish("testkit", None).await;
    let _p: Vec<_> = ["p1", "p2", "p3"]
        .iter()
        .map(|w| c.processor(&["--cpu-slots", "2", "--worker-id", w]))
        .collect();
    let span = |f: &str, ms: u64| json!({"package": "testkit", "function": f, "args": [ms]});

    let mut ids = batch(users[0], vec![span("span_capped", 40); 20]).await;
    ids.extend(batch(users[1], vec![span("span_capped", 40); 20]).await);
    let capped = spans(&c.user, &ids).await;
    assert_eq!(most_at_once(&capped), 2, "{capped:?}");

    let keyed = |key: &str| {
        let mut t = span("span", 30);
        t["concurrency_key"] = json!(key);
        t["max_concurrent"] = json!(1);
        t
    };
    let bob = Api::new(&c.server.url, Some(c.mint(Role::User, "bob")));
    let a = batch(users[0], vec![keyed("customer-1"); 12]).await;
    let b = batch(users[1], vec![keyed("customer-2"); 12]).await;
    let theirs = batch(&bob, vec![keyed("customer-1"); 12]).await;
    let (sa, sb) = (spans(&c.user, &a).await, spans(&c.user, &b).await);
    let st = spans(&bob, &theirs).await;
    assert_eq!(most_at_once(&sa), 1, "{sa:?}");
    assert_eq!(most_at_once(&sb), 1, "{sb:?}");
    assert_eq!(most_at_once(&st), 1, "{st:?}");
    let all: Vec<(u64, u64)> = [sa, sb, st].concat();
    assert!(
        most_at_once(&all) >= 2,
        "different keys run side by side: {all:?}"
    );

    drop(_p);
    let _p: Vec<_> = ["r1", "r2"]
        .iter()
        .map(|w| c.processor(&["--cpu-slots", "2", "--worker-id", w]))
        .collect();
    // Both install the package first: the rate spaces the leases, and a processor that is
    // still installing starts its leases late.
    let mut ran = BTreeSet::new();
    for _ in 0..20 {
        for id in batch(&c.user, vec![span("span", 20); 8]).await {
            c.wait(&id, Duration::from_secs(60)).await;
            let (_, d) = c.user.get(&format!("/user/tasks/{id}")).await;
            ran.insert(d["attempts"][0]["worker_id"].as_str().unwrap().to_string());
        }
        if ran.len() == 2 {
            break;
        }
    }
    let started = Instant::now();
    let mut ids = batch(users[0], vec![span("span_rated", 1); 110]).await;
    ids.extend(batch(users[1], vec![span("span_rated", 1); 110]).await);
    let rated = spans(&c.user, &ids).await;
    let took = started.elapsed();
    let per_10s = most_starts_within(&rated, 10_000);
    let per_1s = most_starts_within(&rated, 1000);
    assert!(
        (190..=202).contains(&per_10s),
        "{per_10s} starts within 10 s; {rated:?}"
    );
    assert!(per_1s <= 22, "{per_1s} starts within 1 s: {rated:?}");
    assert!(
        took >= Duration::from_secs(10),
        "220 tasks at 20/s took {took:?}"
    );
    eprintln!("rate 20/s: {per_10s} starts in the busiest 10 s, {per_1s} in the busiest second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_and_rates_hold_across_processors_on_sqlite() {
    let c = Cluster::start(&[]);
    let user = Api::new(&c.server.url, Some(c.user_token.clone()));
    caps_hold(&c, [&user, &user]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_and_rates_hold_across_two_postgres_replicas() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let c = Cluster::start_with_database(db.url(), &[]);
    let other = c.replica();
    let user = Api::new(&c.server.url, Some(c.user_token.clone()));
    let there = Api::new(&other.url, Some(c.user_token.clone()));
    caps_hold(&c, [&user, &there]).await;
}

/// Bad caps are refused naming the field, in a single submit and in a batch, and in a manifest
/// at publish; nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_caps_are_refused_and_change_nothing() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let noop = |extra: Value| {
        let mut t = json!({"package": "testkit", "function": "noop"});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    for (extra, field) in [
        (json!({"concurrency_key": ""}), "concurrency_key"),
        (
            json!({"concurrency_key": "k".repeat(201)}),
            "concurrency_key",
        ),
        (json!({"concurrency_key": "a\u{0}b"}), "concurrency_key"),
        (
            json!({"concurrency_key": "k", "max_concurrent": 0}),
            "max_concurrent",
        ),
        (
            json!({"concurrency_key": "k", "max_concurrent": 100_001}),
            "max_concurrent",
        ),
        (
            json!({"concurrency_key": "k", "max_concurrent": 1e20}),
            "max_concurrent",
        ),
        (
            json!({"concurrency_key": "k", "max_concurrent": -1}),
            "max_concurrent",
        ),
        (json!({"max_concurrent": 2}), "max_concurrent"),
        (json!({"concurrency_key": 7}), "concurrency_key"),
    ] {
        let got = c.user.post("/user/submit_task", &noop(extra.clone())).await;
        assert_eq!(got.0, 422, "{extra} → {}", got.1);
        let named = got.1["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(named.ends_with(field), "{extra} → {}", got.1);
        let tasks = json!({"tasks": [noop(json!({})), noop(extra.clone())]});
        let got = c.user.post("/user/submit_batch", &tasks).await;
        assert_eq!(got.0, 422, "{extra} → {}", got.1);
        let named = got.1["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(
            named.starts_with("tasks[1]") && named.ends_with(field),
            "{}",
            got.1
        );
    }
    let (_, v) = c.user.get("/user/tasks").await;
    assert_eq!(v["tasks"], json!([]), "nothing queued: {v}");

    // A manifest whose limits are out of range is refused at publish, naming the key.
    for (line, key) in [
        ("rate_per_s = 1e20", "rate_per_s"),
        ("rate_per_s = nan", "rate_per_s"),
        ("rate_per_s = 0.0", "rate_per_s"),
        ("max_concurrent = 0", "max_concurrent"),
        ("max_concurrent = -3", "max_concurrent"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        crpc_tests::copy_dir(&crpc_tests::example_dir("testkit"), dir.path());
        let manifest = dir.path().join("crpc.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text = text.replace("version = \"1.0.0\"", "version = \"1.0.1\"");
        let text = text.replace("[functions.noop]\n", &format!("[functions.noop]\n{line}\n"));
        std::fs::write(&manifest, text).unwrap();
        let archive = crpc_package::archive::build(dir.path()).unwrap();
        let got = c
            .publisher
            .put_bytes("/v1/packages/testkit/1.0.1", archive, &[])
            .await;
        assert_eq!(got.0, 422, "{line} → {}", got.1);
        assert!(got.1.to_string().contains(key), "{line} → {}", got.1);
    }
    let (_, v) = c.publisher.get("/v1/packages/testkit").await;
    assert_eq!(
        v["versions"].as_array().map(Vec::len),
        Some(1),
        "only 1.0.0: {v}"
    );
}
