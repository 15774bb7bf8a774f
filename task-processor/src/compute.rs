//! GPU compute for WASM tasks (the `gpu-compute` interface of `crpc:task@0.3.0`) on wgpu.
//!
//! One wgpu device per adapter per processor, shared by the slots that use it; compiled WGSL
//! modules and their pipelines are kept per device by the text's sha256 (at most
//! [`MODULE_CACHE`]). Each running task gets a [`TaskGpu`]: its own handles to buffers and
//! modules (a guest can name nothing another task made), a cap on the bytes of buffers it holds,
//! and its deadline and cancel token, which every wait on the GPU polls. Every wgpu call a guest's
//! input can make fail runs inside an error scope (thread-local in wgpu 30), so a guest's mistake
//! is an `Err` to it, never a panic; the device's uncaptured-error handler only logs.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Compiled modules a device keeps (all are dropped when it is full).
pub const MODULE_CACHE: usize = 256;
/// Handles (buffers and modules) one task may hold at once.
pub const MAX_HANDLES: usize = 1024;
/// The most bytes one `read-buffer` call returns.
pub const MAX_READ: u64 = 64 << 20;
/// The longest WGSL text `compile` takes.
pub const MAX_WGSL: usize = 1 << 20;
/// Buffers one dispatch may bind.
pub const MAX_BINDINGS: usize = 64;
/// How often a wait on the GPU looks at the task's deadline and cancel token.
const POLL_SLICE: Duration = Duration::from_millis(10);

/// The processor's compute adapters: one per GPU wgpu could match to an NVML device, and the
/// software adapter (for CPU slots) when the processor runs with `--gpu-software`. Devices are
/// opened at the first `gpu-compute` call, not at start: a processor whose packages never
/// compute holds no Vulkan device on its GPUs (which native CUDA programs share).
#[derive(Default)]
pub struct Compute {
    gpus: Vec<NvmlGpu>,
    software: bool,
    cap: u64,
    opened: OnceLock<Opened>,
}

/// The devices opened at the first use.
#[derive(Default)]
struct Opened {
    by_gpu: HashMap<u32, Arc<Accel>>,
    software: Option<Arc<Accel>>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field(
                "gpus",
                &self.gpus.iter().map(|g| g.index).collect::<Vec<_>>(),
            )
            .field("software", &self.software)
            .field("cap", &self.cap)
            .finish()
    }
}

/// A GPU as NVML names it: its index and PCI bus id (`00000000:65:00.0`).
pub struct NvmlGpu {
    pub index: u32,
    pub pci_bus_id: String,
}

impl Compute {
    /// No adapters: every `gpu-compute` call answers that the slot has none.
    pub fn none() -> Compute {
        Compute::default()
    }

    /// Adapters for the GPUs in `gpus` and, when `software`, the CPU (software) adapter, opened
    /// at the first use; `cap_mb` caps the buffers of one task.
    pub fn new(gpus: Vec<NvmlGpu>, software: bool, cap_mb: u64) -> Compute {
        Compute {
            gpus,
            software,
            cap: cap_mb.saturating_mul(1 << 20),
            opened: OnceLock::new(),
        }
    }

