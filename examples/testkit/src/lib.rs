//! Functions that exercise the processor's sandbox and hot path: the test suite and the
//! benchmarks use them. Not an example to copy.
use std::sync::Mutex;

use serde_json::Value;

/// The init configuration this instance started with.
static INIT: Mutex<Option<Value>> = Mutex::new(None);

fn remember_init(config: String) -> Result<(), String> {
    let v: Value = serde_json::from_str(&config).map_err(|e| format!("init is not JSON: {e}"))?;
    *INIT.lock().map_err(|e| e.to_string())? = Some(v);
    Ok(())
}

/// The broadcast payloads this instance received, oldest first (the last 100).
static UPDATES: Mutex<Vec<Value>> = Mutex::new(Vec::new());

fn remember_update(payload: String) {
    let v = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    if let Ok(mut u) = UPDATES.lock() {
        if u.len() == 100 {
            u.remove(0);
        }
        u.push(v);
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

crpc_guest::export! {
    init = remember_init;
    update = remember_update;

    /// The init configuration the instance received (the manifest's `[init]`, with the
    /// processor's `--init` keys over it).
    fn init_config() -> crpc_guest::Result<Value> {
        Ok(INIT.lock().map_err(|e| e.to_string())?.clone().unwrap_or(Value::Null))
    }

    /// The broadcast payloads this instance received (`POST /admin/broadcast`), oldest first.
    fn updates() -> crpc_guest::Result<Vec<Value>> {
        Ok(UPDATES.lock().map_err(|e| e.to_string())?.clone())
    }

    /// `a + b` (Fibonacci as a task graph).
    fn add(a: i64, b: i64) -> crpc_guest::Result<i64> {
        a.checked_add(b).ok_or_else(|| "the sum overflows".into())
    }

    /// Returns its argument.
    fn echo(value: Value) -> crpc_guest::Result<Value> {
        Ok(value)
    }

    /// Does nothing (the cost of a call).
    fn noop() -> crpc_guest::Result<()> {
        Ok(())
    }

    /// Spins for `ms` milliseconds of wall time (a task of known length).
    fn busy_ms(ms: u64) -> crpc_guest::Result<u64> {
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < ms as u128 {
            std::hint::spin_loop();
        }
        Ok(ms)
    }

    /// Sleeps `ms` milliseconds (a task of known length that leaves the CPU to others).
    fn sleep_ms(ms: u64) -> crpc_guest::Result<u64> {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(ms)
    }

    /// Sleeps `ms` and says when it ran: `[start, end]`, wall-clock ms since the Unix epoch
    /// (the tasks themselves record how many ran at once).
    fn span(ms: u64) -> crpc_guest::Result<[u64; 2]> {
        let start = wall_ms();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok([start, wall_ms()])
    }

    /// `span`, under the manifest's `max_concurrent = 2`.
    fn span_capped(ms: u64) -> crpc_guest::Result<[u64; 2]> {
        span(ms)
    }

    /// `span`, under the manifest's `rate_per_s = 20`.
    fn span_rated(ms: u64) -> crpc_guest::Result<[u64; 2]> {
        span(ms)
    }

    /// Never returns: the processor's timeout must stop it.
    fn spin() -> crpc_guest::Result<()> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    /// Allocates and touches `mb` MiB: the processor's memory cap must stop it.
    fn alloc_mb(mb: u64) -> crpc_guest::Result<u64> {
        let mut v = vec![0u8; (mb as usize) << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        Ok(std::hint::black_box(v).len() as u64 >> 20)
    }

    /// Reads a file: with no preopened directories this must be denied.
    fn read_file(path: String) -> crpc_guest::Result<String> {
        Ok(std::fs::read_to_string(path)?)
    }

    /// Reports progress in `steps` steps, `ms` apart.
    fn progress_steps(steps: u32, ms: u64) -> crpc_guest::Result<u32> {
        for i in 1..=steps {
            busy_ms(ms)?;
            crpc_guest::progress(100.0 * i as f64 / steps as f64);
        }
        Ok(steps)
    }

    /// Copies an input file (a `{"$file": …}` argument) to output `name`, 1 MiB at a time:
    /// the file value of the copy.
    fn copy_file(file: Value, name: String) -> crpc_guest::Result<Value> {
        let mut input = crpc_guest::files::Input::open(&file)?;
        let mut out = crpc_guest::files::Output::create(&name)?;
        std::io::copy(&mut input, &mut out)?;
        Ok(out.value())
    }

    /// Opens a file by a hash it was given (only the task's own inputs open) and creates an
    /// output named `name` (only plain relative names are created): what the host said.
    fn probe_files(sha256: String, name: String) -> crpc_guest::Result<Vec<String>> {
        let opened = crpc_guest::files::Input::open_sha256(&sha256).map(|i| i.size());
        let created = crpc_guest::files::Output::create(&name).map(|o| o.value());
        let say = |r: Result<String, crpc_guest::Error>| r.unwrap_or_else(|e| e.message);
        Ok(vec![
            say(opened.map(|n| n.to_string())),
            say(created.map(|v| v.to_string())),
        ])
    }

    /// Compiles `wgsl`, binds one zeroed buffer of `bytes` at binding 0, runs `entry` over
    /// `groups` workgroups and answers the buffer's first 16 u32s (fewer when it is smaller).
    /// Every host error fails the task (fatal) with the host's message.
    fn gpu_run(wgsl: String, entry: String, bytes: u64, groups: [u32; 3]) -> crpc_guest::Result<Vec<u32>> {
        use crpc_guest::compute::{Buffer, Module};
        let module = Module::compile(&wgsl)?;
        let buffer = Buffer::new(bytes)?;
        module.dispatch(&entry, &[&buffer], groups)?;
        let head = buffer.read(0, bytes.min(64))?;
        Ok(head.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// What the host answers to out-of-bounds and unknown-handle calls (each an error message,
    /// or "ok" where it was accepted), with the adapter's name first.
    fn gpu_probe() -> crpc_guest::Result<Vec<String>> {
        use crpc_guest::bindings::crpc::task::gpu_compute as gc;
        let say = |r: Result<String, String>| r.unwrap_or_else(|e| e);
        let ok = |r: Result<(), String>| say(r.map(|()| "ok".to_string()));
        let b = gc::create_buffer(64)?;
        let m = gc::compile("@compute @workgroup_size(1) fn main() {}")?;
        Ok(vec![
            say(gc::adapter().map(|a| a.name)),
            ok(gc::create_buffer(6).map(drop)),
            ok(gc::create_buffer(0).map(drop)),
            ok(gc::write_buffer(b, 60, &[0; 8])),
            ok(gc::write_buffer(b, u64::MAX - 3, &[0; 4])),
            ok(gc::read_buffer(b, 0, 68).map(drop)),
            ok(gc::read_buffer(b + 1000, 0, 4).map(drop)),
            ok(gc::destroy_buffer(b + 1000)),
            ok(gc::dispatch(b, "main", &[], 1, 1, 1)),
            ok(gc::dispatch(m, "nope", &[], 1, 1, 1)),
            ok(gc::dispatch(m, "main", &[], u32::MAX, 1, 1)),
            ok(gc::dispatch(m, "main", &[gc::Binding { index: 0, buffer: b }], 1, 1, 1)),
            ok(gc::dispatch(m, "main", &[], 1, 1, 1)),
        ])
    }

    /// Fails with the given kind ("retryable" or anything else for fatal).
    fn fail(kind: String, message: String) -> crpc_guest::Result<()> {
        Err(if kind == "retryable" {
            crpc_guest::Error::retryable(message)
        } else {
            crpc_guest::Error::fatal(message)
        })
    }
}
