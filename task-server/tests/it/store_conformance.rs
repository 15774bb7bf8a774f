//! The store conformance suite: every backend must pass these unchanged. A backend provides a
//! `Backend` that opens the same fresh database each time `open` is called (to test reopening).
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Map};
use task_api::{HeartbeatLease, Lease, TaskError, TaskErrorKind, TaskState};
use task_server::cost::Cost;
use task_server::fit::Basis;
use task_server::queue::now_ms;
use task_server::stats::Predictors;
use task_server::store::*;
use uuid::Uuid;

/// Opens stores over one database.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn open(&self, cfg: StoreConfig) -> Arc<dyn Store>;
}

pub struct Sqlite(tempfile::TempDir);

impl Sqlite {
    pub fn new() -> Self {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn open(&self, cfg: StoreConfig) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(&self.0.path().join("crpc.db"), cfg)
                .await
                .unwrap(),
        )
    }
}

pub use crpc_tests::TestDatabase as Postgres;

#[async_trait::async_trait]
impl Backend for Postgres {
    async fn open(&self, cfg: StoreConfig) -> Arc<dyn Store> {
        Arc::new(PgStore::open(self.url(), cfg).await.unwrap())
    }
}

fn cfg() -> StoreConfig {
    StoreConfig {
        backoff_base_ms: 1000,
        backoff_max_ms: 60_000,
        default_result_ttl_s: 3600,
        timeout_grace_ms: 0,
    }
}

pub fn task(function: &str, priority: i32) -> NewTask {
    NewTask {
        id: Uuid::now_v7(),
        package: "pkg".into(),
        version: "1.0.0".into(),
        function: function.into(),
        args: vec![json!(1)],
        kwargs: Map::new(),
        priority,
        max_attempts: 3,
        timeout_s: None,
        ttl_s: None,
        idempotency_key: None,
        request_hash: None,
        args_hash: "h".into(),
        memoize: false,
        req_gpus: 0,
        req_memory_mb: 0,
        req_datasets: vec![],
        cost: Cost::default(),
        state: TaskState::Queued,
        not_before: None,
        depends_on: vec![],
        cost_at: None,
        cap_fn: None,
        cap_key: None,
        limits: vec![],
        files: vec![],
    }
}

/// A task of `function` waiting for `deps`, its arguments `args` (references included).
fn waiting(function: &str, args: Vec<serde_json::Value>, deps: &[Uuid]) -> NewTask {
    NewTask {
        args,
        state: TaskState::Waiting,
        depends_on: deps.to_vec(),
        cost_at: Some(Default::default()),
        ..task(function, 0)
    }
}

/// `{"$ref": id}`.
fn r(id: Uuid) -> serde_json::Value {
    json!({"$ref": id.to_string()})
}

/// Claims one task (it must be `function`) and answers it with `answer`.
async fn run_one(s: &Arc<dyn Store>, function: &str, answer: AnswerIn, now: i64) -> Lease {
    let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
    assert_eq!(l.task.function, function);
    let a = AnswerIn {
        id: l.id,
        lease_epoch: Some(l.lease_epoch),
        ..answer
    };
    s.answer(vec![a], now).await.unwrap();
    l
}

pub async fn a_task_graph_settles_as_its_dependencies_end(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    // A diamond in one batch: A; B and C use A; D uses B and C.
    let a = task("a", 0);
    let bt = waiting("b", vec![r(a.id)], &[a.id]);
    let ct = waiting(
        "c",
        vec![json!({"$ref": a.id.to_string(), "path": "/n"})],
        &[a.id],
    );
    let d = waiting("d", vec![r(bt.id), r(ct.id)], &[bt.id, ct.id]);
    let ids = [a.id, bt.id, ct.id, d.id];
    let batch = Uuid::now_v7();
    s.submit_batch("o", batch, vec![a, bt, ct, d], now)
        .await
        .unwrap();
    assert_eq!(state(&s, ids[3]).await, TaskState::Waiting);
    assert_eq!(claimed_functions(&s, 10, now).await, vec!["a"]);
    let la = s.get_task(ids[0]).await.unwrap().unwrap();
    assert_eq!(la.state, TaskState::Leased);
    s.answer(vec![ok(ids[0], 1, json!({"n": 7}))], now)
        .await
        .unwrap();
    // B gets A's whole answer, C the part its pointer names.
    let mut got = s.claim(claim("w", 10, now)).await.unwrap();
    got.sort_by_key(|l| l.task.function.clone());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].task.args, vec![json!({"n": 7})]);
    assert_eq!(got[1].task.args, vec![json!(7)]);
    assert_eq!(state(&s, ids[3]).await, TaskState::Waiting);
    s.answer(vec![ok(got[0].id, 1, json!("b"))], now)
        .await
        .unwrap();
    assert_eq!(state(&s, ids[3]).await, TaskState::Waiting);
    s.answer(vec![ok(got[1].id, 1, json!("c"))], now)
        .await
        .unwrap();
    let l = run_one(&s, "d", ok(ids[3], 0, json!("bc")), now).await;
    assert_eq!(l.task.args, vec![json!("b"), json!("c")]);
    assert_eq!(state(&s, ids[3]).await, TaskState::Succeeded);

    // A fatal failure fails the whole chain below it, each naming the root.
    let a = task("a2", 0);
    let bt = waiting("b2", vec![r(a.id)], &[a.id]);
    let ct = waiting("c2", vec![r(bt.id)], &[bt.id]);
    let ids = [a.id, bt.id, ct.id];
    s.submit_batch("o", Uuid::now_v7(), vec![a, bt, ct], now)
        .await
        .unwrap();
    let fatal = AnswerIn {
        kind: AnswerKind::Fatal(TaskError {
            kind: TaskErrorKind::Fatal,
            message: "boom".into(),
        }),
        ..ok(ids[0], 0, json!(null))
    };
    run_one(&s, "a2", fatal, now).await;
    for id in &ids[1..] {
        let t = s.get_task(*id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Failed);
        let e = t.error.unwrap();
        assert_eq!(e.kind, TaskErrorKind::DependencyFailed);
        assert!(e.message.contains(&ids[0].to_string()), "{}", e.message);
        assert!(e.message.contains("boom"), "{}", e.message);
    }

    // Waiting for a task that already succeeded queues at once; for one that was cancelled
    // or deleted, fails at once; cancelling a waiting task's dependency fails it.
    let late = waiting("late", vec![r(ids[0])], &[ids[0]]);
    let done = task("done", 0);
    let done_id = done.id;
    s.submit_one("o", done, now).await.unwrap();
    run_one(&s, "done", ok(done_id, 0, json!(1)), now).await;
    let after_done = waiting("after_done", vec![r(done_id)], &[done_id]);
    let (late_id, after_id) = (late.id, after_done.id);
    s.submit_one("o", late, now).await.unwrap();
    s.submit_one("o", after_done, now).await.unwrap();
    assert_eq!(state(&s, late_id).await, TaskState::Failed);
    let l = run_one(&s, "after_done", ok(after_id, 0, json!(2)), now).await;
    assert_eq!(l.task.args, vec![json!(1)]);
    let q = task("q", 0);
    let w = waiting("w", vec![], &[q.id]);
    let (q_id, w_id) = (q.id, w.id);
    s.submit_batch("o", Uuid::now_v7(), vec![q, w], now)
        .await
        .unwrap();
    s.cancel(q_id, "o", now).await.unwrap();
    let t = s.get_task(w_id).await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.error.unwrap().message.contains("cancelled"));
    let q = task("q2", 0);
    let w = waiting("w2", vec![], &[q.id]);
    let (q_id, w_id) = (q.id, w.id);
    s.submit_batch("o", Uuid::now_v7(), vec![q, w], now)
        .await
        .unwrap();
    s.delete(q_id, now).await.unwrap();
    assert_eq!(state(&s, w_id).await, TaskState::Failed);
    assert_eq!(s.settle_stuck(now).await.unwrap(), 0);

    // A memoizing task whose substituted call already succeeded finishes with that answer,
    // without running; its own dependents then settle.
    let hash = task_server::graph::args_hash("pkg", "1.0.0", "m", &[json!(1)], &Map::new());
    let twin = NewTask {
        memoize: true,
        args_hash: hash,
        ..task("m", 0)
    };
    let twin_id = twin.id;
    s.submit_one("o", twin, now).await.unwrap();
    run_one(&s, "m", ok(twin_id, 0, json!("memo!")), now).await;
    let src = task("src", 0);
    let m = NewTask {
        memoize: true,
        ..waiting("m", vec![r(src.id)], &[src.id])
    };
    let after_m = waiting("after_m", vec![r(m.id)], &[m.id]);
    let (src_id, m_id, after_id) = (src.id, m.id, after_m.id);
    s.submit_batch("o", Uuid::now_v7(), vec![src, m, after_m], now)
        .await
        .unwrap();
    run_one(&s, "src", ok(src_id, 0, json!(1)), now).await;
    let t = s.get_task(m_id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.answer, t.attempt),
        (TaskState::Succeeded, Some(json!("memo!")), 0)
    );
    let l = run_one(&s, "after_m", ok(after_id, 0, json!(0)), now).await;
    assert_eq!(l.task.args, vec![json!("memo!")]);
}

