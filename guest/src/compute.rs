//! Compute shaders on the slot's GPU (`gpu-compute` of `crpc:task@0.3.0`).
//!
//! ```ignore
//! use crpc_guest::compute::{Buffer, Module};
//! let data = Buffer::from_f32(&[1.0, 2.0, 3.0, 4.0])?;
//! let m = Module::compile(r#"
//!     @group(0) @binding(0) var<storage, read_write> v: array<f32>;
//!     @compute @workgroup_size(64)
//!     fn double(@builtin(global_invocation_id) id: vec3<u32>) {
//!         if (id.x < arrayLength(&v)) { v[id.x] = 2.0 * v[id.x]; }
//!     }"#)?;
//! m.dispatch("double", &[&data], [1, 1, 1])?;
//! assert_eq!(data.read_f32()?, vec![2.0, 4.0, 6.0, 8.0]);
//! ```
//! Every call that fails (bad WGSL, sizes out of bounds, over the task's GPU memory cap, a slot
//! without an adapter) returns a fatal [`Error`](crate::Error) with the host's message. Buffers
//! are freed when dropped, and everything is freed when the task ends.
use crate::bindings::crpc::task::gpu_compute as gc;
use crate::{Error, Result};

pub use gc::AdapterInfo;

/// The most bytes one host read returns; longer reads are split.
const READ_CHUNK: u64 = 64 << 20;
/// The most bytes one host write takes; longer writes are split.
const WRITE_CHUNK: usize = 16 << 20;

/// The adapter this task computes on (an error on a slot without one).
pub fn adapter() -> Result<AdapterInfo> {
    gc::adapter().map_err(Error::fatal)
}

/// A storage buffer on the GPU, bound at `@group(0) @binding(i)` by [`Module::dispatch`].
#[derive(Debug)]
pub struct Buffer {
    handle: u32,
    size: u64,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let _ = gc::destroy_buffer(self.handle);
    }
}

impl Buffer {
    /// A zeroed buffer of `size` bytes (a positive multiple of 4).
    pub fn new(size: u64) -> Result<Buffer> {
        let handle = gc::create_buffer(size).map_err(Error::fatal)?;
        Ok(Buffer { handle, size })
    }

    /// A buffer holding `data`.
    pub fn from_bytes(data: &[u8]) -> Result<Buffer> {
        let b = Buffer::new(data.len() as u64)?;
        b.write(0, data)?;
        Ok(b)
    }

    /// A buffer holding `data` as little-endian f32s.
    pub fn from_f32(data: &[f32]) -> Result<Buffer> {
        Buffer::from_bytes(
            &data
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at `offset` (both multiples of 4 bytes).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        for (i, part) in data.chunks(WRITE_CHUNK).enumerate() {
            let at = offset + (i * WRITE_CHUNK) as u64;
            gc::write_buffer(self.handle, at, part).map_err(Error::fatal)?;
        }
        Ok(())
    }

    /// `len` bytes from `offset`, once the work submitted before has finished.
    pub fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        while at < offset + len {
            let n = READ_CHUNK.min(offset + len - at);
            out.extend(gc::read_buffer(self.handle, at, n as u32).map_err(Error::fatal)?);
            at += n;
        }
        Ok(out)
    }

    /// The whole buffer as little-endian f32s.
    pub fn read_f32(&self) -> Result<Vec<f32>> {
        Ok(self.words()?.map(f32::from_le_bytes).collect())
    }

    /// The whole buffer as little-endian u32s.
    pub fn read_u32(&self) -> Result<Vec<u32>> {
        Ok(self.words()?.map(u32::from_le_bytes).collect())
    }

    /// The whole buffer in 4-byte words.
    fn words(&self) -> Result<impl Iterator<Item = [u8; 4]>> {
        let bytes = self.read(0, self.size)?;
        let words: Vec<[u8; 4]> = bytes
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        Ok(words.into_iter())
    }
}

/// A compiled WGSL module.
#[derive(Debug)]
pub struct Module {
    handle: u32,
}

impl Module {
    /// Compiles `wgsl`; a syntax or validation error names the line and what is wrong.
    pub fn compile(wgsl: &str) -> Result<Module> {
        let handle = gc::compile(wgsl).map_err(|e| Error::fatal(format!("WGSL: {e}")))?;
        Ok(Module { handle })
    }

    /// Runs `entry` over `groups` workgroups with `buffers[i]` at `@group(0) @binding(i)`, and
    /// returns when the GPU has finished.
    pub fn dispatch(&self, entry: &str, buffers: &[&Buffer], groups: [u32; 3]) -> Result<()> {
        let bindings: Vec<gc::Binding> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| gc::Binding {
                index: i as u32,
                buffer: b.handle,
            })
            .collect();
        gc::dispatch(
            self.handle,
            entry,
            &bindings,
            groups[0],
            groups[1],
            groups[2],
        )
        .map_err(Error::fatal)
    }
}
