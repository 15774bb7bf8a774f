//! The `crpc` binary on its own, no services: what it does locally (templates, reproducible
//! archives, keys) and how it reports bad command lines and settings. Everything that talks to a
//! server is in `tests/e2e/cli.rs`, against a real `crpc dev`.
use std::path::Path;
use std::process::{Command, Output};

fn crpc(cwd: &Path, config: &Path, args: &[&str]) -> Output {
    crpc_with_env(cwd, config, args, &[])
}

/// `crpc ARGS` with the config file `config` and, of the CRPC_* settings, only `env`.
fn crpc_with_env(cwd: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crpc"));
    cmd.args(args)
        .current_dir(cwd)
        .env("CRPC_CONFIG", config)
        .env_remove("CRPC_SERVER")
        .env_remove("CRPC_REGISTRY")
        .env_remove("CRPC_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run crpc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn stderr_line(out: &Output) -> String {
    let e = text(&out.stderr);
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    assert!(e.starts_with("crpc: "), "{e:?}");
    assert!(!e.contains("panicked"), "{e:?}");
    e
}

#[test]
fn python_template_packages_to_the_same_archive_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let out = crpc(dir.path(), &cfg, &["new", "hello", "--template", "python"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in ["crpc.toml", "worker.py", "crpc_worker.py", "README.md"] {
        assert!(dir.path().join("hello").join(f).is_file(), "{f} is created");
    }
    let sha = |name: &str| {
        let out = crpc(
            dir.path(),
            &cfg,
            &["--json", "package", "hello", "-o", name],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["name"], "hello");
        assert_eq!(v["version"], "0.1.0");
        v["sha256"].as_str().unwrap().to_string()
    };
    let first = sha("a.tar.gz");
    // Touching the files changes their mtimes, not the archive.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let worker = dir.path().join("hello/worker.py");
    std::fs::write(&worker, std::fs::read(&worker).unwrap()).unwrap();
    assert_eq!(sha("b.tar.gz"), first, "archives are reproducible");
    assert_eq!(
        std::fs::read(dir.path().join("a.tar.gz")).unwrap(),
        std::fs::read(dir.path().join("b.tar.gz")).unwrap()
    );

    // A second `new` into the same, non-empty directory is refused, nothing overwritten.
    let out = crpc(dir.path(), &cfg, &["new", "hello", "--template", "python"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("not empty"));
}

#[test]
fn package_of_a_broken_manifest_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let pkg = dir.path().join("bad");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(pkg.join("crpc.toml"), "name = \"bad\"\nversion = \"one\"\n").unwrap();
    let out = crpc(dir.path(), &cfg, &["package", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_line(&out).contains("crpc.toml"));
    let out = crpc(dir.path(), &cfg, &["package", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("nowhere"));
}

#[test]
fn settings_come_from_flag_then_env_then_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // Ports 9, 10 and 11 on loopback: nothing listens, so the error names the URL in effect.
    std::fs::write(&cfg, "server = \"http://127.0.0.1:9\"\ntoken = \"t\"\n").unwrap();
    let out = crpc(dir.path(), &cfg, &["tasks"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr_line(&out).contains("http://127.0.0.1:9"));

    let env_server = [("CRPC_SERVER", "http://127.0.0.1:10")];
    let out = crpc_with_env(dir.path(), &cfg, &["tasks"], &env_server);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr_line(&out).contains("http://127.0.0.1:10"),
        "the env wins"
    );

    let args = ["--server", "http://127.0.0.1:11", "tasks"];
    let out = crpc_with_env(dir.path(), &cfg, &args, &env_server);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr_line(&out).contains("http://127.0.0.1:11"),
        "the flag wins"
    );

    // A config file with a typo is an error that names the file, not a silent default.
    std::fs::write(&cfg, "sever = \"http://127.0.0.1:9\"\n").unwrap();
    let out = crpc(dir.path(), &cfg, &["tasks"]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.contains("config.toml") && line.contains("sever"),
        "{line}"
    );
}

#[test]
fn bad_command_lines_exit_2_with_usage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    for args in [
        &["submit"][..],
        &["new", "x", "--template", "cobol"],
        &["wait"],
        &["submit", "f", "--priority", "high"],
        &["frobnicate"],
    ] {
        let out = crpc(dir.path(), &cfg, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"), "{args:?}");
    }
    let out = crpc(dir.path(), &cfg, &["--help"]);
    assert!(out.status.success());
    for cmd in ["dev", "submit", "map", "publish", "workers", "estimate"] {
        assert!(text(&out.stdout).contains(cmd), "--help lists {cmd}");
    }
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_the_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let out = crpc(dir.path(), &cfg, &["keygen", "--output", "signing.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = dir.path().join("signing.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is private");
    assert!(
        !text(&out.stdout).trim().is_empty(),
        "the public key is printed"
    );
    // It does not overwrite a key.
    let out = crpc(dir.path(), &cfg, &["keygen", "--output", "signing.key"]);
    assert_ne!(out.status.code(), Some(0));
    stderr_line(&out);
}
