//! The README's registry and processor walkthroughs, run as written.
use std::process::Command;

use crpc_tests::{sibling_binary, Proc};

#[test]
fn readme_registry_walkthrough_works_as_written() {
    let server_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // The server creates the secret the registry then shares.
    let mut probe = Proc::start_in(&sibling_binary("task-server"), server_dir.clone(), &[]);
    probe.kill9();
    let secret = server_dir.path().join("jwt_secret");
    let registry = Proc::start(
        &sibling_binary("task-registry"),
        &["--jwt-secret-file", secret.to_str().unwrap()],
    );
    let server = Proc::start_in(
        &sibling_binary("task-server"),
        server_dir.clone(),
        &["--registry", &registry.url.clone()],
    );
    let script = crpc_tests::readme_block("<!-- registry-walkthrough -->")
        .replace("http://127.0.0.1:7701", &registry.url)
        .replace("http://127.0.0.1:7700", &server.url)
        .replace(
            "cargo run -q --release -p task-server --",
            &sibling_binary("task-server").display().to_string(),
        )
        .replace("./crpc-data", &server_dir.path().display().to_string());
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains(r#""version":"1.0.0""#) && lines[0].contains(r#""success":true"#),
        "publish: {stdout}"
    );
    assert!(lines[1].contains(r#""latest":"1.0.0""#), "list: {stdout}");
    assert!(lines[2].contains(r#""sha256""#), "resolve: {stdout}");
    assert!(
        lines[3].contains("validation_failed") && lines[3].contains("must be an integer"),
        "bad submit: {stdout}"
    );
    assert!(
        lines[4].contains(r#""version":"1.0.0""#) && lines[4].contains(r#""state":"queued""#),
        "good submit: {stdout}"
    );
}

/// The README's processor walkthrough, run as written against a real processor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_processor_walkthrough_works_as_written() {
    let c = crpc_tests::Cluster::start(&[]);
    let _p = c.processor(&["--cpu-slots", "1"]);
    let examples = crpc_tests::example_dir("monte-carlo-pi");
    let script = crpc_tests::readme_block("<!-- processor-walkthrough -->")
        .replace("http://127.0.0.1:7701", &c.registry.url)
        .replace("http://127.0.0.1:7700", &c.server.url)
        .replace(
            "cargo run -q --release -p task-server --",
            &sibling_binary("task-server").display().to_string(),
        )
        .replace("./crpc-data", &c.registry.data_dir().display().to_string())
        .replace("examples/monte-carlo-pi", &examples.display().to_string());
    let out = run_script(script, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "publish: 201", "{stdout}");
    assert!(lines[2].contains(r#""state":"succeeded""#), "{stdout}");
    assert!(lines[2].contains(r#""answer":3.14"#), "{stdout}");
}

/// The README's workflow walkthrough (Fibonacci as a memoized graph, π averaged over a streamed
/// batch, a cron schedule), run as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_workflows_walkthrough_works_as_written() {
    let c = crpc_tests::Cluster::start(&[]);
    c.publish("testkit", None).await;
    c.publish("monte-carlo-pi", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let script = crpc_tests::readme_block("<!-- workflows-walkthrough -->")
        .replace("http://127.0.0.1:7700", &c.server.url);
    let out = run_script(script, &[("USER_TOKEN", c.user_token.clone())]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}\nprocessor: {}",
        String::from_utf8_lossy(&out.stderr),
        p.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for l in &lines[..2] {
        assert!(l.contains(r#""answer":102334155"#), "{stdout}");
    }
    assert!(lines[0].contains(r#""attempt":1"#), "{stdout}");
    assert!(lines[1].contains(r#""attempt":0"#), "memoized: {stdout}");
    // Seeded per task: distinct estimates, but two of 16 may coincide by chance (~8 % of
    // runs: an estimate from 10⁶ points is a multiple of 4e-6 with σ ≈ 0.0016).
    let words: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        (words[..2].join(" "), words[3..5].join(" ")),
        ("16 estimates,".to_string(), "different, mean".to_string()),
        "{stdout}"
    );
    assert!(words[5].starts_with("3.1"), "{stdout}");
    let distinct: u32 = words[2].parse().unwrap();
    assert!(distinct >= 13, "one seed for several tasks: {stdout}");
    assert!(
        lines[3] == "fired 2" || lines[3] == "fired 3",
        "schedule: {stdout}"
    );
    assert!(lines[4].contains(r#""success":true"#), "{stdout}");
}

/// Runs a README block with bash (`-euo pipefail`) in a scratch directory, off the runtime.
async fn run_script(script: String, env: &[(&str, String)]) -> std::process::Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .envs(env)
            .current_dir(work.path())
            .output()
            .expect("bash")
    })
    .await
    .unwrap()
}

/// The README's files walkthrough (a text file in, a CSV file out), run as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_files_walkthrough_works_as_written() {
    let c = crpc_tests::Cluster::start(&[]);
    c.publish("wordcount", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let script = crpc_tests::readme_block("<!-- files-walkthrough -->");
    let bin = sibling_binary("crpc");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("PATH", path),
        ("HOME", home.path().display().to_string()),
        ("CRPC_SERVER", c.server.url.clone()),
        ("CRPC_TOKEN", c.user_token.clone()),
    ];
    let out = run_script(script, &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}\nprocessor: {}",
        p.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains(r#""name":"counts.csv""#), "{stdout}");
    assert!(lines[0].contains(r#""size":56"#), "{stdout}");
    assert_eq!(
        lines[1..],
        ["word,count", "the,3000", "cat,1000"],
        "{stdout}"
    );
    assert!(stderr.contains("out/counts.csv (56 bytes)"), "{stderr}");
}
