use std::path::PathBuf;
use std::time::Duration;

use crpc_package::client::{ClientError, InstallError, RegistryClient, VersionInfo};
use crpc_package::testing;
use crpc_package::verify::{generate_key, sign, signing_key, TrustedKeys, VerifyError};
use crpc_service::auth::{mint, Secret};
use crpc_tests::{assert_error, Api, Proc};
use serde_json::Value;
use task_api::Role;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_task-registry"))
}

fn token(p: &Proc, role: Role, sub: &str) -> String {
    let secret = Secret::load(None, None, p.data_dir()).unwrap();
    mint(&secret, sub, role, Duration::from_secs(3600)).unwrap()
}

async fn publish(
    api: &Api,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> (reqwest::StatusCode, Value) {
    api.put_bytes(
        &format!("/v1/packages/{name}/{version}"),
        bytes,
        &[("content-type", "application/gzip")],
    )
    .await
}

async fn download(api: &Api, name: &str, version: &str) -> (u16, Vec<u8>) {
    let r = api
        .req(
            reqwest::Method::GET,
            &format!("/v1/packages/{name}/{version}/archive"),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_resolve_yank_and_immutability() {
    publish_resolve_yank(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_resolve_yank_and_immutability_on_postgres() {
    let Some(db) = crpc_tests::TestDatabase::new().await else {
        return;
    };
    publish_resolve_yank(&["--database-url", db.url()]).await;
}

async fn publish_resolve_yank(flags: &[&str]) {
    let reg = Proc::start(&binary(), flags);
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let (st, body) = publish(&publisher, "demo-pkg", v, testing::good("demo-pkg", v)).await;
        assert_eq!(st, 201, "{body}");
        assert_eq!(body["version"], v);
        assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
    }
    let user = publisher.with_token(&token(&reg, Role::User, "alice"));
    let worker = publisher.with_token(&token(&reg, Role::Worker, "w1"));
    let (st, v) = user.get("/v1/packages/demo-pkg/resolve?req=%5E1").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], "1.1.0");
    let (_, v) = worker.get("/v1/packages/demo-pkg/resolve").await;
    assert_eq!(v["version"], "2.0.0", "no requirement: the newest");

    // Yank 1.1.0: ^1 now resolves to 1.0.0, but 1.1.0 still downloads by exact version.
    let (st, v) = publisher
        .post("/v1/packages/demo-pkg/1.1.0/yank", &Value::Null)
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = user.get("/v1/packages/demo-pkg/resolve?req=%5E1").await;
    assert_eq!(v["version"], "1.0.0");
    let (st, bytes) = download(&worker, "demo-pkg", "1.1.0").await;
    assert_eq!(st, 200);
    assert_eq!(bytes, testing::good("demo-pkg", "1.1.0"));
    let (_, v) = user.get("/v1/packages/demo-pkg").await;
    let yanked: Vec<(String, bool)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["version"].as_str().unwrap().to_string(),
                x["yanked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        yanked,
        vec![
            ("2.0.0".into(), false),
            ("1.1.0".into(), true),
            ("1.0.0".into(), false)
        ]
    );
    assert_error(
        &user.get("/v1/packages/demo-pkg/resolve?req=%5E3").await,
        404,
        "no_match",
    );
    assert_error(
        &user.get("/v1/packages/demo-pkg/resolve?req=banana").await,
        422,
        "validation_failed",
    );
    let (_, list) = user.get("/v1/packages").await;
    assert_eq!(list["packages"][0]["latest"], "2.0.0");
    let (_, f) = user.get("/v1/functions/estimate_pi").await;
    assert_eq!(f["packages"][0]["version"], "2.0.0");

    // Republishing 1.0.0 with other bytes: 409, and the original bytes are still served.
    let original = testing::good("demo-pkg", "1.0.0");
    let other = testing::good_with("demo-pkg", "1.0.0", b"different component");
    assert_ne!(original, other);
    assert_error(
        &publish(&publisher, "demo-pkg", "1.0.0", other).await,
        409,
        "version_exists",
    );
    assert_eq!(download(&user, "demo-pkg", "1.0.0").await.1, original);

    // Manifest and path must agree.
    assert_error(
        &publish(
            &publisher,
            "demo-pkg",
            "3.0.0",
            testing::good("demo-pkg", "3.0.1"),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &publish(
            &publisher,
            "other",
            "1.0.0",
            testing::good("demo-pkg", "1.0.0"),
        )
        .await,
        422,
        "validation_failed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_publishers_write_and_every_role_reads() {
    let reg = Proc::start(&binary(), &[]);
    let anon = Api::new(&reg.url, None);
    assert_error(
        &publish(&anon, "demo", "1.0.0", testing::good("demo", "1.0.0")).await,
        401,
        "unauthorized",
    );
    let user = anon.with_token(&token(&reg, Role::User, "alice"));
    assert_error(
        &publish(&user, "demo", "1.0.0", testing::good("demo", "1.0.0")).await,
        403,
        "forbidden",
    );
    let worker = anon.with_token(&token(&reg, Role::Worker, "w"));
    assert_error(
        &publish(&worker, "demo", "1.0.0", testing::good("demo", "1.0.0")).await,
        403,
        "forbidden",
    );
    assert_error(
        &user
            .post("/v1/packages/demo/1.0.0/yank", &Value::Null)
            .await,
        403,
        "forbidden",
    );
    let publisher = anon.with_token(&token(&reg, Role::Publisher, "ci"));
    assert_eq!(
        publish(&publisher, "demo", "1.0.0", testing::good("demo", "1.0.0"))
            .await
            .0,
        201
    );
    assert_error(&anon.get("/v1/packages/demo").await, 401, "unauthorized");
    for api in [&user, &worker, &publisher] {
        assert_eq!(api.get("/v1/packages/demo").await.0, 200);
        assert_eq!(api.get("/v1/packages/demo/1.0.0").await.0, 200);
        assert_eq!(download(api, "demo", "1.0.0").await.0, 200);
    }
    // Limits and bad input.
    let big = Proc::start(&binary(), &["--max-archive-bytes", "1000"]);
    let p2 = Api::new(&big.url, Some(token(&big, Role::Publisher, "ci")));
    assert_error(
        &publish(&p2, "demo", "1.0.0", vec![0u8; 5000]).await,
        413,
        "payload_too_large",
    );
    assert_error(
        &publish(&publisher, "demo", "1.0.1", b"not a tarball".to_vec()).await,
        400,
        "bad_archive",
    );
    assert_error(
        &publish(
            &publisher,
            "Bad_Name",
            "1.0.0",
            testing::good("demo", "1.0.0"),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &publish(&publisher, "demo", "1.0", testing::good("demo", "1.0.0")).await,
        422,
        "validation_failed",
    );
    assert_error(&user.get("/v1/packages/nope").await, 404, "not_found");
    assert_error(
        &user.get("/v1/packages/demo/9.9.9/archive").await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_the_field() {
    let reg = Proc::start(&binary(), &[]);
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    let m = testing::manifest("demo", "1.0.0");
    let cases = [
        (m.replace("name = \"demo\"\n", ""), "name"),
        (
            m.replace("version = \"1.0.0\"", "version = \"one\""),
            "version",
        ),
        (m.replace("kind = \"wasm\"", "kind = \"jar\""), "kind"),
        (
            m.replace(
                "{ name = \"samples\", type = \"integer\" }",
                "{ name = \"samples\", type = \"complex\" }",
            ),
            "functions.estimate_pi.args[0].type",
        ),
        (
            m.replace(
                "returns = \"number\"",
                "returns = \"number\"\ncost = \"../x\"",
            ),
            "functions.estimate_pi.cost",
        ),
    ];
    for (text, field) in cases {
        let archive = testing::Raw::default()
            .file("crpc.toml", text.as_bytes())
            .file("pi.wasm", b"x")
            .finish();
        let r = publish(&publisher, "demo", "1.0.0", archive).await;
        assert_error(&r, 422, "invalid_manifest");
        assert_eq!(r.1["error"]["details"]["field"], field, "{}", r.1);
    }
    let no_manifest = testing::Raw::default().file("pi.wasm", b"x").finish();
    let r = publish(&publisher, "demo", "1.0.0", no_manifest).await;
    assert_error(&r, 422, "invalid_manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_naming_the_entry() {
    let reg = Proc::start(&binary(), &[]);
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    for (label, bytes, entry) in testing::hostile("demo", "1.0.0") {
        let r = publish(&publisher, "demo", "1.0.0", bytes).await;
        assert_error(&r, 422, "bad_archive");
        assert_eq!(
            r.1["error"]["details"]["entry"],
            entry.as_str(),
            "{label}: {}",
            r.1
        );
    }
    // Nothing was stored: no blob, no version; nothing escaped the data dir.
    let blobs: Vec<_> = walk(&reg.data_dir().join("blobs"));
    assert!(
        blobs.iter().all(|p| p.is_dir()),
        "no blob written: {blobs:?}"
    );
    assert_error(&publisher.get("/v1/packages/demo").await, 404, "not_found");
    let parent = reg.data_dir().parent().unwrap();
    assert!(!parent.join("escape").exists() && !std::path::Path::new("/abs/path").exists());
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Serves one canned archive for any request: a registry mirror that flipped a byte.
async fn tampering_mirror(bytes: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&bytes).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_client_refuses_tampered_or_untrusted_archives() {
    let reg = Proc::start(&binary(), &[]);
    let (secret, public) = generate_key();
    let (_, stranger) = generate_key();
    let bytes = testing::good("signed", "1.0.0");
    let sig = sign(&bytes, &signing_key(&secret).unwrap());
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    let (st, v) = publisher
        .put_bytes(
            "/v1/packages/signed/1.0.0",
            bytes.clone(),
            &[("x-crpc-signature", &sig)],
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let client = RegistryClient::new(&reg.url, Some(token(&reg, Role::Worker, "w")));
    let info: VersionInfo = client.version("signed", "1.0.0").await.unwrap();
    assert_eq!(info.signature.as_deref(), Some(sig.as_str()));
    let limits = Default::default();
    let dir = tempfile::tempdir().unwrap();

    // Trusted key: installs.
    let trusted = TrustedKeys::from_hex([public.as_str()]).unwrap();
    client
        .install_verified(&info, &trusted, &dir.path().join("ok"), &limits)
        .await
        .unwrap();
    assert!(dir.path().join("ok/crpc.toml").is_file());

    // Signed by a key not in the trusted set: refused, nothing unpacked.
    let others = TrustedKeys::from_hex([stranger.as_str()]).unwrap();
    let e = client
        .install_verified(&info, &others, &dir.path().join("untrusted"), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Fetch(ClientError::Verify(VerifyError::Untrusted))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not made by any trusted key"), "{e}");
    assert!(!dir.path().join("untrusted").exists());

    // One flipped byte on the way: refused, nothing unpacked.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let mirror = RegistryClient::new(&tampering_mirror(flipped).await, None);
    let e = mirror
        .install_verified(
            &info,
            &TrustedKeys::default(),
            &dir.path().join("flipped"),
            &limits,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Fetch(ClientError::Verify(VerifyError::Digest { .. }))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("sha256 mismatch"), "{e}");
    assert!(!dir.path().join("flipped").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_reverifies_blobs() {
    let mut reg = Proc::start(&binary(), &[]);
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    for v in ["1.0.0", "1.1.0"] {
        assert_eq!(
            publish(&publisher, "keep", v, testing::good("keep", v))
                .await
                .0,
            201
        );
    }
    publisher
        .post("/v1/packages/keep/1.1.0/yank", &Value::Null)
        .await;
    let (_, before) = publisher.get("/v1/packages/keep").await;
    reg.kill9();
    reg.restart();
    let (st, after) = publisher.get("/v1/packages/keep").await;
    assert_eq!(st, 200);
    assert_eq!(before["versions"], after["versions"]);
    assert_eq!(
        download(&publisher, "keep", "1.0.0").await.1,
        testing::good("keep", "1.0.0")
    );

    // Corrupt one blob on disk: the restart logs it and downloads refuse it.
    let sha = after["versions"][1]["sha256"].as_str().unwrap().to_string();
    let blob = reg
        .data_dir()
        .join("blobs/sha256")
        .join(&sha[..2])
        .join(&sha);
    let mut b = std::fs::read(&blob).unwrap();
    b[10] ^= 0xff;
    std::fs::write(&blob, b).unwrap();
    reg.terminate();
    reg.restart();
    let (st, _) = download(&publisher, "keep", "1.0.0").await;
    assert_eq!(st, 500);
    let r = publisher.get("/v1/packages/keep/1.0.0/archive").await;
    assert_error(&r, 500, "blob_corrupt");
    for _ in 0..50 {
        if reg.log().contains("stored archive is missing or corrupt") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "start-up verification did not report the corrupt blob: {}",
        reg.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_belong_to_their_first_publisher() {
    first_publisher_owns(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_belong_to_their_first_publisher_on_postgres() {
    let Some(db) = crpc_tests::TestDatabase::new().await else {
        return;
    };
    first_publisher_owns(&["--database-url", db.url()]).await;
}

async fn first_publisher_owns(flags: &[&str]) {
    let reg = Proc::start(&binary(), flags);
    let api = |role, sub: &str| Api::new(&reg.url, Some(token(&reg, role, sub)));
    let (alice, bob) = (api(Role::Publisher, "alice"), api(Role::Publisher, "bob"));
    let admin = api(Role::Admin, "root");
    assert_eq!(
        publish(&alice, "demo", "1.0.0", testing::good("demo", "1.0.0"))
            .await
            .0,
        201
    );
    // Bob can neither publish a new version nor yank alice's.
    let got = publish(&bob, "demo", "9.0.0", testing::good("demo", "9.0.0")).await;
    assert_error(&got, 403, "not_owner");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice"),
        "{}",
        got.1
    );
    assert_error(
        &bob.post("/v1/packages/demo/1.0.0/yank", &Value::Null).await,
        403,
        "not_owner",
    );
    let (_, v) = bob.get("/v1/packages/demo/resolve?req=*").await;
    assert_eq!(v["version"], "1.0.0", "nothing changed: {v}");
    assert_eq!(v["yanked"], false);
    // Only owners change owners.
    let add_bob = serde_json::json!({"owners": ["bob"]});
    assert_error(
        &bob.json(reqwest::Method::PUT, "/v1/packages/demo/owners", &add_bob)
            .await,
        403,
        "not_owner",
    );
    let (st, v) = alice
        .json(reqwest::Method::PUT, "/v1/packages/demo/owners", &add_bob)
        .await;
    assert_eq!(
        (st.as_u16(), v["owners"].clone()),
        (200, serde_json::json!(["alice", "bob"]))
    );
    assert_eq!(
        publish(&bob, "demo", "1.1.0", testing::good("demo", "1.1.0"))
            .await
            .0,
        201
    );
    // Owners leave; the last one cannot.
    let (st, v) = bob
        .json(
            reqwest::Method::DELETE,
            "/v1/packages/demo/owners",
            &serde_json::json!({"owners": ["alice"]}),
        )
        .await;
    assert_eq!(
        (st.as_u16(), v["owners"].clone()),
        (200, serde_json::json!(["bob"]))
    );
    assert_error(
        &bob.json(
            reqwest::Method::DELETE,
            "/v1/packages/demo/owners",
            &add_bob,
        )
        .await,
        409,
        "last_owner",
    );
    assert_error(
        &publish(&alice, "demo", "2.0.0", testing::good("demo", "2.0.0")).await,
        403,
        "not_owner",
    );
    // An admin may do anything; every role reads the owners.
    assert_eq!(
        publish(&admin, "demo", "3.0.0", testing::good("demo", "3.0.0"))
            .await
            .0,
        201
    );
    let (st, v) = api(Role::User, "u").get("/v1/packages/demo/owners").await;
    assert_eq!(
        (st.as_u16(), v["owners"].clone()),
        (200, serde_json::json!(["bob"]))
    );
    assert_error(
        &alice.get("/v1/packages/nope/owners").await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_do_not_blow_up_memory() {
    let reg = Proc::start(&binary(), &[]);
    let publisher = Api::new(&reg.url, Some(token(&reg, Role::Publisher, "ci")));
    assert_eq!(
        publish(&publisher, "demo", "1.0.0", testing::good("demo", "1.0.0"))
            .await
            .0,
        201
    );
    let idle = crpc_tests::peak_rss_mib(reg.pid());
    let m = testing::manifest("demo", "1.0.1");
    for (kind, entry) in [
        (tar::EntryType::GNULongName, "@LongLink"),
        (tar::EntryType::XHeader, "pax"),
    ] {
        // A few hundred KiB on the wire, 256 MiB of header once inflated.
        let bomb = testing::Raw::default()
            .file("crpc.toml", m.as_bytes())
            .extension(kind, 256 << 20, b"a/")
            .file("x", b"x")
            .finish();
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let got = publish(&publisher, "demo", "1.0.1", bomb).await;
        assert_error(&got, 422, "bad_archive");
        assert_eq!(got.1["error"]["details"]["entry"], entry, "{}", got.1);
    }
    let peak = crpc_tests::peak_rss_mib(reg.pid());
    println!("registry peak RSS: idle {idle:.0} MiB, after two 256 MiB header bombs {peak:.0} MiB");
    assert!(
        peak - idle < 100.0,
        "idle {idle:.0} MiB, peak {peak:.0} MiB"
    );
}
