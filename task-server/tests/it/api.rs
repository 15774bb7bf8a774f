//! Auth, bad input and idempotency: what a client sees at the edge.
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use task_api::Role;

use crate::harness::{assert_error, Api, Server};

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn secret(server: &Server) -> Vec<u8> {
    std::fs::read_to_string(server.data_dir().join("jwt_secret"))
        .unwrap()
        .trim()
        .as_bytes()
        .to_vec()
}

fn b64(v: &Value) -> String {
    use std::fmt::Write;
    // base64url without padding, written out to avoid a test-only dependency.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_roles_enforced() {
    let server = Server::start(&[]);
    let anon = Api::new(&server.url, None);
    let alice = anon.with_token(&server.token(Role::User, "alice"));
    let bob = anon.with_token(&server.token(Role::User, "bob"));
    let worker = anon.with_token(&server.token(Role::Worker, "w1"));
    let key = EncodingKey::from_secret(&secret(&server));
    let claims = |exp: u64, aud: &str| json!({"sub": "alice", "role": "user", "exp": exp, "iat": now_s(), "iss": "crpc", "aud": aud});

    // Missing token.
    assert_error(&anon.get("/user/stats").await, 401, "unauthorized");
    // Expired.
    let expired = encode(&Header::default(), &claims(now_s() - 3600, "crpc"), &key).unwrap();
    let r = anon.with_token(&expired).get("/user/stats").await;
    assert_error(&r, 401, "unauthorized");
    assert!(r.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // Wrongly signed.
    let forged = encode(
        &Header::default(),
        &claims(now_s() + 3600, "crpc"),
        &EncodingKey::from_secret(b"not the secret"),
    )
    .unwrap();
    assert_error(
        &anon.with_token(&forged).get("/user/stats").await,
        401,
        "unauthorized",
    );
    // Wrong audience.
    let wrong_aud = encode(
        &Header::default(),
        &claims(now_s() + 3600, "someone-else"),
        &key,
    )
    .unwrap();
    assert_error(
        &anon.with_token(&wrong_aud).get("/user/stats").await,
        401,
        "unauthorized",
    );
    // alg: none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(now_s() + 3600, "crpc"))
    );
    assert_error(
        &anon.with_token(&none).get("/user/stats").await,
        401,
        "unauthorized",
    );
    // Garbage.
    assert_error(
        &anon.with_token("abc.def").get("/user/stats").await,
        401,
        "unauthorized",
    );

    // Roles.
    assert_error(
        &worker
            .post("/user/submit_task", &json!({"function": "f"}))
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &alice
            .post("/worker/request_task", &json!({"wait_s": 0}))
            .await,
        403,
        "forbidden",
    );
    assert_error(&alice.get("/worker/request_task").await, 403, "forbidden");

    // Owners.
    let id = bob
        .submit(json!({"function": "secret_fn", "args": [1]}))
        .await;
    assert_error(
        &alice.get(&format!("/user/request_answer/{id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &alice
            .post(&format!("/user/tasks/{id}/cancel"), &json!({}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &alice.delete(&format!("/user/tasks/{id}")).await,
        404,
        "not_found",
    );
    let (_, mine) = alice.get("/user/tasks").await;
    assert_eq!(
        mine["tasks"].as_array().unwrap().len(),
        0,
        "alice sees none of bob's tasks"
    );
    let (st, v) = bob.get(&format!("/user/request_answer/{id}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "queued");
    // An admin sees everyone's.
    let admin = anon.with_token(&server.token(Role::Admin, "root"));
    let (_, all) = admin.get("/user/tasks").await;
    assert_eq!(all["tasks"].as_array().unwrap().len(), 1);
    // Health probes need no token.
    assert_eq!(anon.get("/livez").await.0, 200);
    assert_eq!(anon.get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_json_error_body_never_500() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let worker = user.with_token(&server.token(Role::Worker, "w1"));

    assert_error(
        &user
            .post_raw("/user/submit_task", b"{\"function\": ".to_vec())
            .await,
        400,
        "malformed_json",
    );
    assert_error(
        &user.post_raw("/user/submit_task", b"".to_vec()).await,
        400,
        "malformed_json",
    );
    let r = user
        .post("/user/submit_task", &json!({"function": 42}))
        .await;
    assert_error(&r, 422, "validation_failed");
    assert_eq!(r.1["error"]["details"]["field"], "function");
    let r = user
        .post("/user/submit_task", &json!({"function": "f", "args": "x"}))
        .await;
    assert_eq!(r.1["error"]["details"]["field"], "args");
    assert_error(&r, 422, "validation_failed");
    assert_error(
        &user
            .post("/user/submit_task", &json!({"function": "f", "prority": 1}))
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &user.post("/user/submit_task", &json!({"args": [1]})).await,
        422,
        "validation_failed",
    );
    assert_error(
        &user
            .post("/user/submit_task", &json!({"function": ""}))
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &user
            .post(
                "/user/submit_task",
                &json!({"function": "f", "max_attempts": 0}),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &user
            .post(
                "/user/submit_task",
                &json!({"function": "f", "priority": 5000}),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &user.post("/user/submit_batch", &json!({"tasks": []})).await,
        422,
        "validation_failed",
    );

    // 10 MiB body.
    let big = format!(
        "{{\"function\":\"f\",\"args\":[\"{}\"]}}",
        "x".repeat(10 << 20)
    );
    assert_error(
        &user.post_raw("/user/submit_task", big.into_bytes()).await,
        413,
        "payload_too_large",
    );

    // Unknown ids and routes.
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &user.get(&format!("/user/request_answer/{unknown}")).await,
        404,
        "not_found",
    );
    assert_error(
        &user.get("/user/request_answer/not-a-uuid").await,
        404,
        "not_found",
    );
    assert_error(
        &user
            .post(&format!("/user/tasks/{unknown}/cancel"), &json!({}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &user.delete(&format!("/user/tasks/{unknown}")).await,
        404,
        "not_found",
    );
    assert_error(
        &user.get(&format!("/user/batches/{unknown}")).await,
        404,
        "not_found",
    );
    assert_error(&user.get("/user/no_such_route").await, 404, "not_found");
    assert_error(
        &user.get("/user/submit_task").await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &user.get("/user/request_answer/x?wait=abc").await,
        400,
        "bad_query",
    );
    assert_error(&user.get("/user/tasks?state=bogus").await, 400, "bad_query");

    // Worker side.
    assert_error(
        &worker
            .post(
                "/worker/submit_answer",
                &json!({"id": unknown, "lease_epoch": 1, "answer": 1}),
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &worker
            .post("/worker/submit_answer", &json!({"id": unknown}))
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &worker
            .post(
                "/worker/submit_answer",
                &json!({"id": unknown, "lease_epoch": 1}),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &worker
            .post("/worker/request_task", &json!({"max_tasks": 1001}))
            .await,
        422,
        "validation_failed",
    );
    assert_error(
        &worker
            .post(
                "/worker/heartbeat",
                &json!({"leases": [{"id": unknown, "lease_epoch": 1, "progress": 150}]}),
            )
            .await,
        422,
        "validation_failed",
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_gives_one_task_under_concurrency() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let body = json!({"function": "charge", "args": [100], "idempotency_key": "order-17"});
    let mut handles = Vec::new();
    for _ in 0..100 {
        let (u, b) = (user.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            u.post("/user/submit_task", &b).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for h in handles {
        let (st, v) = h.await.unwrap();
        assert!(st == 201 || st == 200, "{st} {v}");
        if st == 201 {
            created += 1;
        }
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one task for one key");
    assert_eq!(created, 1, "exactly one request created it");
    let (_, list) = user.get("/user/tasks").await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1);

    // Same key, different body.
    let r = user
        .post(
            "/user/submit_task",
            &json!({"function": "charge", "args": [999], "idempotency_key": "order-17"}),
        )
        .await;
    assert_error(&r, 422, "idempotency_key_reused");
    // Another owner may use the same key.
    let bob = user.with_token(&server.token(Role::User, "bob"));
    let (st, v) = bob.post("/user/submit_task", &body).await;
    assert_eq!(st, 201, "{v}");
    assert!(!ids.contains(v["id"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoized_arguments_reuse_the_answer() {
    let server = Server::start(&[]);
    let user = Api::new(&server.url, Some(server.token(Role::User, "alice")));
    let worker = user.with_token(&server.token(Role::Worker, "w1"));
    let body = json!({"package": "math", "function": "fib", "args": [30], "memoize": true});
    let first = user.submit(body.clone()).await;
    let lease = worker.lease("w1", 1, 1.0).await;
    assert_eq!(worker.answer(&lease[0], json!(832040)).await.0, 200);
    let (st, v) = user.post("/user/submit_task", &body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"].as_str().unwrap(), first);
    assert_eq!(v["state"], "succeeded");
    // Different arguments run anew.
    let (st, v) = user
        .post(
            "/user/submit_task",
            &json!({"package": "math", "function": "fib", "args": [31], "memoize": true}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert!(worker.lease("w1", 5, 0.0).await.len() == 1);
}
