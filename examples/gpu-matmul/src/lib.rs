//! Multiplies two n×n f32 matrices on the slot's GPU with a tiled WGSL compute shader
//! (`gpu-compute` of `crpc:task@0.3.0`).
use std::time::Instant;

use crpc_guest::compute::{Buffer, Module};
use serde_json::{json, Value};

mod matrices;
use matrices::fill;

/// The shader (also run directly by wgpu in the matmul bench).
const WGSL: &str = include_str!("matmul.wgsl");
/// Side of the shader's tiles (its workgroup size).
const TILE: u32 = 16;
/// Largest n: three 8192² f32 matrices are 768 MiB.
const MAX_N: u64 = 8192;
/// Up to this n the answer is checked against the CPU.
const CHECK_N: u64 = 256;

crpc_guest::export! {
    /// C = A·B for n×n matrices filled from `seed`; the sum of C and the dispatch's GFLOP/s.
    fn matmul(n: u64, seed: u64) -> crpc_guest::Result<Value> {
        if n == 0 || n > MAX_N {
            return Err(format!("n must be 1 to {MAX_N}, not {n}").into());
        }
        let size = n as usize;
        let (a, b) = (fill(seed, 0, size), fill(seed, 1, size));
        let adapter = crpc_guest::compute::adapter()?;
        let module = Module::compile(WGSL)?;
        let ga = Buffer::from_f32(&a)?;
        let gb = Buffer::from_f32(&b)?;
        let gc = Buffer::new(4 * n * n)?;
        let dims = Buffer::from_bytes(&(n as u32).to_le_bytes())?;
        crpc_guest::progress(10.0);
        let groups = (n as u32).div_ceil(TILE);
        let started = Instant::now();
        module.dispatch("matmul", &[&ga, &gb, &gc, &dims], [groups, groups, 1])?;
        let seconds = started.elapsed().as_secs_f64();
        crpc_guest::progress(90.0);
        let c = gc.read_f32()?;
        if n <= CHECK_N {
            check(&a, &b, &c, size)?;
        }
        let checksum: f64 = c.iter().map(|&x| x as f64).sum();
        let gflops = 2.0 * (n as f64).powi(3) / seconds.max(1e-9) / 1e9;
        Ok(json!({"checksum": checksum, "gflops": gflops, "n": n, "adapter": adapter.name}))
    }
}

/// Compares C with the CPU's product (exact: the entries are small integers).
fn check(a: &[f32], b: &[f32], c: &[f32], n: usize) -> crpc_guest::Result<()> {
    for i in 0..n {
        for j in 0..n {
            let want: f32 = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
            if c[i * n + j] != want {
                return Err(format!(
                    "the GPU answered C[{i}][{j}] = {}, the CPU {want}",
                    c[i * n + j]
                )
                .into());
            }
        }
    }
    Ok(())
}
