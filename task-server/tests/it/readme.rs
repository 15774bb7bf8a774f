//! The README's curl walkthrough, run as written (docs that are tested).
use std::process::Command;

use crate::harness::{binary, Server};

#[test]
fn readme_curl_walkthrough_works_as_written() {
    let server = Server::start(&[]);
    let script = crpc_tests::readme_block("<!-- walkthrough -->")
        .replace("http://127.0.0.1:7700", &server.url)
        .replace(
            "cargo run -q --release -p task-server --",
            &binary().display().to_string(),
        )
        .replace("./crpc-data", &server.data_dir().display().to_string());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(server.data_dir())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""state":"succeeded""#), "{stdout}");
    assert!(stdout.contains(r#""answer":43"#), "{stdout}");
    assert!(stdout.contains(r#""time":"#), "estimate printed: {stdout}");
}
