//! WASM packages: wasmtime 48 components of the world `crpc:task` in `wit/`: 0.3.0 (with
//! `gpu-compute`), and 0.2.0 (with `files`) and 0.1.0 for components built before them (the
//! same exports, fewer imports: the linker provides every version's imports, and the exports are
//! called through 0.3.0's bindings, which type-check against any of them).
//!
//! One engine per processor with the pooling allocator and epoch interruption (a ticker thread
//! bumps the epoch every 10 ms; a per-store callback stops the guest at its deadline or when the
//! task is cancelled). Components are precompiled once per version to a `.cwasm` in the cache and
//! turned into an `InstancePre` once per process; each slot keeps one live instance (`init` once,
//! many `run`s). A trap, timeout or memory overrun discards that instance.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::gpu::Gpus;
use crate::handler::{Progress, TaskFailure};

mod bindings {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit/0.3.0",
    });
}

/// The imports of `crpc:task@0.2.0`.
mod v2 {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit/0.2.0",
    });
}

/// The imports of `crpc:task@0.1.0`.
mod v1 {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit/0.1.0",
    });
}

use super::wasm_files::TaskFiles;
use crate::compute::{Compute, Stop, TaskGpu};
use bindings::crpc::task::{files, gpu, gpu_compute, host};
use bindings::{ErrorKind, Task, TaskPre};

/// Where the precompiled component lives inside an installed package.
pub const CWASM_FILE: &str = ".crpc-cache/component.cwasm";

/// Why the epoch callback stopped the guest.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interrupt {
    Timeout,
    Cancelled,
}

/// Per-store state: WASI (no preopened directories, no network, stderr kept for error
/// messages), limits, and what the host functions report to.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    gpus: Arc<Gpus>,
    slot_gpus: Vec<u32>,
    stderr: TailPipe,
    task: Option<Uuid>,
    progress: Option<Arc<Progress>>,
    cancel: Option<CancellationToken>,
    deadline: Option<Instant>,
    interrupted: Option<Interrupt>,
    /// The running task's files (`files` interface).
    files: Option<TaskFiles>,
    /// The processor's compute adapters (`gpu-compute` interface).
    compute: Arc<Compute>,
    /// The running task's GPU handles, made at its first `gpu-compute` call.
    gpu_task: Option<TaskGpu>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    fn progress(&mut self, pct: f64) {
        if let Some(p) = &self.progress {
            p.set(pct);
        }
    }

    fn log(&mut self, level: host::Level, message: String) {
        let task = self.task.map(|t| t.to_string()).unwrap_or_default();
        let message: String = message.chars().take(4096).collect();
        match level {
            host::Level::Trace => tracing::trace!(task, "guest: {message}"),
            host::Level::Debug => tracing::debug!(task, "guest: {message}"),
            host::Level::Info => tracing::info!(task, "guest: {message}"),
            host::Level::Warn => tracing::warn!(task, "guest: {message}"),
            host::Level::Error => tracing::error!(task, "guest: {message}"),
        }
    }
}

impl HostState {
    fn task_files(&mut self) -> Result<&mut TaskFiles, String> {
        self.files
            .as_mut()
            .ok_or_else(|| "files are only open while a task runs".to_string())
    }
}

impl files::Host for HostState {
    fn open(&mut self, sha256: String) -> Result<u32, String> {
        self.task_files()?.open(&sha256)
    }

    fn size(&mut self, handle: u32) -> Result<u64, String> {
        self.task_files()?.size(handle)
    }

    fn read(&mut self, handle: u32, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        self.task_files()?.read(handle, offset, len)
    }

    fn create(&mut self, name: String) -> Result<u32, String> {
        self.task_files()?.create(&name)
    }

    fn write(&mut self, handle: u32, bytes: Vec<u8>) -> Result<(), String> {
        self.task_files()?.write(handle, &bytes)
    }
}

