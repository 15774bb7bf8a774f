//! Task graphs with real processors, on SQLite and PostgreSQL: `$ref` arguments, `after`,
//! `#N` references inside a batch, failures that fail every dependent, and a processor killed
//! in the middle of a graph.
use std::time::{Duration, Instant};

use crpc_tests::{assert_error, Api, Cluster, TestDatabase};
use serde_json::{json, Value};
use task_api::Role;

const LONG: Duration = Duration::from_secs(60);

fn echo(v: Value) -> Value {
    json!({"package": "testkit", "function": "echo", "args": [v]})
}

/// Submits a batch as alice; the task ids.
async fn batch(c: &Cluster, tasks: Vec<Value>) -> Vec<String> {
    c.user.submit_batch(tasks).await
}

async fn graphs(c: Cluster) {
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);

    // A diamond: A; B and C use A; D uses B and C. Waiting on D long-polls through the graph.
    let ids = batch(
        &c,
        vec![
            echo(json!({"n": 3})),
            echo(json!({"$ref": "#0", "path": "/n"})),
            echo(json!({"$ref": "#0"})),
            echo(json!([{"$ref": "#1"}, {"$ref": "#2"}])),
        ],
    )
    .await;
    let d = c.wait(&ids[3], LONG).await;
    assert_eq!(d["state"], "succeeded", "{d}; log: {}", p.log());
    assert_eq!(d["answer"], json!([3, {"n": 3}]));

    // A failing A fails B, C and D, each naming A.
    let ids = batch(
        &c,
        vec![
            json!({"package": "testkit", "function": "fail", "args": ["fatal", "boom"]}),
            echo(json!({"$ref": "#0"})),
            echo(json!({"$ref": "#0"})),
            json!({"package": "testkit", "function": "noop", "after": ["#1", "#2"]}),
        ],
    )
    .await;
    for id in &ids[1..] {
        let v = c.wait(id, LONG).await;
        assert_eq!(v["state"], "failed", "{v}");
        assert_eq!(v["error"]["kind"], "dependency_failed", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&ids[0]) && msg.contains("boom"), "{msg}");
    }

    // A task submitted alone may refer to a finished one: it runs at once with the answer.
    let (st, v) = c
        .user
        .post(
            "/user/submit_task",
            &echo(json!({"$ref": ids[0], "path": "/x"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let v = c.wait(v["id"].as_str().unwrap(), LONG).await;
    assert_eq!(v["error"]["kind"], "dependency_failed", "{v}");

    // Forward and self references are refused, naming the task and the field; nothing queued.
    let before = c.user.get("/user/tasks?limit=1000").await.1["tasks"]
        .as_array()
        .unwrap()
        .len();
    for tasks in [
        json!([echo(json!({"$ref": "#1"})), echo(json!(1))]),
        json!([echo(json!(1)), echo(json!({"$ref": "#1"}))]),
    ] {
        let got = c
            .user
            .post("/user/submit_batch", &json!({ "tasks": tasks }))
            .await;
        assert_error(&got, 422, "validation_failed");
        let field = got.1["error"]["details"]["field"].as_str().unwrap_or("");
        assert!(field.ends_with("args[0]"), "{}", got.1);
        assert!(got.1["error"]["message"].as_str().unwrap().contains("#1"));
    }
    let after = c.user.get("/user/tasks?limit=1000").await.1["tasks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // Another owner's task is refused exactly like one that does not exist.
    let bob = Api::new(&c.server.url, Some(c.mint(Role::User, "bob")));
    let theirs = bob
        .post("/user/submit_task", &echo(json!({"$ref": ids[0]})))
        .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let none = bob
        .post("/user/submit_task", &echo(json!({"$ref": unknown})))
        .await;
    assert_error(&theirs, 422, "validation_failed");
    assert_error(&none, 422, "validation_failed");
    let strip = |v: &Value, id: &str| v["error"]["message"].as_str().unwrap().replace(id, "ID");
    assert_eq!(strip(&theirs.1, &ids[0]), strip(&none.1, &unknown));
    let bobs = bob.get("/user/tasks").await.1;
    assert_eq!(bobs["tasks"].as_array().unwrap().len(), 0, "{bobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_graphs_on_sqlite() {
    graphs(Cluster::start(&[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_graphs_on_postgres() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    graphs(Cluster::start_with_database(db.url(), &[])).await;
}

/// A processor killed -9 while it runs B (and restarted under its worker id) does not lose D:
/// B's lease goes back at the restart, B runs again, and D gets both answers.
async fn killed_inside_a_graph(c: Cluster) {
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "1", "--worker-id", "victim"]);
    let ids = batch(
        &c,
        vec![
            echo(json!(1)),
            json!({"package": "testkit", "function": "sleep_ms", "args": [1500], "after": ["#0"]}),
            echo(json!(2)),
            echo(json!([{"$ref": "#0"}, {"$ref": "#1"}, {"$ref": "#2"}])),
        ],
    )
    .await;
    let started = Instant::now();
    loop {
        let v = c.answer(&ids[1]).await;
        if v["state"] == "leased" {
            break;
        }
        assert!(started.elapsed() < LONG, "B never ran: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.kill9();
    p.restart();
    let d = c.wait(&ids[3], LONG).await;
    assert_eq!(d["state"], "succeeded", "{d}; log: {}", p.log());
    assert_eq!(d["answer"], json!([1, 1500, 2]));
    let (_, b) = c.user.get(&format!("/user/tasks/{}", ids[1])).await;
    assert!(b["attempt"].as_u64().unwrap() >= 2, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_inside_a_graph_loses_nothing_on_sqlite() {
    killed_inside_a_graph(Cluster::start(&["--lease-ttl", "4s"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_inside_a_graph_loses_nothing_on_postgres() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    killed_inside_a_graph(Cluster::start_with_database(
        db.url(),
        &["--lease-ttl", "4s"],
    ))
    .await;
}

/// The estimate counts waiting tasks and gives a chain its critical path: five 400 ms tasks in
/// a chain take ~2 s however many slots there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_of_a_chain_is_its_critical_path() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let _p = c.processor(&["--cpu-slots", "4"]);
    let sleep = |after: Option<usize>| {
        let mut t = json!({"package": "testkit", "function": "sleep_ms", "args": [400]});
        if let Some(i) = after {
            t["after"] = json!([format!("#{i}")]);
        }
        t
    };
    // Warm the statistics of sleep_ms.
    let warm = batch(&c, (0..8).map(|_| sleep(None)).collect()).await;
    c.wait(&warm[7], LONG).await;
    let chain = batch(&c, (0..5usize).map(|i| sleep(i.checked_sub(1))).collect()).await;
    let (_, est) = c.user.get("/user/estimate_time_left").await;
    assert_eq!(est["waiting"], 4, "{est}");
    let eta = est["eta_s"].as_f64().unwrap();
    assert!((1.6..3.0).contains(&eta), "5 × 400 ms in a chain: {est}");
    let (_, at) = c
        .user
        .get(&format!("/user/estimate_time_left?task_id={}", chain[2]))
        .await;
    let eta2 = at["eta_s"].as_f64().unwrap();
    assert!(
        (0.9..1.8).contains(&eta2),
        "the third link ends at ~1.2 s: {at}"
    );
    c.wait(&chain[4], LONG).await;
}

/// A package's `[init]` table reaches its WASM `init` export and its native program's start,
/// with the processor's `--init NAME=JSON` keys over it; a bad `--init` stops the processor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_configuration_reaches_wasm_and_native_packages() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    for package in ["testkit", "nativekit"] {
        let id = c
            .submit(json!({"package": package, "function": "init_config"}))
            .await;
        let v = c.wait(&id, LONG).await;
        assert_eq!(
            v["answer"],
            json!({"greeting": "hello"}),
            "{v}; log: {}",
            p.log()
        );
    }
    drop(p);
    let over = r#"testkit={"greeting": "bonjour", "extra": [1]}"#;
    let native = r#"nativekit={"greeting": "hej"}"#;
    let p = c.processor(&["--cpu-slots", "1", "--init", over, "--init", native]);
    for (package, want) in [
        ("testkit", json!({"greeting": "bonjour", "extra": [1]})),
        ("nativekit", json!({"greeting": "hej"})),
    ] {
        let id = c
            .submit(json!({"package": package, "function": "init_config"}))
            .await;
        let v = c.wait(&id, LONG).await;
        assert_eq!(v["answer"], want, "{v}; log: {}", p.log());
    }
    drop(p);
    for bad in ["testkit", "testkit=[1]", "../x={}", "testkit={"] {
        let out = std::process::Command::new(crpc_tests::sibling_binary("task-processor"))
            .args(["--server", &c.server.url, "--init", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--init {bad}: {err}");
        assert!(err.contains("--init"), "{err}");
    }
}

/// Hostile references and start times: each is a 422 naming the field, and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_references_and_start_times_are_refused_and_change_nothing() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let a = c.submit(echo(json!(1))).await;
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"$ref": uuid::Uuid::now_v7().to_string()}))
        .collect();
    let deep = json!({"$ref": a, "path": format!("/{}", "x/".repeat(600))});
    let cases = [
        (echo(json!({"$ref": "#0"})), "args[0]"),
        (echo(json!({"$ref": a, "extra": 1})), "args[0]"),
        (echo(json!({"$ref": a, "path": "no-slash"})), "args[0]"),
        (echo(deep), "args[0]"),
        (echo(json!({"$ref": ["not", "a", "string"]})), "args[0]"),
        (echo(json!(many)), "args"),
        (
            json!({"package": "testkit", "function": "noop", "after": ["../../etc"]}),
            "after[0]",
        ),
        (
            json!({"package": "testkit", "function": "noop", "delay_s": -1}),
            "delay_s",
        ),
        (
            json!({"package": "testkit", "function": "noop", "delay_s": 1e20}),
            "delay_s",
        ),
        (
            json!({"package": "testkit", "function": "noop", "not_before": "tomorrow"}),
            "not_before",
        ),
        (
            json!({"package": "testkit", "function": "noop", "not_before": "9999-01-01T00:00:00Z"}),
            "not_before",
        ),
        (
            json!({"package": "testkit", "function": "noop", "delay_s": 1, "not_before": "2026-01-01T00:00:00Z"}),
            "delay_s",
        ),
    ];
    for (body, field) in cases {
        let got = c.user.post("/user/submit_task", &body).await;
        assert_error(&got, 422, "validation_failed");
        assert_eq!(got.1["error"]["details"]["field"], field, "{}", got.1);
    }
    let batch = json!({"tasks": [echo(json!({"$ref": "#999999"}))]});
    let got = c.user.post("/user/submit_batch", &batch).await;
    assert_error(&got, 422, "validation_failed");
    assert_eq!(got.1["error"]["details"]["field"], "tasks[0].args[0]");
    let (_, all) = c.user.get("/user/tasks?limit=1000").await;
    assert_eq!(
        all["tasks"].as_array().unwrap().len(),
        1,
        "only the first task: {all}"
    );

    // A delay holds the task back; a not_before in the past does not.
    let later = c
        .submit(json!({"package": "testkit", "function": "noop", "delay_s": 2.5}))
        .await;
    let now = c
        .submit(
            json!({"package": "testkit", "function": "noop", "not_before": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let p = c.processor(&["--cpu-slots", "1"]);
    assert_eq!(
        c.wait(&now, LONG).await["state"],
        "succeeded",
        "{}",
        p.log()
    );
    assert_eq!(c.wait(&later, LONG).await["state"], "succeeded");
    let (_, t) = c.user.get(&format!("/user/tasks/{later}")).await;
    let held = t["finished_at"].as_i64().unwrap() - t["created_at"].as_i64().unwrap();
    assert!(
        held >= 2500,
        "a task delayed 2.5 s finished {held} ms after its submit: {t}"
    );
}

/// `crpc_leases_total{how="chained"}` as the server reports it.
async fn chained_leases(c: &Cluster) -> f64 {
    let admin = c.user.with_token(&c.mint(Role::Admin, "root"));
    let r = admin.req(reqwest::Method::GET, "/metrics").send().await;
    let text = r.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("crpc_leases_total{how=\"chained\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `n` tasks of `f(link)` in one batch, each link's argument the answer of the one before.
fn chain_of(n: usize, first: Value, f: impl Fn(Value) -> Value) -> Vec<Value> {
    (0..n)
        .map(|i| match i {
            0 => f(first.clone()),
            _ => f(json!({"$ref": format!("#{}", i - 1)})),
        })
        .collect()
}

/// A chain runs link after link on one processor, each leased behind the one before it
/// (chained) once the function's runtime is known, with the right answers, and so does a
/// fan-out behind its root; a link that fails
/// (retryably, then for good) fails the rest of the chain; a processor killed -9 while it
/// holds chained leases and restarted loses nothing.
async fn chains(c: Cluster) {
    c.publish("testkit", None).await;
    let mut p = c.processor(&["--cpu-slots", "2", "--worker-id", "chainer"]);
    let add = |v: Value| json!({"package": "testkit", "function": "add", "args": [v, 1]});
    let steps =
        |v: Value| json!({"package": "testkit", "function": "progress_steps", "args": [v, 25]});
    // The runtimes of `add` and `progress_steps` become known (never-measured functions are
    // not chained, as they are not prefetched).
    let warm = batch(&c, vec![add(json!(0)), steps(json!(1)), steps(json!(1))]).await;
    for id in &warm {
        assert_eq!(c.wait(id, LONG).await["state"], "succeeded");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let ids = batch(&c, chain_of(300, json!(0), add)).await;
    let last = c.wait(&ids[299], LONG).await;
    assert_eq!(last["answer"], json!(300), "{last}; log: {}", p.log());
    let chained = chained_leases(&c).await;
    assert!(chained >= 100.0, "only {chained} of 300 links chained");

    // A fan-out behind its root runs on both slots; the fan-in waits for all of it.
    let mut tasks = vec![add(json!(0))];
    tasks.extend((0..50).map(|_| add(json!({"$ref": "#0"}))));
    let all: Vec<Value> = (1..=50).map(|i| json!({"$ref": format!("#{i}")})).collect();
    tasks.push(echo(Value::Array(all)));
    let ids = batch(&c, tasks).await;
    let fan_in = c.wait(&ids[51], LONG).await;
    assert_eq!(fan_in["answer"], json!(vec![2; 50]), "{fan_in}");
    // How many follow the root depends on the budget over `add`'s mean runtime, which a busy
    // machine inflates: at least one.
    let fanned = chained_leases(&c).await - chained;
    assert!(fanned >= 1.0, "the fan-out was not chained ({fanned})");

    // Link 5 fails with a retryable error, runs again (its attempt 2), fails for good; links
    // 6.. fail with `dependency_failed` carrying its message, whether they were chained or not.
    let mut tasks = chain_of(10, json!(0), add);
    tasks[5] = json!({"package": "testkit", "function": "fail", "args": ["retryable", "link five"],
                      "max_attempts": 2, "after": ["#4"]});
    let ids = batch(&c, tasks).await;
    for id in &ids[6..] {
        let v = c.wait(id, LONG).await;
        assert_eq!(v["error"]["kind"], "dependency_failed", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("link five"),
            "{v}"
        );
    }
    let five = c.wait(&ids[5], LONG).await;
    assert_eq!(
        (five["state"].as_str(), five["attempt"].as_u64()),
        (Some("failed"), Some(2)),
        "{five}"
    );
    assert_eq!(c.wait(&ids[4], LONG).await["answer"], json!(5));

    // A link whose reference points at nothing in the answer before it: the processor hands
    // it back and the server fails it, naming the field, as it would have unchained.
    let mut tasks = chain_of(5, json!(0), add);
    tasks[3] = json!({"package": "testkit", "function": "add",
                      "args": [{"$ref": "#2", "path": "/nope"}, 1]});
    let ids = batch(&c, tasks).await;
    let v = c.wait(&ids[3], LONG).await;
    assert_eq!(v["error"]["kind"], "dependency_failed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("args[0]: the answer of task"),
        "{v}"
    );
    assert_eq!(
        c.wait(&ids[4], LONG).await["error"]["kind"],
        "dependency_failed"
    );

    // 40 links of 25 ms: killed while it holds some of them chained, restarted under its
    // worker id; every link runs and the last one answers.
    let before = chained_leases(&c).await;
    let ids = batch(&c, chain_of(40, json!(1), steps)).await;
    let started = Instant::now();
    while c.answer(&ids[8]).await["state"] != "succeeded" {
        assert!(started.elapsed() < LONG, "the chain never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.kill9();
    p.restart();
    let last = c.wait(&ids[39], LONG).await;
    assert_eq!(last["answer"], json!(1), "{last}; log: {}", p.log());
    for id in &ids {
        assert_eq!(c.answer(id).await["state"], "succeeded");
    }
    assert!(
        chained_leases(&c).await > before,
        "the slow chain was not chained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_run_behind_their_links_on_sqlite() {
    chains(Cluster::start(&["--lease-ttl", "4s"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_run_behind_their_links_on_postgres() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    chains(Cluster::start_with_database(
        db.url(),
        &["--lease-ttl", "4s"],
    ))
    .await;
}