/// Worker `worker` of token subject `o`.
fn holder(worker: &str) -> Holder {
    Holder {
        worker_id: Some(worker.into()),
        owner: "o".into(),
    }
}

fn claim(worker: &str, n: u32, now: i64) -> ClaimRequest {
    ClaimRequest {
        holder: holder(worker),
        max_tasks: n,
        gpus: 0,
        memory_mb: None,
        datasets: vec![],
        now,
        lease_ttl_ms: 10_000,
        incarnation: None,
        request_id: None,
        gpu_only: false,
        predictors: None,
        chains: false,
        held_ms: 0.0,
    }
}

/// [`claim`] by one run of the worker.
fn claim_by(worker: &str, run: Uuid, n: u32, now: i64) -> ClaimRequest {
    ClaimRequest {
        incarnation: Some(run),
        ..claim(worker, n, now)
    }
}

/// A sighting of worker id `w` by token subject `owner`.
fn sighting(owner: &str, now: i64) -> WorkerRecord {
    WorkerRecord {
        worker_id: "w".into(),
        owner: owner.into(),
        slots: 1,
        capabilities: json!({}),
        first_seen: now,
        last_seen: now,
        running: 0,
        dispatch_ms: None,
        speed: None,
    }
}

fn ok(id: Uuid, epoch: i64, v: serde_json::Value) -> AnswerIn {
    AnswerIn {
        id,
        lease_epoch: Some(epoch),
        holder: holder("w"),
        kind: AnswerKind::Ok(v),
        runtime_ms: Some(10.0),
    }
}

fn retry(id: Uuid, epoch: i64, msg: &str) -> AnswerIn {
    AnswerIn {
        id,
        lease_epoch: Some(epoch),
        holder: holder("w"),
        kind: AnswerKind::Retryable(TaskError {
            kind: TaskErrorKind::Retryable,
            message: msg.into(),
        }),
        runtime_ms: None,
    }
}

/// The functions of one grant of up to `n` leases to worker `w`, in the order granted.
async fn claimed_functions(s: &Arc<dyn Store>, n: u32, now: i64) -> Vec<String> {
    let leases = s.claim(claim("w", n, now)).await.unwrap();
    leases.into_iter().map(|l| l.task.function).collect()
}

async fn state(s: &Arc<dyn Store>, id: Uuid) -> TaskState {
    s.get_task(id).await.unwrap().unwrap().state
}

pub async fn claims_in_priority_then_fifo_order(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    for x in [
        task("a", 0),
        task("b", 0),
        task("hi", 5),
        task("lo", -1),
        task("c", 0),
    ] {
        assert_eq!(
            s.submit_one("o", x, now).await.unwrap(),
            SubmitOutcome::Created
        );
    }
    let mut order = vec![];
    for _ in 0..3 {
        order.push(
            s.claim(claim("w", 1, now))
                .await
                .unwrap()
                .remove(0)
                .task
                .function,
        );
    }
    let rest = claimed_functions(&s, 10, now).await;
    assert_eq!(order, vec!["hi", "a", "b"]);
    assert_eq!(
        rest.len(),
        2,
        "limit respected, the rest handed out: {rest:?}"
    );
    assert!(rest.contains(&"c".to_string()) && rest.contains(&"lo".to_string()));
    assert!(s.claim(claim("w", 1, now)).await.unwrap().is_empty());
}

