//! The default handler: install the task's package version and run the function in it, keeping
//! one live instance (WASM) or child program (native) per slot between tasks.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crpc_package::manifest::{Kind, Manifest};
use serde_json::{Map, Value};
use task_api::{Broadcast, BroadcastApplied, TaskPayload};

use crate::broadcasts::Book;
use crate::cache::{Installed, PackageCache, Prepare};
use crate::files::{holds, takes_files, FileCache, InUse};
use crate::handler::{TaskContext, TaskFailure, TaskHandler};
use crate::runtime::native::{run_setup, NativeChild};
use crate::runtime::sandbox::NativePolicy;
use crate::runtime::wasm::{Call, Instance, RunOutcome, WasmRuntime};
use crate::runtime::wasm_files::TaskFiles;

/// What a slot keeps alive between tasks.
enum Live {
    Wasm(Arc<Installed>, Instance),
    Native(Arc<Installed>, Box<NativeChild>),
}

impl Live {
    fn installed(&self) -> &Arc<Installed> {
        match self {
            Live::Wasm(i, _) | Live::Native(i, _) => i,
        }
    }
}

struct Preparer {
    wasm: Arc<WasmRuntime>,
    setup_timeout: Duration,
    native: NativePolicy,
}

impl Preparer {
    /// Refuses native packages on a processor started with `--no-native`.
    fn native_allowed(&self, manifest: &Manifest) -> Result<(), TaskFailure> {
        if self.native.allowed {
            return Ok(());
        }
        Err(TaskFailure::fatal(format!(
            "{}@{} is a native package and this processor runs with --no-native",
            manifest.name, manifest.version
        )))
    }
}

#[async_trait::async_trait]
impl Prepare for Preparer {
    async fn prepare(&self, dir: &Path, manifest: &Manifest) -> Result<(), TaskFailure> {
        match manifest.kind {
            Kind::Wasm => {
                let wasm = self.wasm.clone();
                let dir = dir.to_path_buf();
                let component = manifest.component.clone().expect("validated manifest");
                tokio::task::spawn_blocking(move || wasm.precompile(&dir, &component))
                    .await
                    .map_err(|e| TaskFailure::retryable(format!("precompile: {e}")))?
            }
            Kind::Native => {
                self.native_allowed(manifest)?;
                if manifest.setup.is_empty() {
                    return Ok(());
                }
                tracing::info!(package = %format!("{}@{}", manifest.name, manifest.version), "running setup ({} command(s))", manifest.setup.len());
                run_setup(dir, &manifest.setup, self.setup_timeout, &self.native).await
            }
        }
    }

    fn evicted(&self, dir: &Path) {
        self.wasm.unload(dir);
    }
}

/// A slot's live instance and the `seq` of the last broadcast it got.
type Held = (Live, i64);

/// Installs packages from the registry and runs them.
pub struct PackageHandler {
    cache: PackageCache,
    preparer: Preparer,
    slots: Vec<Mutex<Option<Held>>>,
    /// Broadcasts received, owed to the instances.
    book: Mutex<Book>,
    /// Init keys given to this processor per package, over the manifest's `[init]`.
    init: std::collections::HashMap<String, Map<String, Value>>,
    /// Where the files tasks take are fetched to (none: such tasks fail).
    files: Option<Arc<FileCache>>,
}

impl PackageHandler {
    /// A handler for `slots` slots over `cache`, with WASM run by `wasm`.
    pub fn new(
        cache: PackageCache,
        wasm: Arc<WasmRuntime>,
        setup_timeout: Duration,
        slots: usize,
        native: NativePolicy,
    ) -> PackageHandler {
        PackageHandler {
            cache,
            preparer: Preparer {
                wasm,
                setup_timeout,
                native,
            },
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            book: Mutex::default(),
            init: Default::default(),
            files: None,
        }
    }

    /// Init keys per package name, over each manifest's `[init]` table.
    pub fn with_init(
        mut self,
        init: std::collections::HashMap<String, Map<String, Value>>,
    ) -> Self {
        self.init = init;
        self
    }

    /// Fetches the files tasks take into `files`.
    pub fn with_files(mut self, files: Arc<FileCache>) -> Self {
        self.files = Some(files);
        self
    }

    /// What a package gets at start: its manifest's `[init]` with this processor's keys over it.
    fn init_config(&self, manifest: &Manifest) -> Map<String, Value> {
        let mut config = manifest.init.clone();
        if let Some(over) = self.init.get(&manifest.name) {
            config.extend(over.clone());
        }
        config
    }

