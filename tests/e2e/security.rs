//! Attacks through packages and the CLI, against real processors: what a native package can see
//! and reach, what it leaves behind, and what a publisher who does not own a package is told.
use std::path::Path;
use std::time::{Duration, Instant};

use crpc_tests::{sibling_binary, Cluster, Worker};
use serde_json::{json, Value};

fn nativekit(c: &Cluster, extra: &[&str]) -> Worker {
    let mut args = vec!["--cpu-slots", "1"];
    args.extend_from_slice(extra);
    // The token comes from the environment, where a package would look for it.
    Worker::start_with_env(
        &c.server.url,
        &c.registry.url,
        &args,
        &[
            ("CRPC_TOKEN", c.worker_token.as_str()),
            ("SOME_SECRET", "hunter2"),
        ],
    )
}

async fn call(c: &Cluster, function: &str, args: Value) -> Value {
    let id = c
        .submit(json!({"package": "nativekit", "function": function, "args": args}))
        .await;
    c.wait(&id, Duration::from_secs(60)).await
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_packages_see_no_secrets_and_stay_in_their_sandbox() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    let p = nativekit(&c, &[]);
    let v = call(&c, "env", json!([])).await;
    assert_eq!(v["state"], "succeeded", "{v}; {}", p.log());
    let env = v["answer"].as_object().unwrap();
    // A CPU slot shows no GPU: CUDA_VISIBLE_DEVICES is empty and crpc_worker.gpus() is [].
    assert_eq!(env.get("CUDA_VISIBLE_DEVICES"), Some(&json!("")), "{v}");
    assert_eq!(call(&c, "gpus", json!([])).await["answer"], json!([]));
    let text = Value::Object(env.clone()).to_string();
    assert!(
        !text.contains(&c.worker_token) && !text.contains("hunter2"),
        "{text}"
    );
    let home = env["HOME"].as_str().unwrap();
    assert!(
        home.starts_with(p.cache.path().to_str().unwrap()),
        "private HOME: {home}"
    );
    assert_eq!(
        env["TMPDIR"].as_str().unwrap().rsplit_once('/').unwrap().0,
        home.rsplit_once('/').unwrap().0
    );
    println!(
        "a native package's environment: {:?}",
        env.keys().collect::<Vec<_>>()
    );

    // The file system: system dirs and its scratch dir, nothing of the user's.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the crown jewels").unwrap();
    let landlock = p.log().contains("run under Landlock");
    assert_eq!(
        call(&c, "read", json!(["/etc/hostname"])).await["state"],
        "succeeded"
    );
    let mine = format!("{home}/note");
    assert_eq!(
        call(&c, "write", json!([mine, "ok"])).await["state"],
        "succeeded"
    );
    let read = call(&c, "read", json!([secret])).await;
    let pwned = outside.path().join("pwned");
    let wrote = call(&c, "write", json!([pwned, "x"])).await;
    if landlock {
        assert_eq!(read["state"], "failed", "{read}");
        assert!(
            read["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Permission denied"),
            "{read}"
        );
        assert_eq!(wrote["state"], "failed", "{wrote}");
        assert!(!pwned.exists());
        println!(
            "Landlock enforced: reading {} -> {}",
            secret.display(),
            read["error"]["message"]
        );
    } else {
        println!(
            "Landlock is not enforced on this kernel; file-system checks skipped: {}",
            p.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_descendants_that_escaped_with_setsid() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    let _p = nativekit(&c, &[]);
    let v = call(&c, "daemon", json!([])).await;
    let pid = v["answer"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert!(alive(pid), "the detached sleep {pid} runs");
    let id = c
        .submit(json!({"package": "nativekit", "function": "slow", "args": [30]}))
        .await;
    let started = Instant::now();
    while c.answer(&id).await["progress"].as_f64().unwrap_or(0.0) < 10.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "slow never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _) = c
        .user
        .post(&format!("/user/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200);
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{pid} outlived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "the setsid'd descendant {pid} was gone {:?} after the cancel",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_that_returns_another_type_than_it_declares_fails_with_bad_return() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    let p = nativekit(&c, &[]);
    let v = call(&c, "claims_integer", json!([42])).await;
    assert_eq!(
        (v["state"].as_str(), v["answer"].as_i64()),
        (Some("succeeded"), Some(42)),
        "{v}"
    );
    // A string, a float, null and 1e300 are not integers: each fails, final, on its first attempt.
    for lie in [json!("42"), json!(4.5), Value::Null, json!(1e300)] {
        let v = call(&c, "claims_integer", json!([lie])).await;
        assert_eq!(v["state"], "failed", "{lie}: {v}; {}", p.log());
        assert_eq!(v["error"]["kind"], "bad_return", "{v}");
        assert_eq!(v["attempt"], 1, "not retried: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("declares it returns an integer"),
            "{message}"
        );
    }
    // The program that lied stays usable: the next task on the slot answers.
    let v = call(&c, "claims_integer", json!([7])).await;
    assert_eq!(v["answer"], 7, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_native_refuses_native_packages_and_long_lines_are_capped() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    {
        let _p = nativekit(&c, &["--no-native"]);
        let v = call(&c, "env", json!([])).await;
        assert_eq!(v["state"], "failed", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--no-native"),
            "{v}"
        );
    }
    let p = nativekit(&c, &[]);
    assert_eq!(call(&c, "env", json!([])).await["state"], "succeeded");
    let idle = crpc_tests::peak_rss_mib(p.pid());
    // 160 MiB on one unterminated line.
    let v = call(&c, "flood", json!([160])).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line over"),
        "{v}"
    );
    let peak = crpc_tests::peak_rss_mib(p.pid());
    println!("processor peak RSS: {idle:.0} MiB before, {peak:.0} MiB after a 160 MiB line");
    assert!(
        peak - idle < 100.0,
        "idle {idle:.0} MiB, peak {peak:.0} MiB"
    );
    // The slot still works.
    assert_eq!(call(&c, "env", json!([])).await["state"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crpc_publish_says_plainly_who_owns_a_package() {
    let c = Cluster::start(&[]);
    c.publish("monte-carlo-pi", None).await;
    let secret = c.registry.data_dir().join("jwt_secret");
    let secret =
        crpc_service::auth::Secret::load(None, Some(&secret), c.registry.data_dir()).unwrap();
    let bob = crpc_service::auth::mint(
        &secret,
        "bob",
        task_api::Role::Publisher,
        Duration::from_secs(600),
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    crpc_tests::copy_dir(&crpc_tests::example_dir("monte-carlo-pi"), src.path());
    let manifest = src.path().join("crpc.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replacen("1.0.0", "9.0.0", 1);
    std::fs::write(&manifest, text).unwrap();
    let out = std::process::Command::new(sibling_binary("crpc"))
        .args([
            "--registry",
            &c.registry.url,
            "--token",
            &bob,
            "publish",
            "--no-build",
        ])
        .arg(src.path())
        .env("CRPC_CONFIG", src.path().join("none.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("`bob` does not own package `monte-carlo-pi` (owners: ci)"),
        "{stderr}"
    );
    println!("crpc publish as a non-owner: {}", stderr.trim());
    assert!(!Path::new(&src.path().join("monte-carlo-pi-9.0.0.tar.gz")).exists());
}

/// A private CA and a server certificate for 127.0.0.1 (openssl), in `dir`.
fn make_pki(dir: &Path) {
    let script = r#"
set -euo pipefail
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=crpc-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf 2>/dev/null
"#;
    let st = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "openssl made the test PKI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_end_to_end_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let file = |n: &str| pki.path().join(n).to_str().unwrap().to_string();
    let (cert, key, ca) = (file("cert.pem"), file("key.pem"), file("ca.pem"));
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let registry = crpc_tests::Proc::start(&sibling_binary("task-registry"), &tls);
    let reg_url = format!("https://127.0.0.1:{}", registry.port);
    let secret_file = registry.data_dir().join("jwt_secret");
    let mut args = vec![
        "--registry",
        reg_url.as_str(),
        "--jwt-secret-file",
        secret_file.to_str().unwrap(),
    ];
    args.extend_from_slice(&tls);
    args.extend_from_slice(&["--ca-cert", ca.as_str()]);
    let server = crpc_tests::Proc::start(&sibling_binary("task-server"), &args);
    let url = format!("https://127.0.0.1:{}", server.port);
    let secret =
        crpc_service::auth::Secret::load(None, Some(&secret_file), registry.data_dir()).unwrap();
    let tok = |role, sub: &str| {
        crpc_service::auth::mint(&secret, sub, role, Duration::from_secs(600)).unwrap()
    };
    let crpc = |args: &[&str]| {
        std::process::Command::new(sibling_binary("crpc"))
            .args(args)
            .env("CRPC_CONFIG", pki.path().join("none.toml"))
            .output()
            .unwrap()
    };
    let publisher = tok(task_api::Role::Publisher, "ci");
    let testkit = crpc_tests::example_dir("testkit");
    let publish = |with_ca: bool| {
        let mut a = vec![
            "--registry",
            reg_url.as_str(),
            "--token",
            publisher.as_str(),
        ];
        if with_ca {
            a.extend_from_slice(&["--ca-cert", ca.as_str()]);
        }
        a.extend_from_slice(&["publish", "--no-build", testkit.to_str().unwrap()]);
        crpc(&a)
    };
    // Without the CA the certificate is refused; with it the publish goes through.
    let out = publish(false);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = publish(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A processor and the CLI over https.
    let _p = Worker::start(
        &url,
        &reg_url,
        &tok(task_api::Role::Worker, "w"),
        &["--ca-cert", &ca, "--cpu-slots", "1"],
    );
    let user = tok(task_api::Role::User, "alice");
    let out = crpc(&[
        "--server",
        &url,
        "--token",
        &user,
        "--ca-cert",
        &ca,
        "submit",
        "testkit.echo",
        "7",
        "--wait",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "7");
    println!("https: published, leased and answered through TLS with a private CA");
}