/// Within a priority, an owner with a backlog does not hold up another owner's first task.
pub async fn owners_take_turns_within_a_priority(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let backlog: Vec<NewTask> = (0..10).map(|_| task("bob", 0)).collect();
    s.submit_batch("bob", Uuid::now_v7(), backlog, now)
        .await
        .unwrap();
    assert_eq!(claimed_functions(&s, 3, now).await, ["bob"; 3]);
    s.submit_one("alice", task("alice", 0), now).await.unwrap();
    s.submit_one("bob", task("bob-late", 0), now).await.unwrap();
    let next = claimed_functions(&s, 2, now).await;
    assert!(next.contains(&"alice".to_string()), "{next:?}");
    let rest = claimed_functions(&s, 20, now).await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("bob-late"),
        "{rest:?}"
    );
    // A higher priority still comes first.
    let more: Vec<NewTask> = (0..3).map(|_| task("bob", 0)).collect();
    s.submit_batch("bob", Uuid::now_v7(), more, now)
        .await
        .unwrap();
    s.submit_one("carol", task("urgent", 9), now).await.unwrap();
    assert_eq!(claimed_functions(&s, 1, now).await, ["urgent"]);
}

/// Files: an owner's upload counts against its quota once (the same bytes again keep the
/// first copy); who may read a blob follows its uploader, its tasks' owners and the worker
/// holding such a lease; expiry removes old copies no task takes, and only those.
pub async fn files_follow_their_owners_and_tasks(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let row = |sha: &str, owner: &str, key: &str, size: u64, at: i64| FileRow {
        sha256: sha.into(),
        owner: owner.into(),
        key: key.into(),
        size,
        created_at: at,
    };
    let (a, b2) = ("a".repeat(64), "b".repeat(64));
    let old = now - 10_000;
    assert_eq!(
        s.add_file(row(&a, "alice", "k1", 600, old), 1000)
            .await
            .unwrap(),
        AddFile::Added
    );
    assert_eq!(
        s.add_file(row(&a, "alice", "k2", 600, old), 1000)
            .await
            .unwrap(),
        AddFile::Existed("k1".into()),
        "the same bytes again: the first copy"
    );
    assert_eq!(
        s.add_file(row(&b2, "alice", "k3", 600, old), 1000)
            .await
            .unwrap(),
        AddFile::OverQuota { used: 600 }
    );
    assert_eq!(
        s.add_file(row(&b2, "bob", "k4", 600, old), 1000)
            .await
            .unwrap(),
        AddFile::Added
    );
    assert_eq!(s.file_usage("alice").await.unwrap(), 600);
    let user = |u: &str| FileReader::User(u.into());
    assert_eq!(
        s.file_for(&a, &user("alice")).await.unwrap(),
        Some(("k1".into(), 600))
    );
    assert_eq!(s.file_for(&a, &user("bob")).await.unwrap(), None);
    assert_eq!(
        s.file_for(&a, &FileReader::Admin).await.unwrap(),
        Some(("k1".into(), 600))
    );
    assert_eq!(
        s.unreadable_files("bob", &[a.clone(), b2.clone()])
            .await
            .unwrap(),
        vec![a.clone()]
    );
    // Alice's task takes `a`: its worker reads it while it holds the lease.
    let t = NewTask {
        files: vec![a.clone()],
        ..task("f", 0)
    };
    s.submit_one("alice", t, now).await.unwrap();
    // A worker token reads by its subject (the holder's owner, "o").
    let w = FileReader::Worker("o".into());
    assert_eq!(s.file_for(&a, &w).await.unwrap(), None, "not leased yet");
    let leases = s.claim(claim("w", 1, now)).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(s.file_for(&a, &w).await.unwrap(), Some(("k1".into(), 600)));
    assert_eq!(
        s.file_for(&a, &FileReader::Worker("x".into()))
            .await
            .unwrap(),
        None
    );
    // Expiry: alice's `a` is taken by a task and stays; bob's old `b` goes.
    assert_eq!(s.expire_files(now).await.unwrap(), ["k4"]);
    assert_eq!(s.file_for(&b2, &user("bob")).await.unwrap(), None);
    assert!(s.file_for(&a, &user("alice")).await.unwrap().is_some());
    assert!(s.expire_files(now).await.unwrap().is_empty());

    // An answer's files reach a dependent's worker only when the answering task had them.
    let c_sha = "c".repeat(64);
    let up = task("up", 0);
    let down = waiting("down", vec![r(up.id)], &[up.id]);
    let (up_id, down_id) = (up.id, down.id);
    s.submit_batch("alice", Uuid::now_v7(), vec![up, down], now)
        .await
        .unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap();
    assert_eq!(l[0].id, up_id);
    s.attach_file(up_id, &a).await.unwrap();
    let answer = json!([{"$file": format!("sha256:{a}")}, {"$file": format!("sha256:{c_sha}")}]);
    s.answer(vec![ok(up_id, l[0].lease_epoch, answer)], now)
        .await
        .unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap();
    assert_eq!(l[0].id, down_id);
    assert!(s.file_for(&a, &w).await.unwrap().is_some(), "inherited");
    assert_eq!(
        s.unreadable_files("alice", std::slice::from_ref(&c_sha))
            .await
            .unwrap(),
        vec![c_sha]
    );
}

