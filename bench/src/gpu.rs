//! GPU compute through the WASM host interface against wgpu used directly, in one process.
//!
//! - **direct**: `examples/gpu-matmul/src/matmul.wgsl` compiled and dispatched by wgpu on the
//!   adapter (bind group, encoder, submit, wait), timed from the encoder to the end of the wait;
//! - **host interface**: the `gpu-matmul` component's `matmul(n, seed)` run by the processor's
//!   `WasmRuntime` on the same adapter; its `gflops` is timed by the guest around its `dispatch`
//!   host call (bind group, encoder, submit, the deadline-polling wait).
//!
//! Both do 2n³ flops over the same matrices; rounds alternate after a warm-up of each.
//!
//! `cargo run --release -p crpc-bench --bin gpu [-- --n 2048 --rounds 5]` (software adapter:
//! `apt-get install mesa-vulkan-drivers`; `--hardware` uses the first GPU's adapter instead).
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use crpc_bench::{median, repo_root};
use serde_json::{json, Value};
use task_processor::compute::{Compute, NvmlGpu};
use task_processor::gpu::Gpus;
use task_processor::handler::Progress;
use task_processor::runtime::wasm::{Call, RunOutcome, WasmRuntime};
use tokio_util::sync::CancellationToken;
use wgpu::util::DeviceExt;

#[derive(Parser)]
struct Args {
    /// Matrix side.
    #[arg(long, default_value_t = 2048)]
    n: u32,
    /// Timed rounds of each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Use the first NVIDIA GPU's adapter instead of the software one.
    #[arg(long)]
    hardware: bool,
}

const WGSL: &str = include_str!("../../examples/gpu-matmul/src/matmul.wgsl");
const SEED: u64 = 7;

/// The guest's matrices: integers -3…3 from `seed`.
mod matrices {
    include!("../../examples/gpu-matmul/src/matrices.rs");
}
use matrices::fill;

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// The adapter the processor would pick.
fn adapter(hardware: bool) -> anyhow::Result<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    all.into_iter()
        .find(|a| (a.get_info().device_type == wgpu::DeviceType::Cpu) != hardware)
        .context("no such adapter (software: apt-get install mesa-vulkan-drivers)")
}

/// wgpu on its own: one dispatch's GFLOP/s per round and C's checksum.
struct Direct {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<wgpu::Buffer>,
    n: u32,
}

impl Direct {
    fn new(adapter: &wgpu::Adapter, n: u32) -> anyhow::Result<Direct> {
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                required_limits: adapter.limits(),
                ..Default::default()
            }))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(WGSL.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("matmul"),
            compilation_options: Default::default(),
            cache: None,
        });
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let init = |contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage,
            })
        };
        let side = n as usize;
        let buffers = vec![
            init(&bytes(&fill(SEED, 0, side))),
            init(&bytes(&fill(SEED, 1, side))),
            init(&vec![0u8; 4 * side * side]),
            init(&n.to_le_bytes()),
        ];
        Ok(Direct {
            device,
            queue,
            pipeline,
            buffers,
            n,
        })
    }

    fn round(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        let entries: Vec<wgpu::BindGroupEntry> = self
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            let g = self.n.div_ceil(16);
            pass.dispatch_workgroups(g, g, 1);
        }
        let index = self.queue.submit([enc.finish()]);
        self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(Duration::from_secs(600)),
        })?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(2.0 * (self.n as f64).powi(3) / seconds / 1e9)
    }
}

/// The gpu-matmul component in the processor's runtime.
struct Hosted {
    _dir: tempfile::TempDir,
    instance: task_processor::runtime::wasm::Instance,
    n: u32,
}

impl Hosted {
    fn new(hardware: bool, n: u32) -> anyhow::Result<Hosted> {
        let dir = tempfile::tempdir()?;
        let pkg = repo_root().join("examples/gpu-matmul");
        std::fs::copy(
            pkg.join("gpu_matmul.wasm"),
            dir.path().join("gpu_matmul.wasm"),
        )
        .context("examples/gpu-matmul/gpu_matmul.wasm (run ./scripts/build-examples)")?;
        let gpus = Gpus::discover(hardware);
        let found: Vec<NvmlGpu> = gpus.compute_gpus();
        let slot_gpu = found.first().map(|g| g.index);
        let compute = Compute::new(found, !hardware, 4096);
        let slot: Vec<u32> = slot_gpu.filter(|_| hardware).into_iter().collect();
        let rt = WasmRuntime::new(1024, 1, Arc::new(gpus), Arc::new(compute))?;
        rt.precompile(dir.path(), "gpu_matmul.wasm")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let instance = rt
            .instantiate(dir.path(), &slot, "{}")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Hosted {
            _dir: dir,
            instance,
            n,
        })
    }

    fn round(&mut self) -> anyhow::Result<Value> {
        let args = [json!(self.n), json!(SEED)];
        let call = Call {
            task: uuid::Uuid::now_v7(),
            function: "matmul",
            args: &args,
            progress: Arc::new(Progress::detached()),
            cancel: CancellationToken::new(),
            deadline: Instant::now() + Duration::from_secs(600),
            files: None,
        };
        match self.instance.run(call) {
            RunOutcome::Returned(Ok(v)) => Ok(v),
            RunOutcome::Returned(Err(e)) | RunOutcome::Trapped(e) => bail!("matmul failed: {e}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let adapter = adapter(args.hardware)?;
    let info = adapter.get_info();
    eprintln!(
        "adapter: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    );
    let direct = Direct::new(&adapter, args.n)?;
    let mut hosted = Hosted::new(args.hardware, args.n)?;
    eprintln!("warming up…");
    direct.round()?;
    let first = hosted.round()?;
    let (mut d, mut h) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        d.push(direct.round()?);
        let v = hosted.round()?;
        if v["checksum"] != first["checksum"] {
            bail!("checksums differ between rounds: {v} / {first}");
        }
        h.push(v["gflops"].as_f64().context("gflops")?);
        eprintln!(
            "round {}: direct {:.2}, host interface {:.2} GFLOP/s",
            r + 1,
            d[r],
            h[r]
        );
    }
    let (dm, hm) = (median(&d), median(&h));
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "adapter: {} ({:?}, {:?}); n = {}; checksum {}",
        info.name, info.backend, info.device_type, args.n, first["checksum"]
    );
    println!("| matmul n = {} | GFLOP/s per round | median |", args.n);
    println!("|---|---|---|");
    println!("| wgpu directly | {} | {dm:.2} |", fmt(&d));
    println!(
        "| through the gpu-compute host interface | {} | {hm:.2} |",
        fmt(&h)
    );
    println!(
        "overhead of the host interface: {:+.1} %",
        100.0 * (dm / hm - 1.0)
    );
    Ok(())
}
