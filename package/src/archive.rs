//! Package archives (`.tar.gz`): inspection without writing, safe unpacking, building.
//!
//! Both inspection (registry, at publish) and unpacking (processor, at install) walk the archive
//! with the same checks: relative paths without `..`, only regular files, directories, and links
//! that stay inside the root; an entry count cap and an unpacked size cap checked from the headers
//! *before* any data is inflated (so a gzip bomb is refused after reading a few bytes). Unpacking
//! goes to a temporary directory beside the destination and is renamed into place, so a crash never
//! leaves a half package.
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// Caps applied to every archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries (files, directories, links) at most.
    pub max_entries: usize,
    /// Sum of file sizes at most, bytes.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_unpacked_bytes: 512 << 20,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// One entry is not allowed.
    #[error("archive entry `{entry}`: {reason}")]
    Entry {
        /// The entry's path as stored.
        entry: String,
        /// Why.
        reason: String,
    },
    /// More entries than allowed.
    #[error("archive has more than {limit} entries")]
    TooManyEntries {
        /// The cap.
        limit: usize,
        /// The entry that crossed it.
        entry: String,
    },
    /// Unpacks to more bytes than allowed.
    #[error("archive unpacks to more than {limit} bytes (at entry `{entry}`)")]
    TooLarge {
        /// The cap.
        limit: u64,
        /// The entry that crossed it.
        entry: String,
    },
    /// No `crpc.toml` at the root.
    #[error("archive has no crpc.toml at its root")]
    NoManifest,
    /// The manifest is invalid.
    #[error("crpc.toml: {0}")]
    Manifest(#[from] ManifestError),
    /// Not a gzip-compressed tar.
    #[error("not a valid .tar.gz: {0}")]
    Corrupt(String),
    /// Writing failed.
    #[error("unpacking failed: {0}")]
    Io(#[from] io::Error),
}

impl ArchiveError {
    /// The entry an error is about, if any.
    pub fn entry(&self) -> Option<&str> {
        match self {
            ArchiveError::Entry { entry, .. }
            | ArchiveError::TooManyEntries { entry, .. }
            | ArchiveError::TooLarge { entry, .. } => Some(entry),
            _ => None,
        }
    }
}

/// What an archive holds.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Entries seen.
    pub entries: usize,
    /// Sum of file sizes.
    pub unpacked_bytes: u64,
    /// Files and links (not directories), normalised relative paths.
    pub files: HashSet<String>,
}

enum Kind {
    /// A regular file; whether an execute bit was set (setuid/setgid are never kept).
    File {
        exec: bool,
    },
    Dir,
    Symlink(PathBuf),
    Hardlink(PathBuf),
}

/// Normalises an entry path: relative, no `..`, no root or prefix; `None` for the root itself.
fn clean(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// What the entries seen so far made of each path: the tree that links are resolved against.
#[derive(Default)]
struct Tree {
    /// Every path created so far, explicitly or as the parent of an entry.
    nodes: HashMap<PathBuf, Node>,
    /// Symbolic links: path → target resolved to a root-relative path.
    links: HashMap<PathBuf, PathBuf>,
    /// Paths some link's target was resolved through: they may not become links afterwards,
    /// or the earlier resolution would no longer be what the kernel does.
    walked: HashSet<PathBuf>,
}

#[derive(Clone, Copy, PartialEq)]
enum Node {
    Dir,
    File,
    Link,
}

impl Tree {
    /// Records an entry at `path` (already clean); refuses paths through links and duplicates.
    fn add(&mut self, path: &Path, node: Node) -> Result<(), String> {
        for dir in path.ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                break;
            }
            match self.nodes.get(dir) {
                Some(Node::Link) => {
                    return Err(format!("path goes through the link `{}`", dir.display()))
                }
                Some(Node::File) => {
                    return Err(format!("path goes through the file `{}`", dir.display()))
                }
                _ => {}
            }
        }
        match self.nodes.get(path) {
            Some(Node::Dir) if node == Node::Dir => return Ok(()),
            Some(_) => return Err("the archive holds this path twice".into()),
            None => {}
        }
        if node == Node::Link && self.walked.contains(path) {
            return Err("an earlier link resolves through this path".into());
        }
        for dir in path.ancestors().skip(1) {
            if !dir.as_os_str().is_empty() {
                self.nodes.insert(dir.to_path_buf(), Node::Dir);
            }
        }
        self.nodes.insert(path.to_path_buf(), node);
        Ok(())
    }

    /// Resolves the target of a link at `at`, following the links already in the archive the
    /// way the kernel would; errors if it leaves the root at any step.
    fn resolve(&mut self, at: &Path, target: &Path) -> Result<PathBuf, String> {
        let leaves = || format!("link to `{}` leaves the package root", target.display());
        let mut cur: Vec<std::ffi::OsString> = at
            .parent()
            .map(|p| p.iter().map(|c| c.to_os_string()).collect())
            .unwrap_or_default();
        for c in target.components() {
            match c {
                Component::Normal(part) => {
                    cur.push(part.to_os_string());
                    let here: PathBuf = cur.iter().collect();
                    if let Some(to) = self.links.get(&here) {
                        cur = to.iter().map(|c| c.to_os_string()).collect();
                    }
                    self.walked.insert(here);
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    cur.pop().ok_or_else(leaves)?;
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!("link to absolute path `{}`", target.display()))
                }
            }
        }
        Ok(cur.iter().collect())
    }
}