/// A capped task is leased only while its caps have room; finishing one lets the next through,
/// a cancel does at the next gate pass; a rate spaces the starts.
pub async fn caps_gate_tasks_until_there_is_room(b: &dyn Backend) {
    use task_server::caps::CapLimit;
    let s = b.open(cfg()).await;
    let now = now_ms();
    let capped = |f: &str, key: &str, max: u32| NewTask {
        cap_key: Some(key.into()),
        limits: vec![CapLimit {
            key: key.into(),
            max_running: Some(max),
            rate_per_s: None,
        }],
        ..task(f, 0)
    };
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let batch: Vec<NewTask> = ids
        .iter()
        .map(|id| NewTask {
            id: *id,
            ..capped("k", "key:o/k", 2)
        })
        .collect();
    s.submit_batch("o", Uuid::now_v7(), batch, now)
        .await
        .unwrap();
    s.submit_one("o", task("free", 0), now).await.unwrap();
    let first = s.claim(claim("w", 10, now)).await.unwrap();
    let mut got: Vec<&str> = first.iter().map(|l| l.task.function.as_str()).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        ["free", "k", "k"],
        "two of the five capped tasks, and the uncapped one"
    );
    let k: Vec<&Lease> = first.iter().filter(|l| l.task.function == "k").collect();
    s.answer(vec![ok(k[0].id, k[0].lease_epoch, json!(1))], now)
        .await
        .unwrap();
    assert_eq!(
        claimed_functions(&s, 10, now).await,
        ["k"],
        "one finished: one more"
    );
    assert!(
        claimed_functions(&s, 10, now).await.is_empty(),
        "the cap is full"
    );
    s.cancel(k[1].id, "o", now).await.unwrap();
    assert!(
        claimed_functions(&s, 10, now).await.is_empty(),
        "a cancel waits for the sweep"
    );
    assert_eq!(s.open_gates(now).await.unwrap(), 1);
    assert_eq!(claimed_functions(&s, 10, now).await, ["k"]);
    for id in &ids {
        assert_ne!(
            state(&s, *id).await,
            TaskState::Failed,
            "a capped task waits, never fails"
        );
    }

    // A rate of 10 per second: one task ahead of the leases, each start 100 ms after the one
    // before, and at least 50 ms after the last lease however late that lease was.
    let rated: Vec<NewTask> = (0..30)
        .map(|_| NewTask {
            cap_fn: Some("fn:pkg/r".into()),
            limits: vec![CapLimit {
                key: "fn:pkg/r".into(),
                max_running: None,
                rate_per_s: Some(10.0),
            }],
            ..task("r", 0)
        })
        .collect();
    s.submit_batch("o", Uuid::now_v7(), rated, now)
        .await
        .unwrap();
    assert_eq!(claimed_functions(&s, 50, now).await, ["r"]);
    assert!(
        claimed_functions(&s, 50, now + 50).await.is_empty(),
        "the next slot is at +100"
    );
    assert_eq!(claimed_functions(&s, 50, now + 100).await, ["r"]);
    s.open_gates(now + 100).await.unwrap();
    assert_eq!(
        claimed_functions(&s, 50, now + 1000).await,
        ["r"],
        "one ready, leased late"
    );
    assert!(
        claimed_functions(&s, 50, now + 1040).await.is_empty(),
        "50 ms after that lease"
    );
    assert_eq!(claimed_functions(&s, 50, now + 1050).await, ["r"]);
}

pub async fn concurrent_claims_never_share_a_task(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let tasks: Vec<NewTask> = (0..200).map(|_| task("f", 0)).collect();
    s.submit_batch("o", Uuid::now_v7(), tasks, now)
        .await
        .unwrap();
    let mut hs = vec![];
    for w in 0..8 {
        let s = s.clone();
        hs.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let got = s.claim(claim(&format!("w{w}"), 7, now)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|l| l.id));
            }
        }));
    }
    let mut all = vec![];
    for h in hs {
        all.extend(h.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(distinct.len(), 200);
}

pub async fn answers_are_fenced_by_epoch(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let t = task("f", 0);
    s.submit_one("o", t.clone(), now).await.unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
    assert_eq!(l.lease_epoch, 1);
    let out = s.answer(vec![ok(t.id, 2, json!(1))], now).await.unwrap();
    assert_eq!(
        out,
        vec![AnswerOutcome::Stale {
            state: TaskState::Leased
        }]
    );
    let out = s
        .answer(
            vec![ok(t.id, 1, json!("yes")), ok(Uuid::now_v7(), 1, json!(0))],
            now,
        )
        .await
        .unwrap();
    assert!(
        matches!(&out[0], AnswerOutcome::Accepted { finished: Some(f) } if f.state == TaskState::Succeeded)
    );
    assert_eq!(out[1], AnswerOutcome::NotFound);
    assert_eq!(
        s.answer(vec![ok(t.id, 1, json!("again"))], now)
            .await
            .unwrap(),
        vec![AnswerOutcome::Duplicate]
    );
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(rec.answer, Some(json!("yes")));
    assert_eq!(rec.state, TaskState::Succeeded);
}

pub async fn leases_bind_to_their_holder(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let t = task("f", 0);
    s.submit_one("o", t.clone(), now).await.unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
    // Another worker id, or the same worker id under another token subject: refused, unchanged.
    let other_subject = Holder {
        worker_id: None,
        owner: "mallory".into(),
    };
    for intruder in [holder("x"), other_subject] {
        let forged = AnswerIn {
            holder: intruder.clone(),
            ..ok(t.id, l.lease_epoch, json!("forged"))
        };
        let seed_form = AnswerIn {
            lease_epoch: None,
            ..forged.clone()
        };
        let out = s.answer(vec![forged, seed_form], now).await.unwrap();
        assert_eq!(
            out,
            vec![AnswerOutcome::NotHolder, AnswerOutcome::NotHolder]
        );
        let hb = s
            .heartbeat(HeartbeatIn {
                holder: intruder,
                leases: vec![HeartbeatLease {
                    id: t.id,
                    lease_epoch: l.lease_epoch,
                    progress: Some(99.0),
                }],
                now,
                lease_ttl_ms: 60_000,
            })
            .await
            .unwrap();
        assert_eq!((hb.foreign, hb.extended), (vec![t.id], vec![]));
    }
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.progress), (TaskState::Leased, None));
    // The holder answers without an epoch (the seed's protocol): its current lease.
    let mine = AnswerIn {
        lease_epoch: None,
        ..ok(t.id, 0, json!("mine"))
    };
    let out = s.answer(vec![mine.clone()], now).await.unwrap();
    assert!(matches!(
        &out[0],
        AnswerOutcome::Accepted { finished: Some(_) }
    ));
    assert_eq!(
        s.answer(vec![mine], now).await.unwrap(),
        vec![AnswerOutcome::Duplicate]
    );
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(rec.answer, Some(json!("mine")));
    // A worker id belongs to the first subject that registered it.
    let w = |owner: &str| WorkerRecord {
        worker_id: "gpu-box".into(),
        owner: owner.into(),
        slots: 4,
        capabilities: json!({}),
        first_seen: now,
        last_seen: now,
        running: 0,
        dispatch_ms: None,
        speed: None,
    };
    assert_eq!(
        s.upsert_worker(w("o"), None).await.unwrap(),
        Sighting::Recorded
    );
    assert_eq!(
        s.upsert_worker(w("mallory"), None).await.unwrap(),
        Sighting::Taken
    );
    assert_eq!(
        s.upsert_worker(w("o"), None).await.unwrap(),
        Sighting::Recorded
    );
}