    fn take_live(&self, slot: usize, inst: &Arc<Installed>) -> Option<Held> {
        let mut s = self.slots[slot].lock().unwrap();
        match s.take() {
            Some(l) if Arc::ptr_eq(l.0.installed(), inst) => Some(l),
            // Another package held the slot: its instance or child goes (dropping a child
            // kills its process group).
            _ => None,
        }
    }

    fn put_live(&self, slot: usize, live: Live, seen: i64) {
        *self.slots[slot].lock().unwrap() = Some((live, seen));
    }

    /// The broadcasts an instance of `inst` that got everything up to `seen` (`None`: just
    /// started) is owed, and the `seq` it has seen once it got them.
    fn owed(&self, inst: &Installed, seen: Option<i64>) -> (Vec<Value>, i64) {
        let book = self.book.lock().unwrap();
        let due = book.due(&inst.name, &inst.version, seen);
        (due.into_iter().map(|b| b.payload).collect(), book.max_seq())
    }

    /// Runs the task on the installed package's WASM component or native program.
    async fn run(
        &self,
        inst: &Arc<Installed>,
        task: &TaskPayload,
        ctx: &TaskContext,
        used: Option<&InUse>,
    ) -> Result<Value, TaskFailure> {
        match inst.manifest.kind {
            Kind::Wasm => self.run_wasm(inst, task, ctx, used).await,
            Kind::Native => self.run_native(inst, task, ctx).await,
        }
    }