/// Caps on the extension headers (GNU long names, PAX records) that the `tar` crate reads into
/// memory whole before an entry is seen: checked first, from the raw headers.
const MAX_LONG_NAME: u64 = 4 << 10;
const MAX_PAX: u64 = 64 << 10;

/// A first pass over the raw headers, before the `tar` crate interprets any of them: refuses
/// oversized long-name and PAX headers (a 255 KiB upload could otherwise make it allocate
/// gigabytes), too many entries, and too many unpacked bytes, reading no more than that.
fn check_headers(bytes: &[u8], limits: &Limits) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    let (mut count, mut extensions, mut total) = (0usize, 0usize, 0u64);
    for entry in archive.entries().map_err(corrupt)?.raw(true) {
        let mut entry = entry.map_err(corrupt)?;
        let header = entry.header().clone();
        let ty = header.entry_type();
        let shown = || String::from_utf8_lossy(&header.path_bytes()).into_owned();
        let size = header.entry_size().map_err(corrupt)?;
        if ty.is_gnu_sparse() {
            return Err(ArchiveError::Entry {
                entry: shown(),
                reason: "sparse files are not allowed".into(),
            });
        }
        let cap = if ty.is_gnu_longname() || ty.is_gnu_longlink() {
            Some(MAX_LONG_NAME)
        } else if ty.is_pax_local_extensions() || ty.is_pax_global_extensions() {
            Some(MAX_PAX)
        } else {
            None
        };
        if let Some(cap) = cap {
            if size > cap {
                return Err(ArchiveError::Entry {
                    entry: shown(),
                    reason: format!("extension header of {size} bytes (at most {cap})"),
                });
            }
            // A PAX `size` record moves where the next header starts for the `tar` crate but
            // not for this raw pass, so the two would see different archives: refused (only
            // files over 8 GiB need one, far past the unpacked-size cap).
            if ty.is_pax_local_extensions() {
                let pax = entry
                    .pax_extensions()
                    .map_err(corrupt)?
                    .into_iter()
                    .flatten();
                for record in pax {
                    if record.map_err(corrupt)?.key_bytes() == b"size" {
                        return Err(ArchiveError::Entry {
                            entry: shown(),
                            reason: "PAX `size` records are not allowed".into(),
                        });
                    }
                }
            }
            extensions += 1;
            if extensions > 3 * limits.max_entries + 3 {
                return Err(ArchiveError::TooManyEntries {
                    limit: limits.max_entries,
                    entry: shown(),
                });
            }
            continue;
        }
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
                entry: shown(),
            });
        }
        if ty.is_file() || ty.is_contiguous() {
            total = total.saturating_add(size);
            if total > limits.max_unpacked_bytes {
                return Err(ArchiveError::TooLarge {
                    limit: limits.max_unpacked_bytes,
                    entry: shown(),
                });
            }
        }
    }
    Ok(())
}