pub async fn a_restarted_processor_gives_back_its_old_runs_leases(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let (old_run, new_run) = (Uuid::now_v7(), Uuid::now_v7());
    let mut doomed = task("killer", 0);
    doomed.max_attempts = 2;
    let plain = task("f", 0);
    s.submit_one("o", doomed.clone(), now).await.unwrap();
    s.submit_one("o", plain.clone(), now).await.unwrap();
    let seen = |owner: &str, run| s.upsert_worker(sighting(owner, now), Some(run));
    assert_eq!(seen("o", old_run).await.unwrap(), Sighting::Recorded);
    assert_eq!(
        s.claim(claim_by("w", old_run, 2, now)).await.unwrap().len(),
        2
    );
    // The new run is recorded; the old one is over, and the id stays its subject's.
    assert_eq!(seen("o", new_run).await.unwrap(), Sighting::Recorded);
    assert_eq!(seen("o", old_run).await.unwrap(), Sighting::Superseded);
    assert_eq!(seen("mallory", new_run).await.unwrap(), Sighting::Taken);
    // Another subject's sweep touches nothing; the new run's takes the old leases back at
    // once, claimable without backoff, and leaves its own alone.
    let foreign = Holder {
        worker_id: Some("w".into()),
        owner: "mallory".into(),
    };
    let out = s.requeue_orphans(foreign, new_run, now).await.unwrap();
    assert_eq!((out.requeued, out.failed.len()), (0, 0));
    let out = s
        .requeue_orphans(holder("w"), new_run, now + 10)
        .await
        .unwrap();
    assert_eq!((out.requeued, out.failed.len()), (2, 0));
    let rec = s.get_task(plain.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Queued);
    assert!(rec.error.unwrap().message.contains("restarted"));
    let again = s.claim(claim_by("w", new_run, 2, now + 10)).await.unwrap();
    assert_eq!(again.len(), 2, "requeued without backoff");
    let out = s
        .requeue_orphans(holder("w"), new_run, now + 20)
        .await
        .unwrap();
    assert_eq!(out.requeued, 0, "a run's own leases stay");
    // A third run: the task that lost both its attempts fails and says why.
    let out = s
        .requeue_orphans(holder("w"), Uuid::now_v7(), now + 30)
        .await
        .unwrap();
    assert_eq!(out.requeued, 1);
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].id, doomed.id);
    let e = s.get_task(doomed.id).await.unwrap().unwrap().error.unwrap();
    assert_eq!(e.kind, TaskErrorKind::LeaseExpired);
    assert!(e.message.contains("lost_lease × 2"), "{}", e.message);
    // A run that ended gives back what is still its own, attempt unused; no other run's.
    let (last, ask) = (Uuid::now_v7(), Uuid::now_v7());
    let req = ClaimRequest {
        request_id: Some(ask),
        ..claim_by("w", last, 1, now + 40)
    };
    let held = s.claim(req).await.unwrap();
    assert_eq!(held.len(), 1);
    // A lease request sent again gets what its first sending took, and only its sender does.
    let pairs = |l: &[task_api::Lease]| l.iter().map(|l| (l.id, l.lease_epoch)).collect::<Vec<_>>();
    let again = s.granted(holder("w"), ask).await.unwrap();
    assert_eq!(pairs(&again), pairs(&held));
    let foreign = Holder {
        worker_id: Some("w".into()),
        owner: "mallory".into(),
    };
    assert!(s.granted(foreign, ask).await.unwrap().is_empty());
    let other = s.release_run(holder("w"), Uuid::now_v7()).await.unwrap();
    assert!(other.is_empty());
    assert_eq!(
        s.release_run(holder("w"), last).await.unwrap(),
        vec![plain.id]
    );
    let rec = s.get_task(plain.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (TaskState::Queued, 2));
}

pub async fn retries_back_off_then_fail(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let mut now = now_ms();
    let t = task("f", 0);
    s.submit_one("o", t.clone(), now).await.unwrap();
    for attempt in 1..=3 {
        let l = s.claim(claim("w", 1, now)).await.unwrap();
        assert_eq!(l.len(), 1, "attempt {attempt}");
        assert_eq!(l[0].task.attempt, attempt);
        s.answer(
            vec![retry(t.id, l[0].lease_epoch, &format!("e{attempt}"))],
            now,
        )
        .await
        .unwrap();
        if attempt < 3 {
            assert_eq!(state(&s, t.id).await, TaskState::Queued);
            assert!(
                s.claim(claim("w", 1, now)).await.unwrap().is_empty(),
                "backoff holds it"
            );
            let delay = 1000 << (attempt - 1);
            assert!(s.became_ready(now, now + delay).await.unwrap());
            now += delay;
        }
    }
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Failed);
    assert_eq!(rec.error.unwrap().message, "e3");
    // The two attempts that went back to the queue are logged; the last stays in the lease.
    let log: Vec<(u32, Option<&str>, Option<String>)> = rec
        .past_attempts
        .iter()
        .map(|a| {
            let msg = a.error.as_ref().map(|e| e.message.clone());
            (a.attempt, a.worker_id.as_deref(), msg)
        })
        .collect();
    assert_eq!(
        log,
        [
            (1, Some("w"), Some("e1".to_string())),
            (2, Some("w"), Some("e2".to_string()))
        ]
    );
    assert!(rec.past_attempts[0].ended_at >= rec.past_attempts[0].started_at);
    assert_eq!(rec.lease.unwrap().worker_id, "w");
}