    /// Opens a device on the adapter of each GPU (matched by PCI bus id, else NVIDIA adapters
    /// in order when the counts agree) and, when asked, on the software adapter. Blocking
    /// (Vulkan start-up); logs one line either way.
    fn open(&self) -> Opened {
        if self.gpus.is_empty() && !self.software {
            tracing::info!("GPU compute: no GPU slots (and no --gpu-software): gpu-compute calls answer that the slot has no adapter");
            return Opened::default();
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
        let mut out = Opened::default();
        for (index, adapter) in match_adapters(&self.gpus, &adapters) {
            match Accel::open(&adapter) {
                Ok(a) => {
                    out.by_gpu.insert(index, Arc::new(a));
                }
                Err(e) => tracing::warn!("GPU compute: GPU #{index}: {e}"),
            }
        }
        if self.software {
            let cpu = adapters
                .iter()
                .find(|a| a.get_info().device_type == wgpu::DeviceType::Cpu);
            match cpu.map(Accel::open) {
                Some(Ok(a)) => out.software = Some(Arc::new(a)),
                Some(Err(e)) => tracing::warn!("GPU compute: software adapter: {e}"),
                None => tracing::warn!("GPU compute: --gpu-software, but no software adapter was found (on Debian: apt-get install mesa-vulkan-drivers)"),
            }
        }
        self.log(&out);
        out
    }

    fn log(&self, opened: &Opened) {
        let mut parts: Vec<String> = self
            .gpus
            .iter()
            .map(|g| match opened.by_gpu.get(&g.index) {
                Some(a) => format!("GPU #{} on {}", g.index, a.describe()),
                None => format!("GPU #{} without a wgpu adapter", g.index),
            })
            .collect();
        if let Some(a) = &opened.software {
            parts.push(format!("CPU slots on {}", a.describe()));
        }
        tracing::info!(
            "GPU compute: {}; {} MiB of buffers per task (--gpu-memory-mb)",
            parts.join(", "),
            self.cap >> 20
        );
    }

    /// The adapter of a slot: its first GPU's, or the software adapter on a CPU slot (the
    /// devices are opened by the first call).
    pub fn for_slot(&self, slot_gpus: &[u32]) -> Option<Arc<Accel>> {
        let opened = self.opened.get_or_init(|| self.open());
        match slot_gpus.first() {
            Some(g) => opened.by_gpu.get(g).cloned(),
            None => opened.software.clone(),
        }
    }

    /// The bytes of buffers one task may hold at once.
    pub fn cap(&self) -> u64 {
        self.cap
    }
}

/// `(domain, bus, device.function)` of a PCI bus id in NVML's (`00000000:65:00.0`) or wgpu's
/// (`0000:65:00.0`) spelling.
fn pci_key(id: &str) -> Option<(u32, String)> {
    let mut parts = id.trim().rsplitn(3, ':');
    let devfn = parts.next()?.to_ascii_lowercase();
    let bus = parts.next()?.to_ascii_lowercase();
    let domain = u32::from_str_radix(parts.next().unwrap_or("0"), 16).ok()?;
    Some((domain, format!("{bus}:{devfn}")))
}

/// Pairs each NVML GPU with its wgpu adapter.
fn match_adapters(gpus: &[NvmlGpu], adapters: &[wgpu::Adapter]) -> Vec<(u32, wgpu::Adapter)> {
    let hardware: Vec<&wgpu::Adapter> = adapters
        .iter()
        .filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
        .collect();
    let by_pci: Vec<(u32, wgpu::Adapter)> = gpus
        .iter()
        .filter_map(|g| {
            let key = pci_key(&g.pci_bus_id)?;
            let a = hardware
                .iter()
                .find(|a| pci_key(&a.get_info().device_pci_bus_id).as_ref() == Some(&key))?;
            Some((g.index, (*a).clone()))
        })
        .collect();
    if by_pci.len() == gpus.len() {
        return by_pci;
    }
    let nvidia: Vec<&&wgpu::Adapter> = hardware
        .iter()
        .filter(|a| a.get_info().vendor == 0x10de)
        .collect();
    if nvidia.len() == gpus.len() {
        return gpus
            .iter()
            .zip(nvidia)
            .map(|(g, a)| (g.index, (**a).clone()))
            .collect();
    }
    by_pci
}

/// One adapter's device and queue, with the modules compiled on it.
pub struct Accel {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<[u8; 32], Arc<Module>>>,
}

/// A compiled WGSL module and the pipelines made from its entry points.
pub struct Module {
    module: wgpu::ShaderModule,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

impl Accel {
    fn open(adapter: &wgpu::Adapter) -> Result<Accel, String> {
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("crpc gpu-compute"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot open a device on {}: {e}", adapter.get_info().name))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::warn!("GPU compute: uncaptured wgpu error: {e}");
        }));
        Ok(Accel {
            device,
            queue,
            info: adapter.get_info(),
            limits,
            modules: Mutex::new(HashMap::new()),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Runs `f` inside validation and out-of-memory error scopes: the first error it raised.
    fn scoped<T>(&self, f: impl FnOnce(&wgpu::Device) -> T) -> Result<T, String> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let valid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f(&self.device);
        let errors = [
            pollster::block_on(valid.pop()),
            pollster::block_on(oom.pop()),
        ];
        match errors.into_iter().flatten().next() {
            Some(e) => Err(clip(&e.to_string())),
            None => Ok(out),
        }
    }

    /// The module compiled from `wgsl`, from the cache or compiled now.
    fn compile(&self, wgsl: &str) -> Result<Arc<Module>, String> {
        let key: [u8; 32] = Sha256::digest(wgsl.as_bytes()).into();
        if let Some(m) = self.modules.lock().unwrap().get(&key) {
            return Ok(m.clone());
        }
        let module = self.scoped(|d| {
            d.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(wgsl.to_owned().into()),
            })
        })?;
        let m = Arc::new(Module {
            module,
            pipelines: Mutex::new(HashMap::new()),
        });
        let mut cache = self.modules.lock().unwrap();
        if cache.len() >= MODULE_CACHE {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }

    /// The pipeline of `entry` in `m` (made once per module and entry point).
    fn pipeline(&self, m: &Module, entry: &str) -> Result<wgpu::ComputePipeline, String> {
        if let Some(p) = m.pipelines.lock().unwrap().get(entry) {
            return Ok(p.clone());
        }
        let p = self.scoped(|d| {
            d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &m.module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })?;
        m.pipelines
            .lock()
            .unwrap()
            .insert(entry.to_string(), p.clone());
        Ok(p)
    }
}

/// The first 2,000 characters of a wgpu error.
fn clip(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(2000) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// Why a wait on the GPU stopped early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// The task's deadline passed.
    Timeout,
    /// The task was cancelled.
    Cancelled,
}

/// What the guest sees of its adapter.
pub struct AdapterInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub memory_cap_bytes: u64,
}

/// A buffer to bind at `@group(0) @binding(index)`.
pub struct Binding {
    pub index: u32,
    pub buffer: u32,
}

/// One running task's GPU handles; dropping it frees every buffer the task made.
pub struct TaskGpu {
    accel: Option<Arc<Accel>>,
    cap: u64,
    held: u64,
    buffers: HashMap<u32, wgpu::Buffer>,
    modules: HashMap<u32, Arc<Module>>,
    next: u32,
    deadline: Instant,
    cancel: CancellationToken,
    /// Set when a wait stopped at the deadline or on cancel.
    pub stopped: Option<Stop>,
}

impl Drop for TaskGpu {
    fn drop(&mut self) {
        for (_, b) in self.buffers.drain() {
            b.destroy();
        }
    }
}

impl TaskGpu {
    /// The handles of a task on `accel` (none: the slot has no adapter).
    pub fn new(
        accel: Option<Arc<Accel>>,
        cap: u64,
        deadline: Instant,
        cancel: CancellationToken,
    ) -> TaskGpu {
        TaskGpu {
            accel,
            cap,
            held: 0,
            buffers: HashMap::new(),
            modules: HashMap::new(),
            next: 0,
            deadline,
            cancel,
            stopped: None,
        }
    }

    fn accel(&self) -> Result<Arc<Accel>, String> {
        self.accel.clone().ok_or_else(|| {
            "this slot has no GPU compute adapter (a GPU slot whose GPU wgpu could not open, or a CPU slot of a processor without --gpu-software)".to_string()
        })
    }

