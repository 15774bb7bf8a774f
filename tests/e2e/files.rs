//! Issue 19: task files. Uploads stream into the blob store (a directory, PostgreSQL's metadata
//! beside it, or an S3-compatible server), come back whole or by range, and are readable only
//! by their uploader, the owners of tasks that take them and the worker holding such a lease.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crpc_tests::{assert_error, Api, Cluster, TestDatabase};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use task_api::Role;

/// `n` bytes that do not repeat in any short period (so ranges are checked for real).
fn bytes_of(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn put(api: &Api, body: Vec<u8>) -> (reqwest::StatusCode, Value) {
    api.put_bytes(
        "/files",
        body,
        &[("content-type", "application/octet-stream")],
    )
    .await
}

/// Status, headers and bytes of a GET (or HEAD) with optional extra headers.
async fn fetch(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = api.req(method, path);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("request");
    let (st, h) = (resp.status().as_u16(), resp.headers().clone());
    (st, h, resp.bytes().await.expect("body").to_vec())
}

/// Status and bytes of `GET /files/{sha256}` as `api`.
async fn download(api: &Api, sha256: &str) -> (u16, Vec<u8>) {
    let (st, _, body) = fetch(api, reqwest::Method::GET, &format!("/files/{sha256}"), &[]).await;
    (st, body)
}

fn file_task(v: Value) -> Value {
    json!({"package": "testkit", "function": "echo", "args": [v]})
}

/// Everything a user and a worker do with files, against `c` (any backend).
async fn exercise(c: &Cluster) {
    c.publish("testkit", None).await;
    let data = bytes_of(3 << 20, 7);
    let (st, v) = put(&c.user, data.clone()).await;
    assert_eq!(st, 200, "{v}");
    let hash = sha(&data);
    assert_eq!(v["sha256"], hash, "{v}");
    assert_eq!(v["size"], data.len() as u64);
    assert_eq!(v["file"], json!({"$file": format!("sha256:{hash}")}));
    let path = format!("/files/{hash}");

    // Whole, HEAD, and ranges.
    let (st, h, got) = fetch(&c.user, reqwest::Method::GET, &path, &[]).await;
    assert_eq!((st, sha(&got)), (200, hash.clone()));
    assert_eq!(h["etag"], format!("\"{hash}\"").as_str());
    let (st, h, got) = fetch(&c.user, reqwest::Method::HEAD, &path, &[]).await;
    assert_eq!(st, 200);
    assert!(got.is_empty());
    assert_eq!(h["content-length"], data.len().to_string().as_str());
    let range = [("range", "bytes=1000-1999")];
    let (st, h, got) = fetch(&c.user, reqwest::Method::GET, &path, &range).await;
    assert_eq!(st, 206);
    assert_eq!(got, &data[1000..2000]);
    let want = format!("bytes 1000-1999/{}", data.len());
    assert_eq!(h["content-range"], want.as_str());
    let (st, _, got) = fetch(
        &c.user,
        reqwest::Method::GET,
        &path,
        &[("range", "bytes=-10")],
    )
    .await;
    assert_eq!((st, got.as_slice()), (206, &data[data.len() - 10..]));
    let past = format!("bytes={}-", data.len());
    let (st, _, body) = fetch(&c.user, reqwest::Method::GET, &path, &[("range", &past)]).await;
    assert_eq!(st, 416);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable", "{body}");

    // The same bytes again: the same file.
    let (st, again) = put(&c.user, data.clone()).await;
    assert_eq!((st.as_u16(), &again["sha256"]), (200, &v["sha256"]));

    // Nobody else reads it: another user, a worker without its lease, a publisher, no token.
    let bob = c.user.with_token(&c.mint(Role::User, "bob"));
    let worker = c.user.with_token(&c.mint(Role::Worker, "w1"));
    let other_worker = c.user.with_token(&c.mint(Role::Worker, "w2"));
    for (who, api) in [("bob", &bob), ("worker", &worker)] {
        for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let (st, _, _) = fetch(api, m.clone(), &path, &[]).await;
            assert_eq!(st, 404, "{who} {m}");
        }
    }
    let publisher = c.user.with_token(&c.mint(Role::Publisher, "pub"));
    assert_eq!(
        fetch(&publisher, reqwest::Method::GET, &path, &[]).await.0,
        403
    );
    let anon = Api::new(&c.server.url, None);
    assert_eq!(fetch(&anon, reqwest::Method::GET, &path, &[]).await.0, 401);
    let (st, _) = put(&anon, b"x".to_vec()).await;
    assert_eq!(st, 401);
    let (st, _) = put(&worker, b"x".to_vec()).await;
    assert_eq!(st, 403, "workers do not upload through the user route");
    // Names that are not a sha256 are no file, never a path.
    for bad in [
        "/files/..%2F..%2Fcrpc.db",
        "/files/..%2Fjwt_secret",
        &path.to_uppercase().replace("/FILES/", "/files/"),
        "/files/tmp",
    ] {
        let (st, _, _) = fetch(&c.user, reqwest::Method::GET, bad, &[]).await;
        assert_eq!(st, 404, "{bad}");
    }

    // Tasks: a file the owner cannot read, an unknown one, a malformed one are 422 naming the
    // field; bob's task cannot take alice's file.
    let file = v["file"].clone();
    let unknown = json!({"$file": format!("sha256:{}", "0".repeat(64))});
    let got = bob
        .post("/user/submit_task", &file_task(file.clone()))
        .await;
    assert_error(&got, 422, "validation_failed");
    assert_eq!(got.1["error"]["details"]["field"], "args[0]", "{}", got.1);
    let got = c.user.post("/user/submit_task", &file_task(unknown)).await;
    assert_error(&got, 422, "validation_failed");
    let bad = json!({"$file": "sha256:../../etc/passwd"});
    let got = c
        .user
        .post(
            "/user/submit_batch",
            &json!({"tasks": [file_task(json!(1)), file_task(json!([bad]))]}),
        )
        .await;
    assert_error(&got, 422, "validation_failed");
    assert_eq!(
        got.1["error"]["details"]["field"], "tasks[1].args[0][0]",
        "{}",
        got.1
    );

    // Alice's task takes it: the worker holding its lease reads it, another worker does not.
    let (st, sub) = c.user.post("/user/submit_task", &file_task(file)).await;
    assert_eq!(st, 201, "{sub}");
    let (st, lease) = worker.get("/worker/request_task?wait=5").await;
    assert_eq!(st, 200, "{lease}");
    assert_eq!(lease["id"], sub["id"], "{lease}");
    let (st, _, got) = fetch(&worker, reqwest::Method::GET, &path, &[]).await;
    assert_eq!((st, sha(&got)), (200, hash.clone()));
    assert_eq!(
        fetch(&other_worker, reqwest::Method::GET, &path, &[])
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_and_stay_with_their_owners_on_sqlite() {
    let c = Cluster::start(&[]);
    exercise(&c).await;
    // A client that promises 10 MiB and hangs up after 1 MiB leaves nothing behind.
    abandon_upload(&c).await;
    // Nothing of the uploads was left behind, and it is nowhere but under the files directory.
    let files = c.server.data_dir().join("files");
    assert_eq!(objects(&files.join("tmp")), 0);
    assert_eq!(
        objects(&files.join("blobs")),
        1,
        "one copy of the same bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_and_stay_with_their_owners_on_postgres() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let c = Cluster::start_with_database(db.url(), &[]);
    exercise(&c).await;
}

/// Regular files under `dir`, recursively (0 when it does not exist).
fn objects(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => objects(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// The server flags [`limits_and_expiry`] expects.
const LIMITED: [&str; 6] = [
    "--max-file-mb",
    "1",
    "--file-quota-mb",
    "2",
    "--blob-ttl",
    "2s",
];

/// Size and quota limits, then expiry, against `c` started with [`LIMITED`].
async fn limits_and_expiry(c: &Cluster) {
    c.publish("testkit", None).await;
    let (st, v) = put(&c.user, bytes_of((1 << 20) + 1, 1)).await;
    assert_error(&(st, v), 413, "too_large");
    let kept = bytes_of(900 << 10, 2);
    let (st, a) = put(&c.user, kept.clone()).await;
    assert_eq!(st, 200, "{a}");
    let (st, b) = put(&c.user, bytes_of(900 << 10, 3)).await;
    assert_eq!(st, 200, "{b}");
    let got = put(&c.user, bytes_of(900 << 10, 4)).await;
    assert_error(&got, 429, "quota_exceeded");
    // Another owner has a quota of its own.
    let bob = c.user.with_token(&c.mint(Role::User, "bob"));
    assert_eq!(put(&bob, bytes_of(900 << 10, 4)).await.0, 200);
    // A task takes `a`; `b` is taken by none and expires.
    let (st, t) = c
        .user
        .post("/user/submit_task", &file_task(a["file"].clone()))
        .await;
    assert_eq!(st, 201, "{t}");
    let b_path = format!("/files/{}", b["sha256"].as_str().unwrap());
    let until = Instant::now() + Duration::from_secs(20);
    while fetch(&c.user, reqwest::Method::HEAD, &b_path, &[]).await.0 != 404 {
        assert!(Instant::now() < until, "b never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let a_path = format!("/files/{}", a["sha256"].as_str().unwrap());
    let (st, _, got) = fetch(&c.user, reqwest::Method::GET, &a_path, &[]).await;
    assert_eq!((st, got == kept), (200, true), "a task takes it: kept");
    // The expired copy's room is free again.
    assert_eq!(put(&c.user, bytes_of(900 << 10, 5)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_quota_limits_answer_413_and_429_and_untaken_files_expire() {
    let c = Cluster::start(&LIMITED);
    limits_and_expiry(&c).await;
    let files = c.server.data_dir().join("files");
    assert_eq!(
        objects(&files.join("tmp")),
        0,
        "refused uploads left nothing"
    );
    // `a` and the last upload: the expired copies' objects (b, bob's) are gone from disk (bob's
    // may go one reaper sweep after b's).
    let until = Instant::now() + Duration::from_secs(10);
    while objects(&files.join("blobs")) != 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(objects(&files.join("blobs")), 2);
}

/// A local S3-compatible server (moto's, from the test venv), killed on drop.
struct S3 {
    child: Child,
    url: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// `None` (test skipped) without moto in `CRPC_TEST_VENV`, unless `CI=true`.
    async fn start() -> Option<S3> {
        let venv = std::env::var("CRPC_TEST_VENV").ok().map(PathBuf::from);
        let bin = venv
            .map(|v| v.join("bin/moto_server"))
            .filter(|b| b.exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto_server missing from CRPC_TEST_VENV (./scripts/test installs it)"
            );
            eprintln!("skipped: no moto_server in CRPC_TEST_VENV");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s3 = S3 {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            // moto accepts unsigned requests: create the bucket with a plain PUT.
            match http.put(format!("{}/crpc-files", s3.url)).send().await {
                Ok(r) if r.status().is_success() => return Some(s3),
                _ => {}
            }
            assert!(Instant::now() < until, "moto_server never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_blob_store_passes_the_same_tests() {
    let Some(s3) = S3::start().await else {
        return;
    };
    let store = ["--blob-store", "s3://crpc-files/some/prefix"];
    let c = Cluster::start_with_env(&store, &s3.env());
    exercise(&c).await;
    assert!(
        !c.server.data_dir().join("files").exists(),
        "nothing on local disk"
    );
    let mut flags = store.to_vec();
    flags.extend(LIMITED);
    let c = Cluster::start_with_env(&flags, &s3.env());
    limits_and_expiry(&c).await;

    // Replicas on one PostgreSQL database and one bucket share files: uploaded through one,
    // read through the other.
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let flags = [
        "--database-url",
        db.url(),
        "--blob-store",
        "s3://crpc-files/shared",
    ];
    let c = Cluster::start_with_env(&flags, &s3.env());
    let other = c.replica();
    let data = bytes_of(6 << 20, 61);
    let (st, v) = put(&c.user, data.clone()).await;
    assert_eq!(st, 200, "{v}");
    let there = Api::new(&other.url, Some(c.user_token.clone()));
    let path = format!("/files/{}", v["sha256"].as_str().unwrap());
    let (st, _, got) = fetch(&there, reqwest::Method::GET, &path, &[]).await;
    assert_eq!((st, got == data), (200, true));
    // And a processor takes it in and gives a copy back through the bucket.
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let id = c
        .submit(
            json!({"package": "nativekit", "function": "copy_file", "args": [v["file"], "c.bin"]}),
        )
        .await;
    let r = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(r["answer"]["$file"], v["file"]["$file"], "{r}; {}", p.log());
}

/// `crpc` with the cluster's server and a token, in a home of its own.
fn crpc(c: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(crpc_tests::sibling_binary("crpc"))
        .args(args)
        .env("CRPC_SERVER", &c.server.url)
        .env("CRPC_TOKEN", token)
        .env("HOME", home.path())
        .output()
        .expect("crpc runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crpc_put_and_get_stream_files_and_check_them() {
    let c = Cluster::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let data = bytes_of(5 << 20, 11);
    std::fs::write(&input, &data).unwrap();
    let out = crpc(&c, &c.user_token, &["put", input.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_str(text.trim()).unwrap();
    let name = format!("sha256:{}", sha(&data));
    assert_eq!(value, json!({"$file": name}));
    let copy = dir.path().join("copy.bin");
    let out = crpc(
        &c,
        &c.user_token,
        &["get", &name, "-o", copy.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&copy).unwrap() == data);
    // Bob cannot have it, and a failed get writes nothing.
    let bob = c.mint(Role::User, "bob");
    let lost = dir.path().join("lost.bin");
    let out = crpc(&c, &bob, &["get", &name, "-o", lost.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no file"),
        "{out:?}"
    );
    assert!(!lost.exists());
    let out = crpc(&c, &c.user_token, &["get", "../../etc/passwd"]);
    assert!(!out.status.success());
    let out = crpc(&c, &c.user_token, &["put", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "a directory is not uploaded");
}

/// Sends half a PUT /files and hangs up; waits until the server has seen it go.
async fn abandon_upload(c: &Cluster) {
    use tokio::io::AsyncWriteExt;
    let addr = c.server.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /files HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        c.user_token,
        10 << 20
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&bytes_of(1 << 20, 99)).await.unwrap();
    sock.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(sock);
    let tmp = c.server.data_dir().join("files").join("tmp");
    let until = Instant::now() + Duration::from_secs(10);
    while objects(&tmp) > 0 {
        assert!(
            Instant::now() < until,
            "the abandoned upload stayed in {tmp:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_task_reads_its_file_through_a_read_only_local_path() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let data = bytes_of(24 << 20, 21);
    let (st, v) = put(&c.user, data.clone()).await;
    assert_eq!(st, 200, "{v}");
    let task = json!({"package": "nativekit", "function": "file_digest", "args": [v["file"]]});
    let ids = c
        .user
        .submit_batch(vec![task.clone(), task.clone(), task])
        .await;
    for id in &ids {
        let r = c.wait(id, Duration::from_secs(60)).await;
        assert_eq!(r["state"], "succeeded", "{r}; {}", p.log());
        assert_eq!(r["answer"]["sha256"], sha(&data), "{r}");
        assert_eq!(r["answer"]["size"], data.len() as u64, "{r}");
        assert_eq!(
            r["answer"]["writable"], false,
            "the program may not change it: {r}"
        );
        assert_eq!(
            r["answer"]["listed"],
            Value::Null,
            "nor list other tasks' files: {r}"
        );
    }
    // Three tasks, one download: the processor keeps files by hash.
    let log = p.log();
    assert_eq!(log.matches("downloaded a task file").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_task_returns_a_file_its_owner_downloads() {
    let c = Cluster::start(&[]);
    c.publish("wordcount", None).await;
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let text = "the cat and the hat\nthe end\n".repeat(50_000);
    let (st, v) = put(&c.user, text.clone().into_bytes()).await;
    assert_eq!(st, 200, "{v}");
    let id = c
        .submit(json!({"package": "wordcount", "function": "count_file", "args": [v["file"]]}))
        .await;
    let r = c.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(r["state"], "succeeded", "{r}; {}", p.log());
    let f = &r["answer"];
    assert_eq!(f["name"], "counts.csv", "{r}");
    let name = f["$file"].as_str().unwrap();
    let hash = name.strip_prefix("sha256:").unwrap();
    let (st, csv) = download(&c.user, hash).await;
    assert_eq!(st, 200);
    assert_eq!(f["size"], csv.len() as u64);
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(
        csv.lines().take(3).collect::<Vec<_>>(),
        ["word,count", "the,150000", "cat,50000"],
        "{csv}"
    );
    // The owner's, not anyone's.
    let bob = c.user.with_token(&c.mint(Role::User, "bob"));
    assert_eq!(download(&bob, hash).await.0, 404);
    // The task is finished: no worker token may add outputs to it now.
    let worker = c.user.with_token(&c.worker_token);
    let late = worker
        .put_bytes(
            &format!("/worker/files?task={id}&lease_epoch=1"),
            b"x".to_vec(),
            &[],
        )
        .await;
    assert_error(&late, 409, "not_lease_holder");

    // Outputs a hostile program names outside its output directory are refused, never read.
    for kind in ["escape", "absolute", "link", "dirlink", "missing", "fifo"] {
        let id = c
            .submit(json!({"package": "nativekit", "function": "hostile_output", "args": [kind]}))
            .await;
        let r = c.wait(&id, Duration::from_secs(60)).await;
        assert_eq!(r["state"], "failed", "{kind}: {r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with("output `"), "{kind}: {r}");
    }
    let (_, files) = c.user.get("/user/tasks?limit=100").await;
    assert!(
        !files.to_string().contains("root:"),
        "no system file became an answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_answer_flows_to_a_dependent_task_and_a_named_hash_grants_nothing() {
    let c = Cluster::start(&[]);
    c.publish("wordcount", None).await;
    c.publish("nativekit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let (_, v) = put(&c.user, b"b a b\n".to_vec()).await;
    // count_file's CSV answer goes, by reference, into file_digest.
    let graph = vec![
        json!({"package": "wordcount", "function": "count_file", "args": [v["file"]]}),
        json!({"package": "nativekit", "function": "file_digest", "args": [{"$ref": "#0"}]}),
    ];
    let ids = c.user.submit_batch(graph).await;
    let csv = c.wait(&ids[0], Duration::from_secs(120)).await;
    let digest = c.wait(&ids[1], Duration::from_secs(60)).await;
    assert_eq!(digest["state"], "succeeded", "{digest}; {}", p.log());
    let name = csv["answer"]["$file"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{}", digest["answer"]["sha256"].as_str().unwrap()),
        name
    );
    assert_eq!(digest["answer"]["size"], csv["answer"]["size"]);

    // Bob's file, named by its hash in an answer: the dependent's worker may not read it.
    let bob = c.user.with_token(&c.mint(Role::User, "bob"));
    let (_, secret) = put(&bob, b"bob's secret".to_vec()).await;
    let hash = secret["sha256"].as_str().unwrap();
    let graph = vec![
        json!({"package": "nativekit", "function": "as_file", "args": [hash]}),
        json!({"package": "nativekit", "function": "file_digest", "args": [{"$ref": "#0"}]}),
    ];
    let ids = c.user.submit_batch(graph).await;
    let r = c.wait(&ids[1], Duration::from_secs(60)).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not readable"),
        "{r}"
    );
    let (st, _) = download(&c.user, hash).await;
    assert_eq!(st, 404, "alice still cannot read bob's file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_goes_through_a_native_and_a_wasm_task_and_back() {
    let c = Cluster::start(&[]);
    c.publish("nativekit", None).await;
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2"]);
    let data = bytes_of(100 << 20, 100);
    let hash = sha(&data);
    let (st, v) = put(&c.user, data).await;
    assert_eq!(st, 200, "{v}");
    let tasks = vec![
        json!({"package": "nativekit", "function": "copy_file", "args": [v["file"], "copy.bin"]}),
        json!({"package": "testkit", "function": "copy_file", "args": [v["file"], "out/copy.bin"]}),
    ];
    for id in c.user.submit_batch(tasks).await {
        let r = c.wait(&id, Duration::from_secs(180)).await;
        assert_eq!(r["state"], "succeeded", "{r}; {}", p.log());
        let f = &r["answer"];
        assert_eq!(
            f["$file"],
            format!("sha256:{hash}"),
            "the copy is the same bytes: {r}"
        );
        assert_eq!(
            (f["name"].as_str(), f["size"].as_u64()),
            (Some("copy.bin"), Some(100 << 20))
        );
        // Downloaded back whole, checked here too.
        let (st, got) = download(&c.user, &hash).await;
        assert_eq!((st, sha(&got)), (200, hash.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_task_opens_only_its_own_files_and_old_components_still_run() {
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    c.publish("hello-v1", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let bob = c.user.with_token(&c.mint(Role::User, "bob"));
    let (_, secret) = put(&bob, b"bob's".to_vec()).await;
    let hash = secret["sha256"].as_str().unwrap();
    for (name, created) in [("../escape", false), ("/etc/x", false), ("ok.txt", true)] {
        let id = c
            .submit(json!({"package": "testkit", "function": "probe_files", "args": [hash, name]}))
            .await;
        let r = c.wait(&id, Duration::from_secs(60)).await;
        assert_eq!(r["state"], "succeeded", "{r}; {}", p.log());
        let said = &r["answer"];
        assert!(
            said[0]
                .as_str()
                .unwrap()
                .contains("not a file of this task"),
            "bob's file stays closed: {r}"
        );
        assert_eq!(
            said[1].as_str().unwrap().contains("$output"),
            created,
            "{name}: {r}"
        );
    }
    // A component built for crpc:task@0.1.0 (before `files`) runs unchanged.
    let id = c
        .submit(json!({"package": "hello-v1", "function": "hello", "args": ["crpc"]}))
        .await;
    let r = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(
        r["answer"],
        "hello, crpc, from crpc:task@0.1.0",
        "{r}; {}",
        p.log()
    );
}
