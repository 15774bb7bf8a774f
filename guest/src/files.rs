//! The running task's files: inputs its arguments name (`{"$file": "sha256:…"}`), read with
//! [`Input`] (`std::io::Read`), and outputs it creates with [`Output`] (`std::io::Write`) and
//! returns as [`Output::value`] anywhere in its answer; the processor uploads them and the
//! answer holds `{"$file": "sha256:…", "name", "size"}` in their place.
//!
//! ```ignore
//! crpc_guest::export! {
//!     fn shout(file: serde_json::Value) -> crpc_guest::Result<serde_json::Value> {
//!         let mut text = String::new();
//!         std::io::Read::read_to_string(&mut crpc_guest::files::Input::open(&file)?, &mut text)?;
//!         let mut out = crpc_guest::files::Output::create("loud.txt")?;
//!         std::io::Write::write_all(&mut out, text.to_uppercase().as_bytes())?;
//!         Ok(out.value())
//!     }
//! }
//! ```
use serde_json::Value;

use crate::bindings::crpc::task::files;
use crate::{Error, Result};

/// Bytes asked for per host call.
const CHUNK: u32 = 1 << 20;

/// An input file of the running task.
#[derive(Debug)]
pub struct Input {
    handle: u32,
    size: u64,
    pos: u64,
}

impl Input {
    /// Opens the file a `{"$file": "sha256:…"}` argument names.
    pub fn open(value: &Value) -> Result<Input> {
        let name = value
            .get("$file")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::fatal(format!("{value} is not a file value")))?;
        let sha = name
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::fatal(format!("`{name}` is not a sha256 file name")))?;
        Input::open_sha256(sha)
    }

    /// Opens an input file by its sha256 (lowercase hex).
    pub fn open_sha256(sha256: &str) -> Result<Input> {
        let handle = files::open(sha256).map_err(Error::fatal)?;
        let size = files::size(handle).map_err(Error::fatal)?;
        Ok(Input {
            handle,
            size,
            pos: 0,
        })
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl std::io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(CHUNK as usize) as u32;
        let got = files::read(self.handle, self.pos, want).map_err(std::io::Error::other)?;
        buf[..got.len()].copy_from_slice(&got);
        self.pos += got.len() as u64;
        Ok(got.len())
    }
}

/// An output file of the running task.
#[derive(Debug)]
pub struct Output {
    handle: u32,
    name: String,
}

impl Output {
    /// Creates output `name`, a relative path of plain parts (`counts.csv`, `plots/a.png`).
    pub fn create(name: &str) -> Result<Output> {
        let handle = files::create(name).map_err(Error::fatal)?;
        Ok(Output {
            handle,
            name: name.to_string(),
        })
    }

    /// The value to return in the answer: `{"$output": name}`.
    pub fn value(&self) -> Value {
        serde_json::json!({ "$output": self.name })
    }
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHUNK as usize);
        files::write(self.handle, &buf[..n]).map_err(std::io::Error::other)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
