//! Issue 16: the Python client (`sdk/python`), installed with pip into a fresh venv as a user
//! would, runs its own test suite against a real server and processor, and the README's Python
//! walkthrough runs as written against `crpc dev`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crpc_tests::{copy_dir, readme_block_in, Cluster, Dev};

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python")
}

/// A venv with `pip install ./sdk/python` done as a user does it (pip fetches the build backend,
/// setuptools, from PyPI or its cache; the package itself has no dependencies), from a copy so
/// the source tree stays clean.
fn python() -> &'static Path {
    static VENV: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = VENV.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        copy_dir(&sdk(), &src);
        let venv = dir.path().join("venv");
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap();
        assert!(out.status.success(), "venv: {}", text(&out));
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip install ./sdk/python: {}",
            text(&out)
        );
        dir
    });
    Box::leak(dir.path().join("venv/bin/python").into_boxed_path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_passes_its_tests_against_the_real_server() {
    // A short lease so a cancel reaches the processor within a second (heartbeats at a third),
    // and slots to spare for the one that is still stopping it.
    let c = Cluster::start(&["--lease-ttl", "3s"]);
    c.publish("testkit", None).await;
    let _p = c.processor(&["--cpu-slots", "4"]);
    let work = tempfile::tempdir().unwrap();
    // Run from elsewhere, so `import crpc` is the installed package, not the source.
    let out = Command::new(python())
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(sdk().join("tests"))
        .current_dir(work.path())
        .env("CRPC_SERVER", &c.server.url)
        .env("CRPC_TOKEN", &c.user_token)
        .env_remove("CRPC_CONFIG")
        .output()
        .unwrap();
    let log = text(&out);
    println!("{log}");
    assert!(out.status.success(), "the Python client's tests: {log}");
    assert!(log.contains("OK"), "{log}");
}

#[test]
fn readme_python_walkthrough_works_as_written() {
    let dev = Dev::start(&[]);
    let script = readme_block_in("<!-- python-walkthrough -->", "python");
    let out = dev
        .command(python().to_str().unwrap())
        .args(["-c", &script])
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("pi ≈ 3.1"), "{log}");
    assert_eq!(lines[1], "[4, 2, 3]", "{log}");
    assert!(log.contains("validation_failed args[0]"), "{log}");
    assert!(log.contains("the queue ends in"), "{log}");
}