pub async fn reaper_requeues_expired_leases_and_fails_timeouts(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let t = task("f", 0);
    let mut timed = task("g", 0);
    timed.timeout_s = Some(1);
    s.submit_one("o", t.clone(), now).await.unwrap();
    s.submit_one("o", timed.clone(), now).await.unwrap();
    let leases = s.claim(claim("w", 2, now)).await.unwrap();
    assert_eq!(leases.len(), 2);
    // A heartbeat before the deadline extends the plain one; the timed one stays capped.
    let hb = s
        .heartbeat(HeartbeatIn {
            holder: holder("w"),
            leases: leases
                .iter()
                .map(|l| HeartbeatLease {
                    id: l.id,
                    lease_epoch: l.lease_epoch,
                    progress: Some(50.0),
                })
                .collect(),
            now: now + 500,
            lease_ttl_ms: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(hb.extended.len(), 2);
    let out = s.reap(now + 1500).await.unwrap();
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].id, timed.id);
    let rec = s.get_task(timed.id).await.unwrap().unwrap();
    assert_eq!(rec.error.unwrap().kind, TaskErrorKind::Timeout);
    // The plain lease expires at now+500+10000.
    let out = s.reap(now + 10_501).await.unwrap();
    assert_eq!(out.requeued, 1);
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Queued);
    assert_eq!(rec.error.unwrap().kind, TaskErrorKind::LeaseExpired);
    let past = &rec.past_attempts;
    assert_eq!(past.len(), 1, "{past:?}");
    assert_eq!(
        (past[0].attempt, past[0].worker_id.as_deref()),
        (1, Some("w"))
    );
    assert_eq!(
        (past[0].started_at, past[0].ended_at),
        (Some(now), Some(now + 10_501))
    );
    assert_eq!(
        past[0].error.as_ref().unwrap().kind,
        TaskErrorKind::LeaseExpired
    );
    let hb_late = s
        .heartbeat(HeartbeatIn {
            holder: holder("w"),
            leases: vec![HeartbeatLease {
                id: t.id,
                lease_epoch: 1,
                progress: None,
            }],
            now: now + 10_600,
            lease_ttl_ms: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(hb_late.lost, vec![t.id]);
    // A lost lease is no task error: it is claimable again at once, without backoff.
    let again = s.claim(claim("w2", 1, now + 10_601)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, t.id);
}

pub async fn idempotency_keys(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let mut t = task("f", 0);
    t.idempotency_key = Some("k".into());
    t.request_hash = Some("h1".into());
    assert_eq!(
        s.submit_one("o", t.clone(), now).await.unwrap(),
        SubmitOutcome::Created
    );
    let mut again = t.clone();
    again.id = Uuid::now_v7();
    assert_eq!(
        s.submit_one("o", again.clone(), now).await.unwrap(),
        SubmitOutcome::Existing {
            id: t.id,
            state: TaskState::Queued
        }
    );
    again.request_hash = Some("h2".into());
    assert_eq!(
        s.submit_one("o", again.clone(), now).await.unwrap(),
        SubmitOutcome::Conflict { id: t.id }
    );
    assert_eq!(
        s.submit_one("other", again, now).await.unwrap(),
        SubmitOutcome::Created
    );
}

pub async fn statistics_survive_reopen(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    for ms in [10.0, 20.0, 30.0] {
        let t = task("f", 0);
        s.submit_one("o", t.clone(), now).await.unwrap();
        let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
        s.answer(
            vec![AnswerIn {
                runtime_ms: Some(ms),
                ..ok(t.id, l.lease_epoch, json!(0))
            }],
            now,
        )
        .await
        .unwrap();
    }
    s.close().await;
    let s = b.open(cfg()).await;
    let st = s.stats().await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].count, 3);
    assert!((st[0].mean_ms - 20.0).abs() < 1e-9);
    // And keep accumulating after the reopen.
    let t = task("f", 0);
    s.submit_one("o", t.clone(), now).await.unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
    s.answer(
        vec![AnswerIn {
            runtime_ms: Some(20.0),
            ..ok(t.id, l.lease_epoch, json!(0))
        }],
        now,
    )
    .await
    .unwrap();
    assert_eq!(s.stats().await.unwrap()[0].count, 4);
}

pub async fn batches_report_counts_and_results_in_completion_order(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let batch = Uuid::now_v7();
    let tasks: Vec<NewTask> = (0..5).map(|_| task("f", 0)).collect();
    s.submit_batch("o", batch, tasks.clone(), now)
        .await
        .unwrap();
    let leases = s.claim(claim("w", 5, now)).await.unwrap();
    for id in [tasks[3].id, tasks[0].id, tasks[4].id] {
        let l = leases.iter().find(|l| l.id == id).unwrap();
        s.answer(vec![ok(id, l.lease_epoch, json!(id.to_string()))], now)
            .await
            .unwrap();
    }
    s.cancel(tasks[1].id, "o", now).await.unwrap();
    let counts = s.batch_counts(batch).await.unwrap();
    assert_eq!(counts.get(&TaskState::Succeeded), Some(&3));
    assert_eq!(counts.get(&TaskState::Cancelled), Some(&1));
    assert_eq!(counts.get(&TaskState::Leased), Some(&1));
    let r = s.batch_results(batch, 0, 2).await.unwrap();
    assert_eq!(r.iter().map(|x| x.index).collect::<Vec<_>>(), vec![3, 0]);
    let r2 = s.batch_results(batch, r[1].finish_seq, 10).await.unwrap();
    assert_eq!(r2.iter().map(|x| x.index).collect::<Vec<_>>(), vec![4, 1]);
    let load = s.queue_load(LoadScope::Batch(batch), now).await.unwrap();
    assert_eq!(load.running.len(), 1);
    assert_eq!(s.get_batch(batch).await.unwrap().unwrap().total, 5);

    // Open while a task is unfinished (a retry reopens it); closed once every task finished.
    assert!(s.batch_open(batch).await.unwrap());
    let last = leases.iter().find(|l| l.id == tasks[2].id).unwrap();
    s.answer(vec![retry(last.id, last.lease_epoch, "again")], now)
        .await
        .unwrap();
    assert!(s.batch_open(batch).await.unwrap());
    let again = s
        .claim(claim("w", 1, now + 60_000))
        .await
        .unwrap()
        .remove(0);
    s.answer(vec![ok(again.id, again.lease_epoch, json!(2))], now)
        .await
        .unwrap();
    assert!(!s.batch_open(batch).await.unwrap());
    // In input order: every result, each page up to the first unfinished.
    let ordered = s.batch_results_ordered(batch, 0, 10).await.unwrap();
    let idx: Vec<u64> = ordered.iter().map(|r| r.index).collect();
    assert_eq!(idx, vec![0, 1, 2, 3, 4]);
    assert_eq!(ordered[2].finish_seq, 3, "the cursor is the index + 1");
}

