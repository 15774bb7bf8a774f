//! Attacks on the task server, sent to the real binary: hostile names and numbers from users,
//! forged answers and heartbeats from workers.
use std::process::Command;

use serde_json::{json, Value};
use task_api::Role;

use crate::harness::{assert_error, Api, Server};

/// Every route that takes a wait, with hostile values: JSON answers only, the server stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_numbers_get_json_answers_never_a_panic() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let worker = user.with_token(&server.token(Role::Worker, "w"));
    // Finished tasks and batches, and work queued for every worker call: a wait that is
    // accepted returns at once instead of long-polling.
    let id = user.submit(json!({"function": "f"})).await;
    let (_, b) = user
        .post("/user/submit_batch", &json!({"tasks": [{"function": "g"}]}))
        .await;
    let batch = b["batch_id"].as_str().unwrap().to_string();
    for t in [&id, b["ids"][0].as_str().unwrap()] {
        assert_eq!(
            user.post(&format!("/user/tasks/{t}/cancel"), &json!({}))
                .await
                .0,
            200
        );
    }
    let work: Vec<Value> = (0..20)
        .map(|i| json!({"function": "h", "args": [i]}))
        .collect();
    assert_eq!(
        user.post("/user/submit_batch", &json!({"tasks": work}))
            .await
            .0,
        201
    );
    for wait in [
        "1e20",
        "1e308",
        "18446744073709551616",
        "inf",
        "NaN",
        "-1",
        "-0",
        "abc",
    ] {
        for path in [
            format!("/user/request_answer/{id}?wait={wait}"),
            format!("/user/batches/{batch}?wait={wait}"),
            format!("/user/batches/{batch}/results?wait={wait}"),
        ] {
            let (st, v) = user.get(&path).await;
            assert!(v.is_object(), "{path}: {st} {v}");
            assert!(st == 200 || st == 400, "{path}: {st} {v}");
        }
        let (st, v) = worker
            .get(&format!("/worker/request_task?wait={wait}"))
            .await;
        assert!(
            v.is_object() && [200, 400, 422].contains(&st.as_u16()),
            "GET wait={wait}: {st} {v}"
        );
    }
    for wait_s in [json!(1e20), json!(1.7e308), json!(-1), json!("x")] {
        let (st, v) = worker
            .post(
                "/worker/request_task",
                &json!({"wait_s": wait_s, "max_tasks": 1}),
            )
            .await;
        assert!(
            v.is_object() && (st == 200 || st == 422),
            "wait_s={wait_s}: {st} {v}"
        );
    }
    for (field, value) in [
        ("priority", json!(1e20)),
        ("timeout_s", json!(1e20)),
        ("max_attempts", json!(-1)),
        ("ttl_s", json!(1.5)),
        ("resources", json!({"gpus": 1e20})),
    ] {
        let mut body = json!({"function": "f"});
        body[field] = value;
        assert_error(
            &user.post("/user/submit_task", &body).await,
            422,
            "validation_failed",
        );
    }
    assert_eq!(user.get("/livez").await.0, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Names and versions become cache paths on processors: only valid ones are accepted, in every
/// configuration (this server has no registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_names_and_versions_that_are_paths_are_refused() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    for (package, version, field) in [
        ("..", "1.0.0", "package"),
        ("ok", "../victim", "version"),
        ("ok", "../..", "version"),
        ("a/b", "1.0.0", "package"),
        ("Upper", "1.0.0", "package"),
        ("ok", "^1", "version"),
        ("ok", "1.0.0/../../x", "version"),
    ] {
        let got = user
            .post(
                "/user/submit_task",
                &json!({"package": package, "version": version, "function": "f"}),
            )
            .await;
        assert_error(&got, 422, "validation_failed");
        assert_eq!(
            got.1["error"]["details"]["field"], field,
            "{package} {version}: {}",
            got.1
        );
    }
    let ok = json!({"package": "my_package", "version": "1.2.3-rc.1", "function": "f"});
    assert_eq!(user.post("/user/submit_task", &ok).await.0, 201);
}