/// A GPU as either world's `device` record (the same fields in both).
macro_rules! device {
    ($ty:path, $d:expr) => {{
        let d = $d;
        $ty {
            index: d.index,
            name: d.name,
            uuid: d.uuid,
            memory_total_bytes: d.memory_total_bytes,
            memory_used_bytes: d.memory_used_bytes,
            utilization_pct: d.utilization_pct,
            temperature_c: d.temperature_c,
        }
    }};
}

/// An older world's `host` and `gpu` imports, served by the newest ones (the same functions).
macro_rules! older_world {
    ($w:ident) => {
        impl $w::crpc::task::host::Host for HostState {
            fn progress(&mut self, pct: f64) {
                host::Host::progress(self, pct)
            }

            fn log(&mut self, level: $w::crpc::task::host::Level, message: String) {
                use $w::crpc::task::host::Level as L;
                let level = match level {
                    L::Trace => host::Level::Trace,
                    L::Debug => host::Level::Debug,
                    L::Info => host::Level::Info,
                    L::Warn => host::Level::Warn,
                    L::Error => host::Level::Error,
                };
                host::Host::log(self, level, message)
            }
        }

        impl $w::crpc::task::gpu::Host for HostState {
            fn devices(&mut self) -> Vec<$w::crpc::task::gpu::Device> {
                let slot = &self.slot_gpus;
                let found = self.gpus.devices(slot).into_iter();
                found
                    .map(|d| device!($w::crpc::task::gpu::Device, d))
                    .collect()
            }
        }
    };
}

older_world!(v1);
older_world!(v2);

impl v2::crpc::task::files::Host for HostState {
    fn open(&mut self, sha256: String) -> Result<u32, String> {
        files::Host::open(self, sha256)
    }

    fn size(&mut self, handle: u32) -> Result<u64, String> {
        files::Host::size(self, handle)
    }

    fn read(&mut self, handle: u32, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        files::Host::read(self, handle, offset, len)
    }

    fn create(&mut self, name: String) -> Result<u32, String> {
        files::Host::create(self, name)
    }

    fn write(&mut self, handle: u32, bytes: Vec<u8>) -> Result<(), String> {
        files::Host::write(self, handle, bytes)
    }
}

impl gpu::Host for HostState {
    fn devices(&mut self) -> Vec<gpu::Device> {
        let slot = &self.slot_gpus;
        let found = self.gpus.devices(slot).into_iter();
        found.map(|d| device!(gpu::Device, d)).collect()
    }
}

impl HostState {
    /// Runs `f` on the running task's GPU handles (made at its first call); a wait it stopped
    /// at the deadline or on cancel marks the run interrupted.
    fn on_gpu<T>(
        &mut self,
        f: impl FnOnce(&mut TaskGpu) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.task.is_none() {
            return Err("GPU work is only possible while a task runs".into());
        }
        let (compute, slot) = (&self.compute, &self.slot_gpus);
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        let cancel = self.cancel.clone().unwrap_or_default();
        let g = self.gpu_task.get_or_insert_with(|| {
            TaskGpu::new(compute.for_slot(slot), compute.cap(), deadline, cancel)
        });
        let out = f(g);
        match g.stopped {
            Some(Stop::Timeout) => self.interrupted = Some(Interrupt::Timeout),
            Some(Stop::Cancelled) => self.interrupted = Some(Interrupt::Cancelled),
            None => {}
        }
        out
    }
}

impl gpu_compute::Host for HostState {
    fn adapter(&mut self) -> Result<gpu_compute::AdapterInfo, String> {
        let a = self.on_gpu(|g| g.adapter())?;
        Ok(gpu_compute::AdapterInfo {
            name: a.name,
            backend: a.backend,
            device_type: a.device_type,
            memory_cap_bytes: a.memory_cap_bytes,
        })
    }

    fn create_buffer(&mut self, size: u64) -> Result<u32, String> {
        self.on_gpu(|g| g.create_buffer(size))
    }