pub async fn cancel_and_expiry(b: &dyn Backend) {
    let s = b
        .open(StoreConfig {
            default_result_ttl_s: 1,
            ..cfg()
        })
        .await;
    let now = now_ms();
    let t = task("f", 0);
    s.submit_one("o", t.clone(), now).await.unwrap();
    assert!(matches!(
        s.cancel(t.id, "o", now).await.unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(
        s.cancel(t.id, "o", now).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskState::Cancelled)
    );
    assert_eq!(
        s.cancel(Uuid::now_v7(), "o", now).await.unwrap(),
        CancelOutcome::NotFound
    );
    let out = s.reap(now + 1001).await.unwrap();
    assert_eq!(out.deleted, 1);
    assert!(s.get_task(t.id).await.unwrap().is_none());
}

pub async fn routing_by_gpu_and_dataset(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let mut gpu = task("train", 0);
    gpu.req_gpus = 1;
    let mut data = task("query", 0);
    data.req_datasets = vec!["imagenet".into()];
    s.submit_one("o", gpu.clone(), now).await.unwrap();
    s.submit_one("o", data.clone(), now).await.unwrap();
    assert!(s.claim(claim("cpu", 5, now)).await.unwrap().is_empty());
    let mut req = claim("data", 5, now);
    req.datasets = vec!["imagenet".into(), "coco".into()];
    let got = s.claim(req).await.unwrap();
    assert_eq!(got.iter().map(|l| l.id).collect::<Vec<_>>(), vec![data.id]);
    let mut req = claim("gpu", 5, now);
    req.gpus = 1;
    assert_eq!(s.claim(req).await.unwrap()[0].id, gpu.id);
}

pub async fn one_grant_comes_in_priority_then_fifo_order(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let tasks = vec![task("lo", 0), task("mid", 5), task("lo2", 0), task("hi", 9)];
    s.submit_batch("o", Uuid::now_v7(), tasks, now)
        .await
        .unwrap();
    let got = claimed_functions(&s, 10, now).await;
    assert_eq!(got, vec!["hi", "mid", "lo", "lo2"]);
}

pub async fn released_leases_keep_their_attempt(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    let mut t = task("once", 0);
    t.max_attempts = 1;
    s.submit_one("o", t.clone(), now).await.unwrap();
    let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
    let lease = |epoch| {
        vec![task_api::LeaseRef {
            id: t.id,
            lease_epoch: epoch,
        }]
    };
    // Not this holder's, or not the current epoch: nothing changes.
    assert!(s
        .release(holder("x"), lease(l.lease_epoch))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .release(holder("w"), lease(l.lease_epoch + 1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(state(&s, t.id).await, TaskState::Leased);
    assert_eq!(
        s.release(holder("w"), lease(l.lease_epoch)).await.unwrap(),
        vec![t.id]
    );
    let rec = s.get_task(t.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (TaskState::Queued, 0));
    // A late answer for the released lease is stale; the next lease is a first attempt again.
    assert_eq!(
        s.answer(vec![ok(t.id, l.lease_epoch, json!(0))], now)
            .await
            .unwrap(),
        vec![AnswerOutcome::Stale {
            state: TaskState::Queued
        }]
    );
    let again = s.claim(claim("w2", 1, now)).await.unwrap().remove(0);
    assert_eq!(
        (again.task.attempt, again.lease_epoch),
        (1, l.lease_epoch + 1)
    );
    let mut done = ok(t.id, again.lease_epoch, json!("ok"));
    done.holder = holder("w2");
    let out = s.answer(vec![done], now).await.unwrap();
    assert!(
        matches!(&out[0], AnswerOutcome::Accepted { finished: Some(f) } if f.state == TaskState::Succeeded)
    );
}

/// A task of `f` whose declared cost `ms` is `x`, or that has no measure.
fn costly(f: &str, x: Option<f64>, gpus: u32) -> NewTask {
    NewTask {
        cost: Cost {
            by: Some("ms".into()),
            x: vec![x],
        },
        req_gpus: gpus,
        ..task(f, 0)
    }
}

pub async fn cost_measures_are_summed_fitted_and_kept(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    // Runtime = 2 ms + 1 ms per unit of cost, learned from 30 answers.
    for i in 0..30 {
        let x = [1.0, 50.0, 200.0][i % 3];
        let t = costly("f", Some(x), 0);
        s.submit_one("o", t.clone(), now).await.unwrap();
        let l = s.claim(claim("w", 1, now)).await.unwrap().remove(0);
        let answer = AnswerIn {
            runtime_ms: Some(2.0 + x),
            ..ok(t.id, l.lease_epoch, json!(0))
        };
        s.answer(vec![answer], now).await.unwrap();
    }
    s.close().await;
    let s = b.open(cfg()).await;
    let p = Predictors::new(&s.stats().await.unwrap());
    let f = task_server::stats::FnKey {
        package: "pkg".into(),
        version: "1.0.0".into(),
        function: "f".into(),
    };
    assert_eq!(p.get(&f).0.basis, Basis::Declared("ms".into()));
    let (_, a, b) = p.get(&f).0.slot.unwrap();
    assert!(
        (a - 2.0).abs() < 1e-6 && (b - 1.0).abs() < 1e-9,
        "{a} + {b}·x"
    );

    // The queue's load: count, sum and range of each slot, per function and class.
    for (x, gpus) in [(Some(10.0), 0), (Some(30.0), 0), (None, 0), (Some(7.0), 1)] {
        s.submit_one("o", costly("f", x, gpus), now).await.unwrap();
    }
    let load = s.queue_load(LoadScope::All, now).await.unwrap();
    let cpu = load.queued.iter().find(|q| !q.gpu).unwrap();
    assert_eq!((cpu.n, cpu.slots[0].n, cpu.slots[0].sum), (3, 2, 40.0));
    assert_eq!(
        (cpu.slots[0].min, cpu.slots[0].max, cpu.slots[1].n),
        (10.0, 30.0, 0)
    );
    let gpu = load.queued.iter().find(|q| q.gpu).unwrap();
    assert_eq!((gpu.n, gpu.slots[0].sum), (1, 7.0));

    // A GPU slot that leaves CPU tasks alone gets only the GPU task, with its expected time.
    let req = ClaimRequest {
        gpus: 1,
        gpu_only: true,
        predictors: Some(Arc::new(p)),
        ..claim("g", 4, now)
    };
    let got = s.claim(req).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.resources.gpus, 1);
    assert!((got[0].expected_ms.unwrap() - 9.0).abs() < 1e-6);
    let running = s.queue_load(LoadScope::All, now).await.unwrap().running;
    assert_eq!(
        (running.len(), running[0].gpu, running[0].cost.at(0)),
        (1, true, Some(7.0))
    );

    // A processor's speed against the predictions is kept with it (a sighting, then a touch).
    let w = WorkerRecord {
        speed: Some(2.0),
        ..sighting("o", now)
    };
    assert_eq!(s.upsert_worker(w, None).await.unwrap(), Sighting::Recorded);
    assert_eq!(s.workers(0).await.unwrap()[0].speed, Some(2.0));
    let touch = WorkerTouch {
        worker_id: "w".into(),
        owner: "o".into(),
        now: now + 1,
        dispatch_ms: None,
        speed: Some(1.5),
    };
    s.touch_worker(touch).await.unwrap();
    assert_eq!(s.workers(0).await.unwrap()[0].speed, Some(1.5));
}

/// Predictors that know functions `fs` of package `pkg` (1 ms each).
fn measured(fs: &[&str], now: i64) -> Arc<Predictors> {
    use task_server::stats::{FnKey, FunctionStats, Sample};
    let stats: Vec<FunctionStats> = fs
        .iter()
        .map(|f| {
            let mut st = FunctionStats::new(FnKey {
                package: "pkg".into(),
                version: "1.0.0".into(),
                function: (*f).into(),
            });
            st.record(&Sample {
                ms: 1.0,
                ok: true,
                at: now,
                cost: Cost::default(),
            });
            st
        })
        .collect();
    Arc::new(Predictors::new(&stats))
}

/// Claims `n` tasks with chains for a processor holding `held_ms`, functions `measured`; hands
/// every lease back; the functions leased, in grant order.
async fn claim_back(
    s: &Arc<dyn Store>,
    fs: &[&str],
    held_ms: f64,
    n: u32,
    now: i64,
) -> Vec<String> {
    let req = ClaimRequest {
        chains: true,
        predictors: Some(measured(fs, now)),
        held_ms,
        ..claim("w", n, now)
    };
    let got = s.claim(req).await.unwrap();
    let refs: Vec<_> = got.iter().map(Lease::lease_ref).collect();
    assert_eq!(s.release(holder("w"), refs).await.unwrap().len(), got.len());
    got.into_iter().map(|l| l.task.function).collect()
}

pub async fn chains_lease_behind_their_head_and_go_back_to_waiting(b: &dyn Backend) {
    let s = b.open(cfg()).await;
    let now = now_ms();
    // A chain a → b → c → d, and a fan-out e → {f, g}.
    let a = task("a", 0);
    let bt = waiting("b", vec![r(a.id)], &[a.id]);
    let ct = waiting("c", vec![r(bt.id)], &[bt.id]);
    let dt = waiting("d", vec![r(ct.id)], &[ct.id]);
    let e = task("e", 0);
    let f = waiting("f", vec![r(e.id)], &[e.id]);
    let g = waiting("g", vec![r(e.id)], &[e.id]);
    // x → y where y needs a dataset the worker lacks: not chained (routing holds for chains).
    let x = task("x", 0);
    let y = NewTask {
        req_datasets: vec!["secret".into()],
        ..waiting("y", vec![r(x.id)], &[x.id])
    };
    let (ai, bi, ci, di, ei) = (a.id, bt.id, ct.id, dt.id, e.id);
    let all = vec![a, bt, ct, dt, e, f, g, x, y];
    s.submit_batch("o", Uuid::now_v7(), all, now).await.unwrap();

    // Unmeasured functions are not chained; nor behind a processor that holds its budget's
    // worth of work already; nor a task outside the claim's capabilities (y's dataset).
    let none: &[&str] = &[];
    assert_eq!(claim_back(&s, none, 0.0, 2, now).await, ["a", "e"]);
    assert_eq!(claim_back(&s, &["a", "e"], 100.0, 2, now).await, ["a", "e"]);
    let got = claim_back(&s, &["a", "e", "x"], 0.0, 3, now).await;
    assert!(
        got.contains(&"x".into()) && !got.contains(&"y".into()),
        "{got:?}"
    );

    // Measured: b, c and d come behind a, each following the one before, references intact;
    // f and g behind e.
    let req = ClaimRequest {
        chains: true,
        predictors: Some(measured(&["a", "e"], now)),
        ..claim("w", 2, now)
    };
    let got = s.claim(req).await.unwrap();
    let follows: Vec<(String, Option<Uuid>)> = got
        .iter()
        .map(|l| (l.task.function.clone(), l.follows))
        .collect();
    let want = [
        ("a", None),
        ("b", Some(ai)),
        ("c", Some(bi)),
        ("d", Some(ci)),
        ("e", None),
        ("f", Some(ei)),
        ("g", Some(ei)),
    ];
    let want: Vec<(String, Option<Uuid>)> = want.iter().map(|(f, x)| (f.to_string(), *x)).collect();
    assert_eq!(follows, want);
    let lease = |id: Uuid| got.iter().find(|l| l.id == id).unwrap().clone();
    assert_eq!(
        lease(bi).task.args,
        vec![r(ai)],
        "a chained lease keeps its references"
    );

    // A chained lease handed back waits again (not queued with its references); a's answer
    // leaves b, still chained, to its holder.
    let c_ref = vec![lease(ci).lease_ref()];
    assert_eq!(s.release(holder("w"), c_ref).await.unwrap(), vec![ci]);
    assert_eq!(state(&s, ci).await, TaskState::Waiting);
    s.answer(vec![ok(ai, lease(ai).lease_epoch, json!(7))], now)
        .await
        .unwrap();
    assert_eq!(state(&s, bi).await, TaskState::Leased);
    // b's retryable error: waiting, then settled at once (a succeeded): queued with a's answer.
    let bl = lease(bi);
    s.answer(vec![retry(bi, bl.lease_epoch, "again")], now)
        .await
        .unwrap();
    assert_eq!(state(&s, bi).await, TaskState::Queued);
    // d's lease runs out: waiting again, as c is.
    s.reap(now + 10_001).await.unwrap();
    assert_eq!(state(&s, di).await, TaskState::Waiting);
    let again = s.claim(claim("w", 1, now + 20_000)).await.unwrap();
    let b2 = again.iter().find(|l| l.id == bi).expect("b queued again");
    assert_eq!((b2.task.args.clone(), b2.follows), (vec![json!(7)], None));
}

/// Generates one `#[tokio::test]` per conformance case for a backend.
#[macro_export]
macro_rules! conformance {
    ($modname:ident, $backend:expr) => {
        mod $modname {
            use super::*;
            conformance!(@case $backend; claims_in_priority_then_fifo_order, concurrent_claims_never_share_a_task,
                answers_are_fenced_by_epoch, leases_bind_to_their_holder, retries_back_off_then_fail,
                reaper_requeues_expired_leases_and_fails_timeouts, idempotency_keys,
                statistics_survive_reopen, batches_report_counts_and_results_in_completion_order,
                cancel_and_expiry, routing_by_gpu_and_dataset, one_grant_comes_in_priority_then_fifo_order,
                released_leases_keep_their_attempt, a_restarted_processor_gives_back_its_old_runs_leases,
                cost_measures_are_summed_fitted_and_kept, a_task_graph_settles_as_its_dependencies_end,
                owners_take_turns_within_a_priority, caps_gate_tasks_until_there_is_room,
                files_follow_their_owners_and_tasks, chains_lease_behind_their_head_and_go_back_to_waiting);
        }
    };
    (@case $backend:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(b) = $backend else { return };
                super::$case(&b).await;
            }
        )*
    };
}

conformance!(sqlite, Some(Sqlite::new()));
conformance!(postgres, Postgres::new().await);