    fn handle(&mut self) -> Result<u32, String> {
        if self.buffers.len() + self.modules.len() >= MAX_HANDLES {
            return Err(format!("a task may hold at most {MAX_HANDLES} GPU handles"));
        }
        self.next = self.next.wrapping_add(1);
        Ok(self.next)
    }

    fn buffer(&self, h: u32) -> Result<&wgpu::Buffer, String> {
        self.buffers
            .get(&h)
            .ok_or_else(|| format!("no GPU buffer {h} in this task"))
    }

    /// The adapter as the guest sees it.
    pub fn adapter(&self) -> Result<AdapterInfo, String> {
        let a = self.accel()?;
        Ok(AdapterInfo {
            name: a.info.name.clone(),
            backend: a.info.backend.to_str().to_string(),
            device_type: device_type(a.info.device_type).to_string(),
            memory_cap_bytes: self.cap,
        })
    }

    /// A zeroed storage buffer of `size` bytes.
    pub fn create_buffer(&mut self, size: u64) -> Result<u32, String> {
        let a = self.accel()?;
        if size == 0 || !size.is_multiple_of(4) {
            return Err(format!(
                "a buffer's size must be a positive multiple of 4 bytes, not {size}"
            ));
        }
        let most = a
            .limits
            .max_buffer_size
            .min(a.limits.max_storage_buffer_binding_size);
        if size > most {
            return Err(format!(
                "a buffer of {size} bytes is larger than the adapter binds ({most} bytes)"
            ));
        }
        let after = self.held.saturating_add(size);
        if after > self.cap {
            return Err(format!(
                "a buffer of {size} bytes would take this task's GPU buffers to {after} bytes, over its cap of {} bytes (processor flag --gpu-memory-mb)",
                self.cap
            ));
        }
        let h = self.handle()?;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let b = a.scoped(|d| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        self.held = after;
        self.buffers.insert(h, b);
        Ok(h)
    }

    /// Checks that `[offset, offset + len)` lies in buffer `h` and both are multiples of 4.
    fn range(&self, h: u32, offset: u64, len: u64) -> Result<&wgpu::Buffer, String> {
        let b = self.buffer(h)?;
        if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(format!(
                "offset {offset} and length {len} must be multiples of 4 bytes"
            ));
        }
        match offset.checked_add(len) {
            Some(end) if end <= b.size() => Ok(b),
            _ => Err(format!(
                "bytes {offset}..{offset}+{len} lie outside buffer {h} of {} bytes",
                b.size()
            )),
        }
    }