    fn write_buffer(&mut self, buffer: u32, offset: u64, data: Vec<u8>) -> Result<(), String> {
        self.on_gpu(|g| g.write_buffer(buffer, offset, &data))
    }

    fn read_buffer(&mut self, buffer: u32, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        self.on_gpu(|g| g.read_buffer(buffer, offset, len.into()))
    }

    fn destroy_buffer(&mut self, buffer: u32) -> Result<(), String> {
        self.on_gpu(|g| g.destroy_buffer(buffer))
    }

    fn compile(&mut self, wgsl: String) -> Result<u32, String> {
        self.on_gpu(|g| g.compile(&wgsl))
    }

    fn dispatch(
        &mut self,
        module: u32,
        entry_point: String,
        bindings: Vec<gpu_compute::Binding>,
        x: u32,
        y: u32,
        z: u32,
    ) -> Result<(), String> {
        let bindings: Vec<crate::compute::Binding> = bindings
            .into_iter()
            .map(|b| crate::compute::Binding {
                index: b.index,
                buffer: b.buffer,
            })
            .collect();
        self.on_gpu(|g| g.dispatch(module, &entry_point, &bindings, [x, y, z]))
    }
}

/// The engine, the linker and the components loaded so far.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    memory_bytes: usize,
    gpus: Arc<Gpus>,
    compute: Arc<Compute>,
    loaded: Mutex<HashMap<PathBuf, TaskPre<HostState>>>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("memory_bytes", &self.memory_bytes)
            .finish()
    }
}

const EPOCH_TICK: Duration = Duration::from_millis(10);

impl WasmRuntime {
    /// An engine for `slots` concurrent instances capped at `memory_mb` each, computing on the
    /// adapters of `compute`.
    pub fn new(
        memory_mb: u64,
        slots: usize,
        gpus: Arc<Gpus>,
        compute: Arc<Compute>,
    ) -> anyhow::Result<WasmRuntime> {
        let memory_bytes = (memory_mb as usize) << 20;
        let instances = (slots as u32) * 2 + 8;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 16)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(memory_bytes.max(1 << 20));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(pool);
        let engine = Engine::new(&config).map_err(wt)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("crpc-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wt)?;
        Task::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(wt)?;
        v2::Task::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(wt)?;
        v1::Task::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(wt)?;
        Ok(WasmRuntime {
            engine,
            linker,
            memory_bytes,
            gpus,
            compute,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles the package's component to `.crpc-cache/component.cwasm` (once per version,
    /// at install). Blocking: call from a blocking thread.
    pub fn precompile(&self, dir: &Path, component: &str) -> Result<(), TaskFailure> {
        let src = dir.join(component);
        let bytes = std::fs::read(&src).map_err(|e| {
            TaskFailure::fatal(format!("cannot read the component {}: {e}", src.display()))
        })?;
        let started = Instant::now();
        let compiled = self.engine.precompile_component(&bytes).map_err(|e| {
            TaskFailure::fatal(format!("{component} is not a valid WASM component: {e:#}"))
        })?;
        metrics::histogram!("crpc_processor_compile_seconds")
            .record(started.elapsed().as_secs_f64());
        let out = dir.join(CWASM_FILE);
        crpc_service::fs::write_atomic(&out, &compiled)
            .map_err(|e| TaskFailure::retryable(format!("cannot write {}: {e}", out.display())))
    }

    /// The `InstancePre` of an installed package (deserialised once per process).
    fn pre(&self, dir: &Path) -> Result<TaskPre<HostState>, TaskFailure> {
        if let Some(p) = self.loaded.lock().unwrap().get(dir) {
            return Ok(p.clone());
        }
        let path = dir.join(CWASM_FILE);
        let component = deserialize(&self.engine, &path)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            TaskFailure::fatal(format!(
                "the component fits no world crpc:task@0.3.0, @0.2.0 or @0.1.0: {e:#}"
            ))
        })?;
        let pre = TaskPre::new(pre).map_err(|e| {
            TaskFailure::fatal(format!(
                "the component does not export the world crpc:task (init, run, update): {e:#}"
            ))
        })?;
        self.loaded
            .lock()
            .unwrap()
            .insert(dir.to_path_buf(), pre.clone());
        Ok(pre)
    }

    /// Forgets a package's compiled component (after cache eviction).
    pub fn unload(&self, dir: &Path) {
        self.loaded.lock().unwrap().remove(dir);
    }

    /// A fresh instance of an installed package for a slot, `init` already called.
    pub fn instantiate(
        &self,
        dir: &Path,
        slot_gpus: &[u32],
        init: &str,
    ) -> Result<Instance, TaskFailure> {
        let pre = self.pre(dir)?;
        let stderr = TailPipe::new(8 * 1024);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            gpus: self.gpus.clone(),
            slot_gpus: slot_gpus.to_vec(),
            stderr,
            task: None,
            progress: None,
            cancel: None,
            deadline: None,
            interrupted: None,
            files: None,
            compute: self.compute.clone(),
            gpu_task: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            if s.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                s.interrupted = Some(Interrupt::Cancelled);
                return Err(wasmtime::Error::msg("cancelled"));
            }
            if s.deadline.is_some_and(|d| Instant::now() >= d) {
                s.interrupted = Some(Interrupt::Timeout);
                return Err(wasmtime::Error::msg("time limit reached"));
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        // init runs under a deadline too: a guest that loops in init must not hang the slot.
        store.data_mut().deadline = Some(Instant::now() + Duration::from_secs(60));
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| TaskFailure::fatal(format!("cannot instantiate the component: {e:#}")))?;
        let mut inst = Instance {
            store,
            bindings,
            memory_bytes: self.memory_bytes,
        };
        match inst.bindings.call_init(&mut inst.store, init) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(TaskFailure::fatal(format!("init failed: {msg}"))),
            Err(e) => return Err(inst.trap_failure(e, "init")),
        }
        inst.store.data_mut().deadline = None;
        Ok(inst)
    }
}