/// Walks every entry with all checks; `visit` gets the clean path, the kind and the entry reader.
fn walk(
    bytes: &[u8],
    limits: &Limits,
    mut visit: impl FnMut(&Path, &Kind, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(usize, u64, HashSet<String>), ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let mut count = 0usize;
    let mut total = 0u64;
    let mut files = HashSet::new();
    let mut tree = Tree::default();
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let bad = |reason: String| ArchiveError::Entry {
            entry: shown.clone(),
            reason,
        };
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            continue;
        }
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
                entry: shown,
            });
        }
        let Some(path) = clean(&raw).map_err(bad)? else {
            continue;
        };
        let kind = if ty.is_file() || ty.is_contiguous() {
            let size = entry.size();
            total = total.saturating_add(size);
            if total > limits.max_unpacked_bytes {
                return Err(ArchiveError::TooLarge {
                    limit: limits.max_unpacked_bytes,
                    entry: shown,
                });
            }
            tree.add(&path, Node::File).map_err(bad)?;
            Kind::File {
                exec: entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false),
            }
        } else if ty.is_dir() {
            tree.add(&path, Node::Dir).map_err(bad)?;
            Kind::Dir
        } else if ty.is_symlink() || ty.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(corrupt)?
                .ok_or_else(|| bad("link without a target".into()))?
                .into_owned();
            if ty.is_symlink() {
                if tree.walked.contains(&path) {
                    return Err(bad("an earlier link resolves through this path".into()));
                }
                let resolved = tree.resolve(&path, &target).map_err(bad)?;
                tree.add(&path, Node::Link).map_err(bad)?;
                tree.links.insert(path.clone(), resolved);
                Kind::Symlink(target)
            } else {
                // Only to a regular file written earlier: never to a link (which would copy the
                // link, unlisted), a directory or anything not yet there.
                let src = clean(&target)
                    .ok()
                    .flatten()
                    .filter(|src| tree.nodes.get(src) == Some(&Node::File))
                    .ok_or_else(|| {
                        bad(format!(
                            "hard link to `{}`, which is not a regular file earlier in the archive",
                            target.display()
                        ))
                    })?;
                tree.add(&path, Node::File).map_err(bad)?;
                Kind::Hardlink(src)
            }
        } else {
            return Err(bad("only files, directories and links inside the package are allowed (device, fifo or other special entry)".into()));
        };
        if !matches!(kind, Kind::Dir) {
            files.insert(path.to_string_lossy().to_string());
        }
        visit(&path, &kind, &mut entry)?;
    }
    Ok((count, total, files))
}

/// Checks an archive without writing anything; returns its validated manifest.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Inspection, ArchiveError> {
    check_headers(bytes, limits)?;
    let mut manifest_text: Option<String> = None;
    let (entries, unpacked_bytes, files) = walk(bytes, limits, |path, kind, reader| {
        if matches!(kind, Kind::File { .. }) && path == Path::new(MANIFEST_FILE) {
            let mut text = String::new();
            reader
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| ArchiveError::Corrupt(format!("crpc.toml is not UTF-8 text: {e}")))?;
            manifest_text = Some(text);
        }
        Ok(())
    })?;
    let manifest = Manifest::parse(&manifest_text.ok_or(ArchiveError::NoManifest)?)?;
    if let Some(c) = &manifest.component {
        let c = clean(Path::new(c))
            .ok()
            .flatten()
            .map(|p| p.to_string_lossy().to_string());
        if !c.as_ref().is_some_and(|c| files.contains(c)) {
            return Err(ArchiveError::Manifest(ManifestError {
                field: "component".into(),
                message: format!(
                    "`{}` is not a file in the archive",
                    manifest.component.as_deref().unwrap_or("")
                ),
            }));
        }
    }
    Ok(Inspection {
        manifest,
        entries,
        unpacked_bytes,
        files,
    })
}

