//! The `files` interface of `crpc:task@0.2.0` for one running task: its input files (by the
//! sha256 its arguments name, fetched into the processor's file cache) and the output files it
//! creates in its own output directory. Every call is bounded: handles, bytes per read, bytes
//! written in all.
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::files::is_output_name;

/// Open handles one task may hold.
const MAX_HANDLES: usize = 256;
/// Largest read, bytes.
const MAX_READ: u32 = 4 << 20;

enum Handle {
    In { file: std::fs::File, size: u64 },
    Out { file: std::fs::File, size: u64 },
}

/// The files of one running task.
pub struct TaskFiles {
    inputs: HashMap<String, PathBuf>,
    out_dir: PathBuf,
    handles: Vec<Handle>,
    written: u64,
    max_written: u64,
}

impl TaskFiles {
    /// The task's inputs (sha256 → local copy), its output directory (made on the first
    /// `create`), and the most it may write.
    pub fn new(inputs: HashMap<String, PathBuf>, out_dir: PathBuf, max_written: u64) -> Self {
        TaskFiles {
            inputs,
            out_dir,
            handles: Vec::new(),
            written: 0,
            max_written,
        }
    }

    fn add(&mut self, h: Handle) -> Result<u32, String> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(format!("a task opens at most {MAX_HANDLES} files"));
        }
        self.handles.push(h);
        Ok((self.handles.len() - 1) as u32)
    }

    fn get(&mut self, h: u32) -> Result<&mut Handle, String> {
        self.handles
            .get_mut(h as usize)
            .ok_or_else(|| format!("no open file {h}"))
    }

    /// Opens an input file the task's arguments name.
    pub fn open(&mut self, sha256: &str) -> Result<u32, String> {
        let path = self
            .inputs
            .get(sha256)
            .ok_or_else(|| format!("sha256:{sha256} is not a file of this task's arguments"))?;
        let file = std::fs::File::open(path).map_err(|e| format!("opening {sha256}: {e}"))?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        self.add(Handle::In { file, size })
    }

    /// An open file's size.
    pub fn size(&mut self, h: u32) -> Result<u64, String> {
        match self.get(h)? {
            Handle::In { size, .. } | Handle::Out { size, .. } => Ok(*size),
        }
    }

    /// Up to `len` bytes of input `h` from `offset`.
    pub fn read(&mut self, h: u32, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        let Handle::In { file, size } = self.get(h)? else {
            return Err(format!("file {h} is an output: write it, do not read it"));
        };
        let len = len.min(MAX_READ) as u64;
        let want = len.min(size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading file {h}: {e}")),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Creates output `name` in the task's output directory.
    pub fn create(&mut self, name: &str) -> Result<u32, String> {
        if !is_output_name(name) {
            return Err(format!(
                "output name `{name}`: a relative path of plain parts, without `..`"
            ));
        }
        let path = self.out_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("output `{name}`: {e}"))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("output `{name}`: {e}"))?;
        self.add(Handle::Out { file, size: 0 })
    }

    /// Appends to output `h`.
    pub fn write(&mut self, h: u32, bytes: &[u8]) -> Result<(), String> {
        let total = self.written.saturating_add(bytes.len() as u64);
        if total > self.max_written {
            return Err(format!(
                "a task writes at most {} MiB of output files here (--file-cache-mb)",
                self.max_written >> 20
            ));
        }
        let Handle::Out { file, size } = self.get(h)? else {
            return Err(format!("file {h} is an input: it cannot be written"));
        };
        file.write_all(bytes)
            .map_err(|e| format!("writing file {h}: {e}"))?;
        *size += bytes.len() as u64;
        self.written = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_read_outputs_write_and_names_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, b"hello world").unwrap();
        let inputs = HashMap::from([("ab".to_string(), input)]);
        let mut f = TaskFiles::new(inputs, dir.path().join("out"), 16);
        assert!(f.open("cd").is_err(), "only the task's own inputs");
        let h = f.open("ab").unwrap();
        assert_eq!(f.size(h).unwrap(), 11);
        assert_eq!(f.read(h, 6, 100).unwrap(), b"world");
        assert!(f.read(h, 100, 10).unwrap().is_empty());
        assert!(f.write(h, b"x").is_err(), "inputs are read-only");
        for bad in ["../x", "/etc/passwd", "", "a/../../b", "./x"] {
            assert!(f.create(bad).is_err(), "{bad}");
        }
        let o = f.create("sub/out.txt").unwrap();
        f.write(o, b"0123456789").unwrap();
        assert!(f.write(o, b"0123456789").is_err(), "past the output cap");
        assert!(f.create("sub/out.txt").is_err(), "created once");
        let written = std::fs::read(dir.path().join("out/sub/out.txt")).unwrap();
        assert_eq!(written, b"0123456789");
        assert!(f.size(99).is_err());
    }
}