/// One live instance: `init` ran; `run` may be called many times.
pub struct Instance {
    store: Store<HostState>,
    bindings: Task,
    memory_bytes: usize,
}

/// One call of [`Instance::run`].
pub struct Call<'a> {
    /// The task.
    pub task: Uuid,
    /// Its function.
    pub function: &'a str,
    /// Its positional arguments.
    pub args: &'a [Value],
    /// Where progress goes.
    pub progress: Arc<Progress>,
    /// Fires on cancel.
    pub cancel: CancellationToken,
    /// When it must be over.
    pub deadline: Instant,
    /// Its files (`files` interface), when its processor keeps files.
    pub files: Option<TaskFiles>,
}

/// What happened to the instance in a run.
pub enum RunOutcome {
    /// The call returned (Ok or a guest-reported error): keep the instance.
    Returned(Result<Value, TaskFailure>),
    /// The guest trapped, ran out of time or memory, or was cancelled: drop the instance.
    Trapped(TaskFailure),
}

impl Instance {
    /// Runs one function with the task's `files`. Blocking: call from a blocking thread.
    pub fn run(&mut self, call: Call<'_>) -> RunOutcome {
        let Call {
            task,
            function,
            args,
            progress,
            cancel,
            deadline,
            files,
        } = call;
        let args = serde_json::to_string(args).expect("JSON values serialise");
        {
            let s = self.store.data_mut();
            s.task = Some(task);
            s.progress = Some(progress);
            s.cancel = Some(cancel);
            s.deadline = Some(deadline);
            s.interrupted = None;
            s.files = files;
        }
        let r = self.bindings.call_run(&mut self.store, function, &args);
        {
            let s = self.store.data_mut();
            s.task = None;
            s.progress = None;
            s.cancel = None;
            s.deadline = None;
            // Closes its files: outputs are complete on disk before they are uploaded.
            s.files = None;
            // Frees every GPU buffer it made.
            s.gpu_task = None;
        }
        let stopped = self.store.data().interrupted.is_some();
        match r {
            // The guest went on after a GPU wait stopped at its deadline or on cancel.
            Ok(_) if stopped => RunOutcome::Trapped(
                self.trap_failure(wasmtime::Error::msg("stopped during GPU work"), function),
            ),
            Ok(Ok(json)) => RunOutcome::Returned(serde_json::from_str(&json).map_err(|e| {
                TaskFailure::fatal(format!(
                    "{function} returned something that is not JSON: {e}"
                ))
            })),
            Ok(Err(e)) => RunOutcome::Returned(Err(match e.kind {
                ErrorKind::Retryable => TaskFailure::retryable(e.message),
                ErrorKind::Fatal => TaskFailure::fatal(e.message),
            })),
            Err(e) => RunOutcome::Trapped(self.trap_failure(e, function)),
        }
    }

