//! Issue 16: `--config FILE.toml` on the server, the processor and the registry (flags over env
//! over file over defaults; a bad file is a one-line command-line error), `crpc completions`,
//! `crpc man`, and `crpc tasks --state` offering only the states the server keeps.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crpc_tests::{sibling_binary, Api, Cluster, Proc};
use serde_json::{json, Value};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn batch(n: usize) -> Value {
    json!({"tasks": (0..n).map(|_| json!({"function": "f"})).collect::<Vec<_>>()})
}

/// A server on its own data dir with `flags` and `env`, no auth (every caller is an admin).
fn server(flags: &[&str], env: &[(&str, &str)]) -> (Proc, Api) {
    let mut all = vec!["--no-auth"];
    all.extend_from_slice(flags);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let p = Proc::start_with(&sibling_binary("task-server"), dir, &all, env).unwrap();
    let api = Api::new(&p.url, None);
    (p, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_config_file_fills_what_flags_and_env_leave() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "server.toml",
        "# snake or kebab case, as the flags are named\nmax_batch_tasks = 2\nlease-ttl = \"20s\"\n",
    );
    let (_s, api) = server(&["--config", &file], &[]);
    let (st, v) = api.post("/user/submit_batch", &batch(3)).await;
    assert_eq!(st, 422, "the file's limit of 2: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2"),
        "{v}"
    );
    assert_eq!(api.post("/user/submit_batch", &batch(2)).await.0, 201);
    // The environment wins over the file, and a flag over both.
    let env = [("CRPC_MAX_BATCH_TASKS", "5")];
    let (_s, api) = server(&["--config", &file], &env);
    assert_eq!(api.post("/user/submit_batch", &batch(3)).await.0, 201);
    let (_s, api) = server(&["--config", &file, "--max-batch-tasks", "1"], &env);
    let (st, v) = api.post("/user/submit_batch", &batch(2)).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_and_registry_read_config_files_too() {
    let c = Cluster::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "processor.toml",
        "cpu-slots = 3\nworker-id = \"from-file\"\n",
    );
    let _p = c.processor(&["--config", &file]);
    let until = Instant::now() + Duration::from_secs(30);
    let slots = loop {
        let (_, v) = c.user.get("/user/workers").await;
        let me = v["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["worker_id"] == "from-file").cloned());
        if let Some(w) = me {
            break w["capabilities"]["slots"].clone();
        }
        assert!(Instant::now() < until, "from-file never listed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(slots, 3);
    // A registry whose file caps archives at 1 KiB refuses testkit's (tens of KiB) with 413.
    let file = write(dir.path(), "registry.toml", "max-archive-bytes = 1024\n");
    let registry = Proc::start(&sibling_binary("task-registry"), &["--config", &file]);
    let secret = crpc_service::auth::Secret::load(None, None, registry.data_dir()).unwrap();
    let token = crpc_service::auth::mint(
        &secret,
        "ci",
        task_api::Role::Publisher,
        Duration::from_secs(600),
    )
    .unwrap();
    let archive = crpc_package::archive::build(&crpc_tests::example_dir("testkit")).unwrap();
    let (st, v) = Api::new(&registry.url, Some(token))
        .put_bytes("/v1/packages/testkit/1.0.0", archive, &[])
        .await;
    assert_eq!(st, 413, "{v}");
}

#[test]
fn a_bad_config_file_is_a_one_line_error_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown.toml", "nmae = 1\n", "unknown key `nmae`"),
        (
            "switch.toml",
            "log-json = \"yes\"\n",
            "`log-json`: a switch takes true or false",
        ),
        (
            "table.toml",
            "[bind]\nport = 1\n",
            "a table is not a flag value",
        ),
        ("broken.toml", "bind = \n", "broken.toml"),
    ];
    for binary in ["task-server", "task-processor", "task-registry"] {
        for (name, text, says) in cases {
            let file = write(dir.path(), name, text);
            let out = Command::new(sibling_binary(binary))
                .args(["--config", &file])
                .env_remove("CRPC_TOKEN")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{binary} {name}: {err}");
            assert!(
                err.contains(says) && err.contains(name),
                "{binary} {name}: {err}"
            );
        }
        let out = Command::new(sibling_binary(binary))
            .args(["--config", "/nonexistent/crpc.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{binary}");
    }
}

#[test]
fn completions_man_pages_and_task_states_come_from_the_cli_definition() {
    let crpc = sibling_binary("crpc");
    for (shell, marker) in [
        ("bash", "_crpc()"),
        ("zsh", "#compdef crpc"),
        ("fish", "complete -c crpc"),
    ] {
        let out = Command::new(&crpc)
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains(marker),
            "{shell}: {script:.200}"
        );
        assert!(
            script.contains("estimate") && script.contains("state"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&crpc)
        .args(["man", "--out", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(dir.path().join("crpc-submit.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "{page:.200}"
    );
    assert!(dir.path().join("crpc.1").exists());
    // `expired` is not a state the server keeps: refused here, before any request.
    let out = Command::new(&crpc)
        .args([
            "tasks",
            "--state",
            "expired",
            "--server",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("possible values: waiting, queued, leased, succeeded, failed, cancelled"),
        "{err}"
    );
}
