//! Task server + registry: versions resolved at submit, typed arguments checked.
use std::time::Duration;

use crpc_package::testing;
use crpc_service::auth::{mint, Secret};
use crpc_tests::{assert_error, sibling_binary, Api, Proc};
use serde_json::json;
use task_api::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_resolves_versions_and_checks_arguments() {
    let mut registry = Proc::start(&sibling_binary("task-registry"), &[]);
    let secret_file = registry.data_dir().join("jwt_secret");
    let server = Proc::start(
        &sibling_binary("task-server"),
        &[
            "--registry",
            &registry.url.clone(),
            "--jwt-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let secret = Secret::load(None, Some(&secret_file), registry.data_dir()).unwrap();
    let tok = |role, sub: &str| mint(&secret, sub, role, Duration::from_secs(600)).unwrap();
    let publisher = Api::new(&registry.url, Some(tok(Role::Publisher, "ci")));
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let (st, b) = publisher
            .put_bytes(
                &format!("/v1/packages/demo-pkg/{v}"),
                testing::good("demo-pkg", v),
                &[],
            )
            .await;
        assert_eq!(st, 201, "{b}");
    }
    let user = Api::new(&server.url, Some(tok(Role::User, "alice")));
    let worker = user.with_token(&tok(Role::Worker, "w1"));

    // Wrong argument type: 422 naming the argument and its type.
    let r = user
        .post(
            "/user/submit_task",
            &json!({"package": "demo-pkg", "function": "f", "version": "^1", "args": ["x"]}),
        )
        .await;
    assert_error(&r, 422, "validation_failed");
    assert_eq!(r.1["error"]["details"]["argument"], "x", "{}", r.1);
    assert_eq!(r.1["error"]["details"]["field"], "args[0]");
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("integer"),
        "{}",
        r.1
    );

    // Right type: queued with the exact resolved version, which the worker sees.
    let (st, v) = user
        .post(
            "/user/submit_task",
            &json!({"package": "demo-pkg", "function": "f", "version": "^1", "args": [1]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], "1.1.0");
    let (_, lease) = worker.get("/worker/request_task").await;
    assert_eq!(lease["task"]["version"], "1.1.0");
    assert_eq!(lease["task"]["package"], "demo-pkg");

    // The seed's form: only the function; the one package exporting it is found.
    let (st, v) = user
        .post(
            "/user/submit_task",
            &json!({"function": "estimate_pi", "args": [1000]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], "2.0.0");

    // Unknown package, function, version; missing and extra arguments.
    let bad = [
        (
            json!({"package": "nope", "function": "f", "args": [1]}),
            "package",
        ),
        (
            json!({"package": "demo-pkg", "function": "g", "args": [1]}),
            "function",
        ),
        (
            json!({"package": "demo-pkg", "function": "f", "version": "^9", "args": [1]}),
            "version",
        ),
        (
            json!({"package": "demo-pkg", "function": "f", "args": []}),
            "args[0]",
        ),
        (
            json!({"package": "demo-pkg", "function": "f", "args": [1], "kwargs": {"y": 2}}),
            "kwargs.y",
        ),
        (json!({"function": "no_such_function"}), "function"),
    ];
    for (body, field) in bad {
        let r = user.post("/user/submit_task", &body).await;
        assert_error(&r, 422, "validation_failed");
        assert_eq!(r.1["error"]["details"]["field"], field, "{body}: {}", r.1);
    }
    // A batch is checked element by element, and nothing is queued when one is wrong.
    let r = user
        .post(
            "/user/submit_batch",
            &json!({"tasks": [
            {"package": "demo-pkg", "function": "f", "args": [1]},
            {"package": "demo-pkg", "function": "f", "args": [true]}]}),
        )
        .await;
    assert_error(&r, 422, "validation_failed");
    assert_eq!(r.1["error"]["details"]["field"], "tasks[1].args[0]");

    // Registry down: 503 with a clear message, nothing queued.
    let (_, before) = user.get("/user/tasks").await;
    registry.kill9();
    let r = user
        .post(
            "/user/submit_task",
            &json!({"package": "demo-pkg", "function": "f", "version": "=1.0.0", "args": [1]}),
        )
        .await;
    assert_error(&r, 503, "registry_unavailable");
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("registry"),
        "{}",
        r.1
    );
    let (_, after) = user.get("/user/tasks").await;
    assert_eq!(before["tasks"], after["tasks"], "nothing queued half-way");
}