    /// Calls the guest's `update` with a broadcast payload (JSON), under a 10 s limit.
    pub fn update(&mut self, payload: &str) -> Result<(), TaskFailure> {
        self.store.data_mut().deadline = Some(Instant::now() + Duration::from_secs(10));
        let r = self.bindings.call_update(&mut self.store, payload);
        self.store.data_mut().deadline = None;
        r.map_err(|e| self.trap_failure(e, "update"))
    }

    /// A clear failure for a trap: timeout, cancel, memory cap, or the guest's own panic.
    fn trap_failure(&mut self, e: wasmtime::Error, what: &str) -> TaskFailure {
        let s = self.store.data();
        match s.interrupted {
            Some(Interrupt::Timeout) => {
                return TaskFailure::timeout(format!(
                    "{what} ran past its time limit and was stopped"
                ))
            }
            Some(Interrupt::Cancelled) => {
                return TaskFailure::cancelled(format!("{what} was cancelled"))
            }
            None => {}
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory") {
            return TaskFailure::fatal(format!(
                "{what} ran out of memory: it needed more than the {} MiB cap of a WASM instance (processor flag --wasm-memory-mb)",
                self.memory_bytes >> 20
            ));
        }
        let stderr = s.stderr.tail();
        let stderr = stderr.trim();
        if stderr.is_empty() {
            TaskFailure::fatal(format!("{what} trapped: {text}"))
        } else {
            TaskFailure::fatal(format!("{what} trapped: {text}; guest stderr: {stderr}"))
        }
    }
}

fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component, TaskFailure> {
    // SAFETY: the file is one this processor wrote with `Engine::precompile_component` into its
    // own cache directory (temp file + rename, so never half-written); wasmtime also checks the
    // header against this engine's version and settings. Only someone who can already write the
    // processor's files could substitute it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| {
        TaskFailure::retryable(format!(
            "cannot load the precompiled component {}: {e:#}",
            path.display()
        ))
    })
}

/// Guest stderr: keeps the last `cap` bytes (for error messages), never refuses a write.
#[derive(Clone)]
struct TailPipe {
    buf: Arc<Mutex<VecDeque<u8>>>,
    cap: usize,
}

impl TailPipe {
    fn new(cap: usize) -> TailPipe {
        TailPipe {
            buf: Arc::new(Mutex::new(VecDeque::with_capacity(cap))),
            cap,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self.buf.lock().unwrap();
        b.extend(bytes);
        let excess = b.len().saturating_sub(self.cap);
        b.drain(..excess);
    }

    fn tail(&self) -> String {
        let b = self.buf.lock().unwrap();
        let (a, c) = b.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(c);
        let text = String::from_utf8_lossy(&v);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl wasmtime_wasi::cli::IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::OutputStream for TailPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
