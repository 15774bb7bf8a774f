//! Archive builders for tests: good packages and hostile ones (path escapes, links out, device
//! files, entry floods, decompression bombs). Compiled for tests and the `test-archives` feature.
use std::io::{Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

/// A manifest for a wasm package `name@version` with `estimate_pi(samples: integer)`.
pub fn manifest(name: &str, version: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\nkind = \"wasm\"\ncomponent = \"pi.wasm\"\n\n\
         [functions.estimate_pi]\nargs = [{{ name = \"samples\", type = \"integer\" }}]\nreturns = \"number\"\n\n\
         [functions.f]\nargs = [{{ name = \"x\", type = \"integer\" }}]\n"
    )
}

/// Incremental archive builder that can write any header, hostile ones included.
pub struct Raw {
    tar: tar::Builder<GzEncoder<Vec<u8>>>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            tar: tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }
}

impl Raw {
    fn header(path: &str, kind: EntryType, size: u64, link: Option<&str>) -> Header {
        let mut h = Header::new_old();
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                old.linkname.fill(0);
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// A regular file (the path is written verbatim: `../x` and `/x` included).
    pub fn file(mut self, path: &str, data: &[u8]) -> Self {
        let h = Self::header(path, EntryType::Regular, data.len() as u64, None);
        self.tar.append(&h, data).expect("append");
        self
    }

    /// A regular file of `size` zero bytes, streamed (for bombs).
    pub fn zeros(mut self, path: &str, size: u64) -> Self {
        let h = Self::header(path, EntryType::Regular, size, None);
        self.tar
            .append(&h, std::io::repeat(0).take(size))
            .expect("append");
        self
    }

    /// A symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let h = Self::header(path, EntryType::Symlink, 0, Some(target));
        self.tar.append(&h, std::io::empty()).expect("append");
        self
    }

    /// A hard link.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let h = Self::header(path, EntryType::Link, 0, Some(target));
        self.tar.append(&h, std::io::empty()).expect("append");
        self
    }

    /// A GNU or PAX extension header (`L`, `K`, `x`, `g`) of `size` bytes: `fill` repeated.
    pub fn extension(mut self, kind: EntryType, size: u64, fill: &[u8]) -> Self {
        let mut h = if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            Header::new_gnu()
        } else {
            Header::new_ustar()
        };
        h.set_path(if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            "@LongLink"
        } else {
            "pax"
        })
        .expect("path");
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        let data = fill.iter().copied().cycle().take(size as usize);
        let data: Vec<u8> = data.collect();
        self.tar.append(&h, data.as_slice()).expect("append");
        self
    }

    /// A directory.
    pub fn dir(mut self, path: &str) -> Self {
        let h = Self::header(path, EntryType::Directory, 0, None);
        self.tar.append(&h, std::io::empty()).expect("append");
        self
    }

    /// A character device.
    pub fn device(mut self, path: &str) -> Self {
        let h = Self::header(path, EntryType::Char, 0, None);
        self.tar.append(&h, std::io::empty()).expect("append");
        self
    }

    /// The finished `.tar.gz`.
    pub fn finish(self) -> Vec<u8> {
        let mut gz = self.tar.into_inner().expect("tar");
        gz.flush().expect("flush");
        gz.finish().expect("gzip")
    }
}

/// A valid wasm package archive.
pub fn good(name: &str, version: &str) -> Vec<u8> {
    good_with(name, version, b"\0asm fake component")
}

/// A valid package whose component holds `component` (lets two archives differ).
pub fn good_with(name: &str, version: &str, component: &[u8]) -> Vec<u8> {
    Raw::default()
        .file("crpc.toml", manifest(name, version).as_bytes())
        .file("pi.wasm", component)
        .finish()
}

/// Every hostile archive, with the entry a refusal must name: (label, archive, entry).
pub fn hostile(name: &str, version: &str) -> Vec<(&'static str, Vec<u8>, String)> {
    let m = manifest(name, version);
    let base = || {
        Raw::default()
            .file("crpc.toml", m.as_bytes())
            .file("pi.wasm", b"x")
    };
    let mut flood = base();
    for i in 0..100_000 {
        flood = flood.file(&format!("f/{i}"), b"");
    }
    vec![
        (
            "dot-dot escape",
            base().file("../escape", b"pwned").finish(),
            "../escape".into(),
        ),
        (
            "absolute path",
            base().file("/abs/path", b"pwned").finish(),
            "/abs/path".into(),
        ),
        (
            "symlink to /etc",
            base().symlink("etc", "/etc").finish(),
            "etc".into(),
        ),
        (
            "symlink up and out",
            base().symlink("up", "../../..").finish(),
            "up".into(),
        ),
        (
            "hardlink out",
            base().hardlink("passwd", "../../etc/passwd").finish(),
            "passwd".into(),
        ),
        (
            // Judged lexically, `esc` stays inside; resolved through `up`, it leaves.
            "symlink chain out",
            base()
                .dir("d0/d1/d2/d3")
                .symlink("d0/d1/d2/d3/up", "../../../..")
                .symlink("esc", "d0/d1/d2/d3/up/../../../..")
                .file("esc/pwned", b"pwned")
                .finish(),
            "esc".into(),
        ),
        (
            // A hard link to a symlink would be an unlisted symlink that `h/pwned` is written
            // through.
            "hard link to a symlink",
            base()
                .symlink("a/s", "..")
                .hardlink("h", "a/s")
                .file("h/pwned", b"pwned")
                .finish(),
            "h".into(),
        ),
        (
            // `a` was resolved while `b` was a plain name; turning `b` into a link afterwards
            // would make `a` point outside.
            "walked path made a link later",
            base()
                .dir("c")
                .symlink("a", "b/c/../..")
                .symlink("b", ".")
                .finish(),
            "b".into(),
        ),
        (
            "file written through a link",
            base().dir("d").symlink("l", "d").file("l/x", b"x").finish(),
            "l/x".into(),
        ),
        (
            "same path twice",
            base().file("pi.wasm", b"again").finish(),
            "pi.wasm".into(),
        ),
        (
            "GNU long-name bomb",
            base()
                .extension(EntryType::GNULongName, 64 << 20, b"a/")
                .file("x", b"x")
                .finish(),
            "@LongLink".into(),
        ),
        (
            "PAX header bomb",
            base()
                .extension(EntryType::XHeader, 16 << 20, b"0")
                .file("x", b"x")
                .finish(),
            "pax".into(),
        ),
        (
            "device file",
            base().device("dev/null").finish(),
            "dev/null".into(),
        ),
        ("100k tiny entries", flood.finish(), "f/9998".into()),
        (
            "1 GiB bomb",
            base().zeros("bomb.bin", 1 << 30).finish(),
            "bomb.bin".into(),
        ),
    ]
}
