//! GPU compute from WASM packages (`gpu-compute`, crpc:task@0.3.0) on a real processor. Without
//! a GPU the processor runs with `--gpu-software` on Mesa's software Vulkan driver (lavapipe),
//! which `./scripts/test` installs.
use std::time::{Duration, Instant};

use crpc_tests::{Cluster, Worker};
use serde_json::{json, Value};

/// Whether Mesa's software Vulkan driver is here; under `CI=true` it must be.
fn lavapipe() -> bool {
    let found = ["lvp_icd.x86_64.json", "lvp_icd.json"].iter().any(|f| {
        std::path::Path::new("/usr/share/vulkan/icd.d")
            .join(f)
            .exists()
    });
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mesa-vulkan-drivers is missing (scripts/test installs it)"
        );
        eprintln!("skipped: no software Vulkan driver (apt-get install mesa-vulkan-drivers)");
    }
    found
}

/// `examples/gpu-matmul`'s matrices.
mod matrices {
    include!("../../examples/gpu-matmul/src/matrices.rs");
}

/// The sum of the product of `examples/gpu-matmul`'s matrices, computed here.
fn matmul_checksum(n: usize, seed: u64) -> f64 {
    let (a, b) = (matrices::fill(seed, 0, n), matrices::fill(seed, 1, n));
    // sum(A·B) = Σ_k (Σ_i A[i][k]) (Σ_j B[k][j])
    (0..n)
        .map(|k| {
            let col: f64 = (0..n).map(|i| a[i * n + k] as f64).sum();
            let row: f64 = b[k * n..(k + 1) * n].iter().map(|&x| x as f64).sum();
            col * row
        })
        .sum()
}

/// A processor whose software Vulkan driver uses one thread: a dispatch cut short runs to its
/// end on the device, and must not take both cores from the tests running beside it.
fn gpu_processor(c: &Cluster, extra: &[&str]) -> Worker {
    c.processor_with_env(extra, &[("LP_NUM_THREADS", "1")])
}

fn gpu_run(wgsl: &str, bytes: u64, timeout_s: Option<u64>) -> Value {
    gpu_run_over(wgsl, bytes, 1, timeout_s)
}

fn gpu_run_over(wgsl: &str, bytes: u64, groups: u32, timeout_s: Option<u64>) -> Value {
    let mut task = json!({"package": "testkit", "function": "gpu_run",
                          "args": [wgsl, "main", bytes, [groups, 1, 1]]});
    if let Some(t) = timeout_s {
        task["timeout_s"] = json!(t);
    }
    task
}

const DOUBLE: &str = "@group(0) @binding(0) var<storage, read_write> v: array<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    v[id.x] = 2u * id.x + 1u;
}";