/// Unpacks into `dest` (which must not exist): into a temporary sibling first, renamed into place
/// only when every entry passed. On error nothing is left behind.
pub fn unpack(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<Inspection, ArchiveError> {
    let inspection = inspect(bytes, limits)?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{:x}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("pkg"),
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::create_dir(&tmp)?;
    let result = walk(bytes, limits, |path, kind, reader| {
        let target = tmp.join(path);
        no_link_on_the_way(&tmp, path)?;
        if let Some(p) = target.parent() {
            fs::create_dir_all(p)?;
        }
        match kind {
            Kind::Dir => fs::create_dir_all(&target)?,
            Kind::File { exec } => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)?;
                io::copy(reader, &mut f)?;
                f.flush()?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if *exec { 0o755 } else { 0o644 };
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
                }
            }
            Kind::Symlink(to) => {
                #[cfg(unix)]
                std::os::unix::fs::symlink(to, &target)?;
                #[cfg(not(unix))]
                return Err(ArchiveError::Entry {
                    entry: path.display().to_string(),
                    reason: format!("symbolic links are not supported here ({})", to.display()),
                });
            }
            Kind::Hardlink(src) => {
                fs::hard_link(tmp.join(src), &target)?;
            }
        }
        Ok(())
    });
    match result {
        Ok(_) => match fs::rename(&tmp, dest) {
            Ok(()) => Ok(inspection),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Belt and braces for the checks of [`Tree`]: no directory between `root` and `root/path` that
/// already exists is a symbolic link, so creating the entry cannot be redirected outside.
fn no_link_on_the_way(root: &Path, path: &Path) -> Result<(), ArchiveError> {
    let mut at = root.to_path_buf();
    for part in path.parent().into_iter().flat_map(|p| p.iter()) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ArchiveError::Entry {
                    entry: path.display().to_string(),
                    reason: format!("path goes through the link `{}`", at.display()),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Builds a reproducible `.tar.gz` of a directory (sorted, files and directories only, no links followed),
/// skipping `target/`, `.git/` and dot-directories of tools.
pub fn build(dir: &Path) -> io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    // No mtimes or owners in the headers: the same files always make the same bytes (and the
    // same digest), so republishing an unchanged package is recognisably a no-op.
    tar.mode(tar::HeaderMode::Deterministic);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(dir.join(&rel))?.collect::<Result<_, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            let name_s = name.to_string_lossy();
            if name_s == ".git"
                || name_s == "target"
                || name_s == ".venv"
                || name_s == "__pycache__"
            {
                continue;
            }
            let rel_path = rel.join(&name);
            let ft = e.file_type()?;
            if ft.is_dir() {
                tar.append_dir(&rel_path, e.path())?;
                stack.push(rel_path);
            } else if ft.is_file() {
                tar.append_path_with_name(e.path(), &rel_path)?;
            }
        }
    }
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn good_archive_unpacks_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pkgs/demo/1.0.0");
        let i = unpack(&testing::good("demo", "1.0.0"), &dest, &Limits::default()).unwrap();
        assert_eq!(i.manifest.name, "demo");
        assert!(dest.join("crpc.toml").is_file() && dest.join("pi.wasm").is_file());
        let leftovers: Vec<_> = fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary directory left behind");
        // A second unpack into the same place refuses rather than mixing versions.
        assert!(unpack(&testing::good("demo", "1.0.0"), &dest, &Limits::default()).is_err());
    }

    #[test]
    fn hostile_archives_are_refused_by_inspection_and_unpacking() {
        for (label, bytes, entry) in testing::hostile("demo", "1.0.0") {
            let e = inspect(&bytes, &Limits::default()).unwrap_err();
            assert_eq!(e.entry(), Some(entry.as_str()), "{label}: {e}");

            let root = tempfile::tempdir().unwrap();
            let sandbox = root.path().join("a/b/c");
            fs::create_dir_all(&sandbox).unwrap();
            let dest = sandbox.join("pkg");
            let e = unpack(&bytes, &dest, &Limits::default()).unwrap_err();
            assert_eq!(e.entry(), Some(entry.as_str()), "{label}: {e}");
            assert!(!dest.exists(), "{label}: nothing installed");
            let mut found = Vec::new();
            let mut stack = vec![root.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p.clone());
                    }
                    found.push(p);
                }
            }
            assert_eq!(
                found.iter().filter(|p| !sandbox.starts_with(p)).count(),
                0,
                "{label}: nothing written anywhere: {found:?}"
            );
        }
    }

    #[test]
    fn links_inside_the_package_are_fine() {
        let bytes = testing::Raw::default()
            .file("crpc.toml", testing::manifest("demo", "1.0.0").as_bytes())
            .file("lib/real.wasm", b"x")
            .symlink("pi.wasm", "lib/real.wasm")
            .hardlink("copy.wasm", "lib/real.wasm")
            .finish();
        let dir = tempfile::tempdir().unwrap();
        unpack(&bytes, &dir.path().join("p"), &Limits::default()).unwrap();
        assert_eq!(fs::read(dir.path().join("p/pi.wasm")).unwrap(), b"x");
    }

    #[test]
    fn build_round_trips_a_directory() {
        let src = tempfile::tempdir().unwrap();
        fs::write(
            src.path().join("crpc.toml"),
            testing::manifest("demo", "2.0.0"),
        )
        .unwrap();
        fs::write(src.path().join("pi.wasm"), b"x").unwrap();
        fs::create_dir(src.path().join("target")).unwrap();
        fs::write(src.path().join("target/junk"), b"x").unwrap();
        let bytes = build(src.path()).unwrap();
        let i = inspect(&bytes, &Limits::default()).unwrap();
        assert_eq!(i.manifest.version, "2.0.0");
        assert_eq!(i.files.len(), 2, "{:?}", i.files);
    }

    mod never_outside {
        use super::*;
        use proptest::prelude::*;
        use sha2::{Digest, Sha256};

        #[derive(Debug, Clone)]
        enum E {
            File(String),
            Dir(String),
            Symlink(String, String),
            Hardlink(String, String),
        }

        fn path() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
                .prop_map(|v| v.join("/"))
        }

        fn target() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "..", "."]), 1..6)
                .prop_map(|v| v.join("/"))
        }

        fn entry() -> impl Strategy<Value = E> {
            prop_oneof![
                path().prop_map(E::File),
                path().prop_map(E::Dir),
                (path(), target()).prop_map(|(p, t)| E::Symlink(p, t)),
                (path(), path()).prop_map(|(p, t)| E::Hardlink(p, t)),
            ]
        }

        /// Every path under `root` except the installed package, with what it holds.
        fn snapshot(root: &Path, skip: &Path) -> Vec<(PathBuf, String)> {
            let mut out = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p == skip {
                        continue;
                    }
                    let m = fs::symlink_metadata(&p).unwrap();
                    let what = if m.file_type().is_symlink() {
                        format!("link {:?}", fs::read_link(&p).unwrap())
                    } else if m.is_dir() {
                        stack.push(p.clone());
                        "dir".to_string()
                    } else {
                        hex::encode(Sha256::digest(fs::read(&p).unwrap()))
                    };
                    out.push((p, what));
                }
            }
            out.sort();
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn unpacking_never_creates_or_changes_anything_outside_the_root(
                entries in prop::collection::vec(entry(), 1..12)
            ) {
                let mut raw = testing::Raw::default()
                    .file("crpc.toml", testing::manifest("demo", "1.0.0").as_bytes())
                    .file("pi.wasm", b"x");
                for e in &entries {
                    raw = match e {
                        E::File(p) => raw.file(p, b"pwned"),
                        E::Dir(p) => raw.dir(p),
                        E::Symlink(p, t) => raw.symlink(p, t),
                        E::Hardlink(p, t) => raw.hardlink(p, t),
                    };
                }
                let bytes = raw.finish();
                let root = tempfile::tempdir().unwrap();
                for d in ["a/b/c", "outside", "box"] {
                    fs::create_dir_all(root.path().join(d)).unwrap();
                }
                for f in ["a/b/c/x", "a/b/x", "outside/secret", "box/x"] {
                    fs::write(root.path().join(f), b"keep").unwrap();
                }
                let dest = root.path().join("box/pkg");
                let before = snapshot(root.path(), &dest);
                let result = unpack(&bytes, &dest, &Limits::default());
                prop_assert_eq!(before, snapshot(root.path(), &dest), "{:?}", result.as_ref().err());
                if result.is_ok() {
                    let inside = dest.canonicalize().unwrap();
                    let mut stack = vec![dest.clone()];
                    while let Some(d) = stack.pop() {
                        for e in fs::read_dir(&d).unwrap() {
                            let p = e.unwrap().path();
                            let m = fs::symlink_metadata(&p).unwrap();
                            if m.file_type().is_symlink() {
                                if let Ok(to) = p.canonicalize() {
                                    prop_assert!(to.starts_with(&inside), "{p:?} -> {to:?}");
                                }
                            } else if m.is_dir() {
                                stack.push(p);
                            }
                        }
                    }
                }
            }
        }
    }
}