    /// Writes `data` into buffer `h` at `offset`.
    pub fn write_buffer(&mut self, h: u32, offset: u64, data: &[u8]) -> Result<(), String> {
        let a = self.accel()?;
        let b = self.range(h, offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        a.scoped(|_| a.queue.write_buffer(b, offset, data))
    }

    /// `len` bytes of buffer `h` from `offset`, after the work submitted before.
    pub fn read_buffer(&mut self, h: u32, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let a = self.accel()?;
        if len > MAX_READ {
            return Err(format!(
                "one read returns at most {MAX_READ} bytes, not {len}"
            ));
        }
        let src = self.range(h, offset, len)?.clone();
        if len == 0 {
            return Ok(Vec::new());
        }
        let staging = a.scoped(|d| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: len,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let index = a.scoped(|d| {
            let mut enc = d.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&src, offset, &staging, 0, len);
            let index = a.queue.submit([enc.finish()]);
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            index
        })?;
        let out = self.wait(&a, index).and_then(|()| match rx.try_recv() {
            Ok(Ok(())) => staging
                .get_mapped_range(..)
                .map(|view| view.to_vec())
                .map_err(|e| format!("cannot read the mapped buffer: {e}")),
            _ => Err("the GPU could not map the buffer for reading".to_string()),
        });
        staging.destroy();
        out
    }

    /// Frees buffer `h`.
    pub fn destroy_buffer(&mut self, h: u32) -> Result<(), String> {
        let b = self
            .buffers
            .remove(&h)
            .ok_or_else(|| format!("no GPU buffer {h} in this task"))?;
        self.held = self.held.saturating_sub(b.size());
        b.destroy();
        Ok(())
    }

    /// A handle to the module compiled from `wgsl`.
    pub fn compile(&mut self, wgsl: &str) -> Result<u32, String> {
        let a = self.accel()?;
        if wgsl.len() > MAX_WGSL {
            return Err(format!(
                "a WGSL module may be at most {MAX_WGSL} bytes, not {}",
                wgsl.len()
            ));
        }
        let h = self.handle()?;
        let m = a.compile(wgsl)?;
        self.modules.insert(h, m);
        Ok(h)
    }

    /// Runs `entry` of `module` over `groups` workgroups with `bindings`, and waits for it.
    pub fn dispatch(
        &mut self,
        module: u32,
        entry: &str,
        bindings: &[Binding],
        groups: [u32; 3],
    ) -> Result<(), String> {
        let a = self.accel()?;
        let m = self
            .modules
            .get(&module)
            .ok_or_else(|| format!("no GPU module {module} in this task"))?
            .clone();
        if entry.is_empty() || entry.len() > 256 {
            return Err("an entry point is a name of 1 to 256 bytes".into());
        }
        let most = a.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > most) {
            return Err(format!(
                "workgroup counts {groups:?}: the adapter allows at most {most} per dimension"
            ));
        }
        if bindings.len() > MAX_BINDINGS {
            return Err(format!("a dispatch binds at most {MAX_BINDINGS} buffers"));
        }
        let mut entries = Vec::with_capacity(bindings.len());
        for b in bindings {
            if entries
                .iter()
                .any(|e: &wgpu::BindGroupEntry| e.binding == b.index)
            {
                return Err(format!("binding {} is given twice", b.index));
            }
            entries.push(wgpu::BindGroupEntry {
                binding: b.index,
                resource: self.buffer(b.buffer)?.as_entire_binding(),
            });
        }
        let pipeline = a.pipeline(&m, entry)?;
        let index = a.scoped(|d| {
            let group = (!entries.is_empty()).then(|| {
                d.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
            });
            let mut enc = d.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                if let Some(g) = &group {
                    pass.set_bind_group(0, g, &[]);
                }
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
            a.queue.submit([enc.finish()])
        })?;
        self.wait(&a, index)
    }

    /// Waits for submission `index`, looking at the deadline and the cancel token every 10 ms.
    fn wait(&mut self, a: &Accel, index: wgpu::SubmissionIndex) -> Result<(), String> {
        loop {
            if self.cancel.is_cancelled() {
                self.stopped = Some(Stop::Cancelled);
                return Err("the task was cancelled during GPU work".into());
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stopped = Some(Stop::Timeout);
                return Err("the task's time limit passed during GPU work".into());
            }
            let poll = a.device.poll(wgpu::PollType::Wait {
                submission_index: Some(index.clone()),
                timeout: Some(left.min(POLL_SLICE)),
            });
            match poll {
                Ok(_) => return Ok(()),
                Err(wgpu::PollError::Timeout) => continue,
                Err(e) => return Err(format!("the GPU device failed: {e}")),
            }
        }
    }
}

fn device_type(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
        wgpu::DeviceType::VirtualGpu => "virtual-gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_of_nvml_and_wgpu_match() {
        assert_eq!(pci_key("00000000:65:00.0"), pci_key("0000:65:00.0"));
        assert_eq!(pci_key("00000000:3B:00.0"), pci_key("0000:3b:00.0"));
        assert_ne!(pci_key("00000000:65:00.0"), pci_key("0000:66:00.0"));
        assert_eq!(pci_key(""), None);
    }
}