    /// The task as the package gets it: each file value of its arguments fetched (the guard
    /// keeps them cached while it runs); for a native package, given its local read-only
    /// `path`. A WASM guest opens them by sha256 through the `files` interface.
    async fn fetch_files<'t>(
        &self,
        inst: &Installed,
        task: &'t TaskPayload,
        ctx: &TaskContext,
    ) -> Result<(std::borrow::Cow<'t, TaskPayload>, Option<InUse>), TaskFailure> {
        if !takes_files(&task.args, &task.kwargs) {
            return Ok((std::borrow::Cow::Borrowed(task), None));
        }
        let Some(files) = &self.files else {
            return Err(TaskFailure::fatal("this processor keeps no task files"));
        };
        let mut task = task.clone();
        let paths = inst.manifest.kind == Kind::Native;
        let used = tokio::select! {
            r = files.materialize(&mut task.args, &mut task.kwargs, paths) => r?,
            _ = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled("cancelled while fetching its files")),
            _ = tokio::time::sleep_until(ctx.deadline.into()) => return Err(TaskFailure::timeout("the time limit ran out while its files were fetched")),
        };
        Ok((std::borrow::Cow::Owned(task), Some(used)))
    }

    /// Uploads the output files an answer names and puts their file values in place.
    async fn upload_outputs(
        &self,
        answer: &mut Value,
        dir: &Path,
        ctx: &TaskContext,
    ) -> Result<(), TaskFailure> {
        if !holds(answer, "$output") {
            return Ok(());
        }
        let Some(files) = &self.files else {
            return Err(TaskFailure::fatal(
                "this processor cannot upload output files",
            ));
        };
        tokio::select! {
            r = files.upload_outputs(answer, dir, ctx.id, ctx.lease_epoch) => r,
            _ = ctx.cancel.cancelled() => Err(TaskFailure::cancelled("cancelled while uploading its outputs")),
            _ = tokio::time::sleep_until(ctx.deadline.into()) => Err(TaskFailure::timeout("the time limit ran out while its outputs were uploaded")),
        }
    }

    /// Runs a WASM task with its files, then uploads the outputs its answer names.
    async fn run_wasm(
        &self,
        inst: &Arc<Installed>,
        task: &TaskPayload,
        ctx: &TaskContext,
        used: Option<&InUse>,
    ) -> Result<Value, TaskFailure> {
        let Some(files) = &self.files else {
            return self.call_wasm(inst, task, ctx, None).await;
        };
        // Its inputs' local copies and a fresh output directory.
        let out = files.output_dir(ctx.id);
        let inputs = used.map(|u| u.paths(files)).unwrap_or_default();
        let task_files = TaskFiles::new(inputs, out.clone(), files.max_bytes());
        let r = self.call_wasm(inst, task, ctx, Some(task_files)).await;
        self.with_outputs(r, &out, ctx).await
    }

    /// A run's result after the output files its answer names were uploaded from `dir` (an
    /// upload that fails fails the task); `dir` is removed either way.
    async fn with_outputs(
        &self,
        mut r: Result<Value, TaskFailure>,
        dir: &Path,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        if let Ok(answer) = &mut r {
            if let Err(e) = self.upload_outputs(answer, dir, ctx).await {
                r = Err(e);
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        r
    }

    /// Calls the function on the slot's live instance (or a new one); a trap drops it.
    async fn call_wasm(
        &self,
        inst: &Arc<Installed>,
        task: &TaskPayload,
        ctx: &TaskContext,
        files: Option<TaskFiles>,
    ) -> Result<Value, TaskFailure> {
        let slot = ctx.slot.index;
        let args = positional(&inst.manifest, &task.function, &task.args, &task.kwargs)?;
        let (live, seen) = match self.take_live(slot, inst) {
            Some((Live::Wasm(_, i), seen)) => (Some(i), Some(seen)),
            _ => (None, None),
        };
        let (owed, seen) = self.owed(inst, seen);
        let wasm = self.preparer.wasm.clone();
        let inst2 = inst.clone();
        let gpus = ctx.slot.gpus.clone();
        let config = Value::Object(self.init_config(&inst.manifest)).to_string();
        let (id, function) = (ctx.id, task.function.clone());
        let (progress, cancel, deadline) = (ctx.progress.clone(), ctx.cancel.clone(), ctx.deadline);
        let (outcome, keep) = tokio::task::spawn_blocking(move || {
            let mut instance = match live {
                Some(i) => i,
                None => match wasm.instantiate(&inst2.dir, &gpus, &config) {
                    Ok(i) => i,
                    Err(e) => return (Err(e), None),
                },
            };
            for payload in &owed {
                if let Err(e) = instance.update(&payload.to_string()) {
                    // The trap discards the instance; the task runs on a fresh one.
                    tracing::warn!(slot, "a broadcast's update trapped: {}", e.message);
                    instance = match wasm.instantiate(&inst2.dir, &gpus, &config) {
                        Ok(i) => i,
                        Err(e) => return (Err(e), None),
                    };
                    break;
                }
            }
            let call = Call {
                task: id,
                function: &function,
                args: &args,
                progress,
                cancel,
                deadline,
                files,
            };
            match instance.run(call) {
                RunOutcome::Returned(r) => (r, Some(Live::Wasm(inst2, instance))),
                RunOutcome::Trapped(f) => (Err(f), None),
            }
        })
        .await
        .map_err(|e| TaskFailure::fatal(format!("the WASM runtime panicked: {e}")))?;
        if let Some(live) = keep {
            self.put_live(slot, live, seen);
        }
        outcome
    }

    /// Sends the task to the slot's native program (started when there is none alive).
    async fn run_native(
        &self,
        inst: &Arc<Installed>,
        task: &TaskPayload,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let slot = ctx.slot.index;
        self.preparer.native_allowed(&inst.manifest)?;
        let (alive, seen) = match self.take_live(slot, inst) {
            Some((Live::Native(_, mut c), seen)) => {
                if c.is_alive() {
                    (Some(c), Some(seen))
                } else {
                    (None, None)
                }
            }
            _ => (None, None),
        };
        let (owed, seen) = self.owed(inst, seen);
        let mut child = match alive {
            Some(c) => c,
            None => {
                let command = inst.manifest.command.clone().expect("validated manifest");
                let config = Value::Object(self.init_config(&inst.manifest));
                Box::new(
                    NativeChild::start(
                        &inst.dir,
                        &command,
                        &ctx.slot.cuda_visible_devices(),
                        slot,
                        &self.preparer.native,
                        &config,
                    )
                    .await?,
                )
            }
        };
        for payload in &owed {
            // A program that cannot take the line is dead; the run below reports it.
            if let Err(e) = child.update(payload).await {
                tracing::warn!(slot, "a broadcast's update line failed: {}", e.message);
                break;
            }
        }
        let r = child.run(task, ctx).await;
        let r = self.with_outputs(r, &child.output_dir(ctx.id), ctx).await;
        // A failure reported by the program keeps it; a killed or dead one is dropped
        // (and the next task gets a fresh one).
        if child.is_alive()
            && !matches!(&r, Err(f) if matches!(f.kind, task_api::TaskErrorKind::Timeout | task_api::TaskErrorKind::Cancelled))
        {
            self.put_live(slot, Live::Native(inst.clone(), child), seen);
        }
        r
    }
}

/// Hands `owed` payloads to an idle instance; the instance back, or why it is gone.
async fn deliver(live: Live, owed: Vec<Value>) -> Result<Live, String> {
    match live {
        Live::Native(inst, mut c) => {
            for payload in &owed {
                c.update(payload).await.map_err(|e| e.message)?;
            }
            Ok(Live::Native(inst, c))
        }
        Live::Wasm(inst, mut w) => tokio::task::spawn_blocking(move || {
            for payload in &owed {
                w.update(&payload.to_string()).map_err(|e| e.message)?;
            }
            Ok(Live::Wasm(inst, w))
        })
        .await
        .map_err(|e| format!("the WASM runtime panicked: {e}"))?,
    }
}

fn no_function(manifest: &Manifest, function: &str) -> TaskFailure {
    TaskFailure::fatal(format!(
        "package {}@{} has no function `{function}`",
        manifest.name, manifest.version
    ))
}

/// Positional arguments for a WASM call: keyword arguments are placed by the signature.
fn positional(
    manifest: &Manifest,
    function: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Value>, TaskFailure> {
    let sig = manifest
        .functions
        .get(function)
        .ok_or_else(|| no_function(manifest, function))?;
    sig.check(function, args, kwargs)
        .map_err(|e| TaskFailure::fatal(e.message))?;
    let mut out = args.to_vec();
    for spec in sig.args.iter().skip(args.len()) {
        out.push(kwargs.get(&spec.name).cloned().unwrap_or(Value::Null));
    }
    while out.last().is_some_and(Value::is_null) && out.len() > args.len() {
        out.pop();
    }
    Ok(out)
}

#[async_trait::async_trait]
impl TaskHandler for PackageHandler {
    async fn process_task(
        &self,
        task: &TaskPayload,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let (Some(name), Some(version)) = (&task.package, &task.version) else {
            return Err(TaskFailure::fatal(
                "the task names no exact package version (start the server with --registry so it resolves one at submit)",
            ));
        };
        let installing = std::time::Instant::now();
        let inst = tokio::select! {
            r = self.cache.get(name, version, &self.preparer) => r?,
            _ = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled("cancelled while installing")),
            _ = tokio::time::sleep_until(ctx.deadline.into()) => return Err(TaskFailure::timeout("the time limit ran out while the package was being installed")),
        };
        let (task, used) = self.fetch_files(&inst, task, ctx).await?;
        ctx.setup.add(installing.elapsed());
        let answer = self.run(&inst, &task, ctx, used.as_ref()).await?;
        // The declared `returns` type, checked before the answer leaves this machine.
        if let Some(sig) = inst.manifest.functions.get(&task.function) {
            sig.check_return(&task.function, &answer)
                .map_err(TaskFailure::bad_return)?;
        }
        Ok(answer)
    }

    async fn update(&self, b: &Broadcast) -> Option<BroadcastApplied> {
        if !self.book.lock().unwrap().add(b) {
            return None;
        }
        // Idle slots get it now; a slot running a task holds its instance itself and gets
        // it before its next task (see `owed`), as does an instance started later.
        let (mut instances, mut error) = (0u32, None);
        for (slot, cell) in self.slots.iter().enumerate() {
            let held = {
                let mut c = cell.lock().unwrap();
                let ours = c.as_ref().is_some_and(|(l, _)| {
                    let i = l.installed();
                    crate::broadcasts::matches(b, &i.name, &i.version)
                });
                if ours {
                    c.take()
                } else {
                    None
                }
            };
            let Some((live, seen)) = held else {
                continue;
            };
            let (owed, seen) = self.owed(live.installed(), Some(seen));
            match deliver(live, owed).await {
                Ok(live) => {
                    instances += 1;
                    let mut c = cell.lock().unwrap();
                    if c.is_none() {
                        *c = Some((live, seen));
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        slot,
                        "a broadcast's update failed; the instance is discarded: {e}"
                    );
                    error.get_or_insert(e);
                }
            }
        }
        Some(BroadcastApplied {
            id: b.id,
            applied_at: crate::now_ms(),
            instances,
            error,
        })
    }

    fn broadcasts_since(&self) -> Option<i64> {
        Some(self.book.lock().unwrap().max_seq())
    }

    fn cached_packages(&self) -> Vec<String> {
        self.cache.ready()
    }
}