/// A lease belongs to the worker (token subject + worker id) that took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_answers_or_heartbeats() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let holder = user.with_token(&server.token(Role::Worker, "proc-a"));
    let intruder = user.with_token(&server.token(Role::Worker, "mallory"));
    let id = user.submit(json!({"function": "f"})).await;
    let lease = holder.lease("gpu-1", 1, 0.0).await.remove(0);
    let epoch = lease["lease_epoch"].clone();
    let forged = json!({"id": id, "lease_epoch": epoch, "answer": "forged", "worker_id": "gpu-1"});
    assert_error(
        &intruder.post("/worker/submit_answer", &forged).await,
        403,
        "not_lease_holder",
    );
    let seed_form = json!({"id": id, "answer": "forged"});
    assert_error(
        &intruder.post("/worker/submit_answer", &seed_form).await,
        403,
        "not_lease_holder",
    );
    let (_, v) = intruder
        .post("/worker/submit_answer", &json!({"answers": [forged]}))
        .await;
    assert_eq!(v["results"][0]["status"], 403, "{v}");
    let hb =
        json!({"worker_id": "gpu-1", "leases": [{"id": id, "lease_epoch": epoch, "progress": 99}]});
    assert_error(
        &intruder.post("/worker/heartbeat", &hb).await,
        403,
        "not_lease_holder",
    );
    // Another worker id of the holder's own subject is someone else too.
    let other = json!({"id": id, "lease_epoch": epoch, "answer": "x", "worker_id": "gpu-2"});
    assert_error(
        &holder.post("/worker/submit_answer", &other).await,
        403,
        "not_lease_holder",
    );
    let (_, v) = user.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(
        (v["state"].clone(), v.get("progress").cloned()),
        (json!("leased"), None),
        "{v}"
    );
    // The holder's own answer still lands.
    let (st, _) = holder
        .post(
            "/worker/submit_answer",
            &json!({"id": id, "lease_epoch": epoch, "answer": "mine", "worker_id": "gpu-1"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(user.wait_answer(&id, 5).await["answer"], "mine");
    // A worker id cannot be taken over, and capabilities are bounded.
    let takeover = json!({"worker_id": "gpu-1", "max_tasks": 1, "wait_s": 0});
    assert_error(
        &intruder.post("/worker/request_task", &takeover).await,
        403,
        "worker_id_taken",
    );
    let greedy = json!({"max_tasks": 1, "wait_s": 0, "capabilities": {"slots": 4_000_000_000u64}});
    assert_error(
        &intruder.post("/worker/request_task", &greedy).await,
        422,
        "validation_failed",
    );
}

/// The original worker protocol, verbatim, with curl: GET request_task, then POST submit_answer
/// with only `id` and `answer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_worker_loop_runs_unchanged_with_curl() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let id = user
        .submit(json!({"package": "my_package", "function": "foo", "args": [42, 1]}))
        .await;
    let script = r#"
set -euo pipefail
task=$(curl -s -H "Authorization: Bearer $WTOKEN" "$SERVER/worker/request_task")
id=$(printf '%s' "$task" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -s -H "Authorization: Bearer $OTHER" -d "{\"id\": \"$id\", \"answer\": 666}" "$SERVER/worker/submit_answer"; echo
curl -s -H "Authorization: Bearer $WTOKEN" -d "{\"id\": \"$id\", \"answer\": 43}" "$SERVER/worker/submit_answer"; echo
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("SERVER", &server.url)
        .env("WTOKEN", server.token(Role::Worker, "seed-worker"))
        .env("OTHER", server.token(Role::Worker, "intruder"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["error"]["code"], "not_lease_holder", "{stdout}");
    assert_eq!(lines[1]["success"], true, "{stdout}");
    assert_eq!(user.wait_answer(&id, 5).await["answer"], 43);
}

/// Per-token limits: request rate, waiting requests, unfinished tasks per owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_429_with_retry_after() {
    let server = Server::start(&[
        "--rate-limit",
        "5",
        "--rate-burst",
        "5",
        "--max-long-polls-per-token",
        "2",
        "--max-queued-per-owner",
        "3",
    ]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let bob = user.with_token(&server.token(Role::User, "bob"));
    let mut limited = None;
    for _ in 0..20 {
        let r = user
            .req(reqwest::Method::GET, "/user/tasks")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let after = r.headers()["retry-after"].to_str().unwrap().to_string();
            limited = Some((after, r.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (after, body) = limited.expect("20 quick requests at 5/s are limited");
    assert!(after.parse::<u64>().unwrap() >= 1, "{after}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another token is not affected.
    assert_eq!(bob.get("/user/tasks").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    // Unfinished tasks per owner.
    for i in 0..3 {
        bob.submit(json!({"function": "f", "args": [i]})).await;
    }
    let full = bob
        .post("/user/submit_task", &json!({"function": "f"}))
        .await;
    assert_error(&full, 429, "queue_full");
    let batch = json!({"tasks": [{"function": "f"}]});
    assert_error(
        &bob.post("/user/submit_batch", &batch).await,
        429,
        "queue_full",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    // Waiting requests per token: two park, the third is refused at once.
    let carol = user.with_token(&server.token(Role::User, "carol"));
    let id = carol.submit(json!({"function": "never_runs"})).await;
    let path = format!("/user/request_answer/{id}?wait=3");
    let parked: Vec<_> = (0..2)
        .map(|_| {
            let (api, path) = (carol.clone(), path.clone());
            tokio::spawn(async move { api.get(&path).await.0 })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_error(&carol.get(&path).await, 429, "rate_limited");
    for p in parked {
        assert_eq!(p.await.unwrap(), 200);
    }
    assert_eq!(carol.get(&path.replace("wait=3", "wait=0")).await.0, 200);
}

/// Leftovers of the review: batches whose tasks were deleted finish; tokens not valid yet are
/// refused; the data directory is private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tasks_finish_batches_and_data_is_private() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let (_, b) = user
        .post(
            "/user/submit_batch",
            &json!({"tasks": [{"function": "f"}, {"function": "g"}]}),
        )
        .await;
    let (batch, ids) = (b["batch_id"].as_str().unwrap(), b["ids"].clone());
    let first = ids[0].as_str().unwrap();
    assert_eq!(
        user.post(&format!("/user/tasks/{first}/cancel"), &json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        user.delete(&format!("/user/tasks/{}", ids[1].as_str().unwrap()))
            .await
            .0,
        200
    );
    let (_, v) = user.get(&format!("/user/batches/{batch}?wait=5")).await;
    assert_eq!(v["done"], true, "{v}");
    let (_, v) = user
        .get(&format!("/user/batches/{batch}/results?wait=5"))
        .await;
    assert_eq!(v["done"], true, "{v}");

    let secret = std::fs::read_to_string(server.data_dir().join("jwt_secret")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "alice", "role": "user", "iss": "crpc", "aud": "crpc",
                        "exp": now + 7200, "nbf": now + 3600});
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .unwrap();
    let got = user.with_token(&early).get("/user/tasks").await;
    assert_error(&got, 401, "unauthorized");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid yet"),
        "{}",
        got.1
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(server.data_dir()), 0o700);
    assert_eq!(mode(&server.data_dir().join("crpc.db")), 0o600);
    assert_eq!(mode(&server.data_dir().join("jwt_secret")), 0o600);
}