/// 60,000 xorshift steps per invocation, 64 invocations per workgroup (lavapipe ends any loop
/// after 65,535 iterations, so long work takes many workgroups); the bound is read from the
/// zeroed buffer too, so the compiler cannot fold it.
const SPIN: &str = "@group(0) @binding(0) var<storage, read_write> v: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    var x = id.x + 1u;
    let n = 60000u + v[63];
    for (var i = 0u; i < n; i++) { x ^= x << 13u; x ^= x >> 17u; x ^= x << 5u; }
    v[id.x % 16u] = x;
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_matmul_and_pi_answer_on_the_software_adapter() {
    if !lavapipe() {
        return;
    }
    let c = Cluster::start(&[]);
    c.publish("gpu-matmul", None).await;
    c.publish("monte-carlo-pi", None).await;
    let p = gpu_processor(&c, &["--cpu-slots", "1", "--gpu-software"]);
    let id = c
        .submit(json!({"package": "gpu-matmul", "function": "matmul", "args": [256, 42]}))
        .await;
    let v = c.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
    let want = matmul_checksum(256, 42);
    assert_eq!(v["answer"]["checksum"].as_f64(), Some(want), "{v}");
    assert!(v["answer"]["gflops"].as_f64().unwrap() > 0.0, "{v}");
    assert!(p.log().contains("GPU compute: CPU slots on"), "{}", p.log());
    println!("matmul(256, 42) = {} (want {want})", v["answer"]);

    let id = c
        .submit(json!({"package": "monte-carlo-pi", "function": "estimate_pi_gpu", "args": [20_000_000]}))
        .await;
    let v = c.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
    let pi = v["answer"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.005, "{pi}");
    println!("estimate_pi_gpu(2e7) = {pi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_mistakes_fail_the_task_and_the_processor_keeps_serving() {
    if !lavapipe() {
        return;
    }
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let mut p = c.processor(&[
        "--cpu-slots",
        "1",
        "--gpu-software",
        "--gpu-memory-mb",
        "16",
    ]);
    let fails = |v: &Value, text: &str| {
        assert_eq!(v["state"], "failed", "{v}");
        assert_eq!(v["error"]["kind"], "fatal", "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(text), "wanted {text:?} in {msg:?}");
    };
    let id = c.submit(gpu_run("fn main( {", 64, None)).await;
    let v = c.wait(&id, Duration::from_secs(120)).await;
    fails(&v, "WGSL");
    println!("syntax error: {}", v["error"]["message"]);
    let id = c.submit(gpu_run(DOUBLE, 32 << 20, None)).await;
    let v = c.wait(&id, Duration::from_secs(60)).await;
    fails(&v, "--gpu-memory-mb");
    // The same slot computes right after both.
    let id = c.submit(gpu_run(DOUBLE, 64, None)).await;
    let v = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "succeeded", "{v}; log: {}", p.log());
    assert_eq!(
        v["answer"],
        json!((0..16).map(|i| 2 * i + 1).collect::<Vec<u32>>())
    );
    // Out of bounds, unknown handles, bad entry points and counts: each an error to the guest.
    let id = c
        .submit(json!({"package": "testkit", "function": "gpu_probe"}))
        .await;
    let v = c.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "succeeded", "{v}");
    let said: Vec<&str> = v["answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    println!("probe: {said:#?}");
    assert!(
        said[0].contains("llvmpipe") || said[0].contains("lavapipe"),
        "{said:?}"
    );
    for (i, s) in said.iter().enumerate().skip(1) {
        let last = i == said.len() - 1;
        assert_eq!(*s == "ok", last, "probe {i}: {s}");
    }
    assert!(p.try_wait().is_none(), "the processor exited: {}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dispatch_stops_at_the_deadline_and_on_cancel() {
    if !lavapipe() {
        return;
    }
    let c = Cluster::start(&[]);
    c.publish("testkit", None).await;
    let mut p = gpu_processor(&c, &["--cpu-slots", "1", "--gpu-software"]);
    // Warm: the package installed, the adapter's first pipeline made.
    let id = c.submit(gpu_run(DOUBLE, 64, None)).await;
    assert_eq!(
        c.wait(&id, Duration::from_secs(120)).await["state"],
        "succeeded"
    );

    // A dispatch of about 6 s on this machine (measured with a shorter one first).
    let id = c.submit(gpu_run_over(SPIN, 256, 200, None)).await;
    let (short, v) = run_until_done(&c, &id).await;
    assert_eq!(v["state"], "succeeded", "{v}");
    let groups = (200.0 * 6.0 / short.as_secs_f64().max(0.01)).min(65_535.0) as u32;
    println!("200 workgroups took {short:?}: the long dispatch has {groups}");
    let id = c.submit(gpu_run_over(SPIN, 256, groups, Some(2))).await;
    let (ran, v) = run_until_done(&c, &id).await;
    assert_eq!(v["state"], "failed", "after {ran:?}: {v}; log: {}", p.log());
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    assert!(
        ran < Duration::from_millis(3000),
        "timeout_s 2 ended after {ran:?}"
    );
    println!(
        "a 2 s deadline during a dispatch: failed after {ran:?}: {}",
        v["error"]
    );

    // The slot is free again at once (work that needs no GPU runs).
    let t = Instant::now();
    let id = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [1]}))
        .await;
    assert_eq!(c.wait(&id, Duration::from_secs(10)).await["answer"], 1);
    println!("next task answered {:?} later", t.elapsed());

    let id = c.submit(gpu_run_over(SPIN, 256, groups, Some(600))).await;
    wait_leased(&c, &id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, _) = c
        .user
        .post(&format!("/user/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200);
    // The next task waits behind it on the 1-slot processor.
    let id2 = c
        .submit(json!({"package": "testkit", "function": "echo", "args": [2]}))
        .await;
    // The cancel reaches the processor with its next heartbeat (every third of the lease);
    // from then on the slot must be free within a second: measured by the processor's own
    // clock, from the line where it hears the cancel to the line where it starts the next task.
    assert_eq!(c.wait(&id2, Duration::from_secs(60)).await["answer"], 2);
    let log = p.log();
    let at = |needle: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log: {log}"));
        let stamp = line.split_whitespace().next().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("{e}: not a timestamped line: {line}"))
    };
    let heard = at(&format!("cancelled by its owner: stopping it task={id}"));
    let next = at(&format!("running task={id2}"));
    let freed = (next - heard).to_std().unwrap_or_default();
    println!("the processor heard the cancel during a dispatch; it started the next task {freed:?} later");
    assert!(
        freed < Duration::from_secs(1),
        "slot freed after {freed:?}; log: {log}"
    );
    assert!(p.try_wait().is_none(), "the processor exited: {}", p.log());
}

/// Polls until the task is leased; when that was seen.
async fn wait_leased(c: &Cluster, id: &str) -> Instant {
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.answer(id).await;
        if v["state"] == "leased" {
            return Instant::now();
        }
        assert!(Instant::now() < limit, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// From the moment it is seen leased to the moment it is seen finished.
async fn run_until_done(c: &Cluster, id: &str) -> (Duration, Value) {
    let start = wait_leased(c, id).await;
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.answer(id).await;
        if matches!(
            v["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return (start.elapsed(), v);
        }
        assert!(Instant::now() < limit, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_adapter_gpu_work_fails_clearly() {
    let c = Cluster::start(&[]);
    c.publish("gpu-matmul", None).await;
    let p = c.processor(&["--cpu-slots", "1"]);
    let id = c
        .submit(json!({"package": "gpu-matmul", "function": "matmul", "args": [16, 1]}))
        .await;
    let v = c.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "fatal", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("--gpu-software"), "{msg}");
    assert!(p.log().contains("GPU compute: no GPU slots"), "{}", p.log());
}
