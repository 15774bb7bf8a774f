//! `crpc package` and `crpc publish`: build (cargo for a wasm package with a Cargo.toml), check
//! like the registry does, archive, sign, upload.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crpc_package::archive::{self, Limits};
use crpc_package::client::RegistryClient;
use crpc_package::{verify, Kind, Manifest};

use crate::cli::{OwnersArgs, PackageArgs, PublishArgs};
use crate::error::{CliError, CliResult};
use crate::output;

/// A checked archive.
pub struct Built {
    /// Its manifest.
    pub manifest: Manifest,
    /// The .tar.gz bytes.
    pub bytes: Vec<u8>,
}

/// Reads and validates `DIR/crpc.toml`.
pub fn read_manifest(dir: &Path) -> CliResult<Manifest> {
    let path = dir.join("crpc.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Other(format!(
            "{}: {e} (a package directory holds crpc.toml; `crpc new NAME` makes one)",
            path.display()
        ))
    })?;
    Manifest::parse(&text).map_err(|e| CliError::Other(format!("{}: {e}", path.display())))
}

/// Builds the archive of a package directory: for a wasm package with a Cargo.toml (and `build`),
/// runs `cargo build --release --target wasm32-wasip2` and copies the component in place first.
pub fn build_dir(dir: &Path, build: bool) -> CliResult<Built> {
    let manifest = read_manifest(dir)?;
    if manifest.kind == Kind::Wasm {
        let component = manifest.component.clone().unwrap_or_default();
        if build && dir.join("Cargo.toml").is_file() {
            let wasm = cargo_build_wasm(dir)?;
            std::fs::copy(&wasm, dir.join(&component)).map_err(|e| {
                CliError::Other(format!(
                    "copying {} to {}: {e}",
                    wasm.display(),
                    dir.join(&component).display()
                ))
            })?;
        }
        if !dir.join(&component).is_file() {
            return Err(CliError::Other(format!(
                "{}: the component `{component}` named in crpc.toml is missing; build it \
                 (`crpc package` runs cargo when the directory has a Cargo.toml)",
                dir.display()
            )));
        }
    }
    let bytes = archive::build(dir)
        .map_err(|e| CliError::Other(format!("archiving {}: {e}", dir.display())))?;
    check(bytes)
}

/// Checks archive bytes the way the registry will (paths, links, sizes, manifest).
pub fn check(bytes: Vec<u8>) -> CliResult<Built> {
    let inspection = archive::inspect(&bytes, &Limits::default())
        .map_err(|e| CliError::Other(format!("the archive would be refused: {e}")))?;
    Ok(Built {
        manifest: inspection.manifest,
        bytes,
    })
}

/// `cargo build` for wasm32-wasip2; returns the .wasm the package's cdylib produced.
fn cargo_build_wasm(dir: &Path) -> CliResult<PathBuf> {
    let manifest_path = dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("crpc: building {} for wasm32-wasip2", dir.display());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| CliError::Other(format!("cannot run cargo: {e} (install Rust: rustup.rs)")))?;
    if !out.status.success() {
        let hint = if wasm_target_missing() {
            " (the wasm32-wasip2 target is not installed: `rustup target add wasm32-wasip2`)"
        } else {
            ""
        };
        return Err(CliError::Other(format!(
            "cargo build failed for {}{hint}",
            manifest_path.display()
        )));
    }
    let canon = manifest_path.canonicalize()?;
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let ours = msg["manifest_path"]
            .as_str()
            .and_then(|p| Path::new(p).canonicalize().ok())
            .is_some_and(|p| p == canon);
        if !ours {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    found = Some(PathBuf::from(f));
                }
            }
        }
    }
    found.ok_or_else(|| {
        CliError::Other(format!(
            "cargo built no .wasm for {}: is `crate-type = [\"cdylib\"]` set under [lib]?",
            manifest_path.display()
        ))
    })
}

fn wasm_target_missing() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            !String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(false)
}

/// `crpc package DIR`.
pub fn package(args: &PackageArgs, json: bool) -> CliResult {
    let built = build_dir(&args.dir, !args.no_build)?;
    let m = &built.manifest;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.tar.gz", m.name, m.version)));
    std::fs::write(&out, &built.bytes)
        .map_err(|e| CliError::Other(format!("writing {}: {e}", out.display())))?;
    let sha = verify::sha256_hex(&built.bytes);
    if json {
        output::json_line(&serde_json::json!({
            "name": m.name, "version": m.version, "path": out, "size": built.bytes.len(), "sha256": sha,
        }));
    } else {
        println!(
            "{} ({} {}, {} bytes, sha256 {sha})",
            out.display(),
            m.name,
            m.version,
            built.bytes.len()
        );
    }
    Ok(())
}

/// `crpc publish DIR|ARCHIVE`.
pub async fn publish(registry: &RegistryClient, args: &PublishArgs, json: bool) -> CliResult {
    let built = if args.path.is_dir() {
        build_dir(&args.path, !args.no_build)?
    } else {
        let bytes = std::fs::read(&args.path)
            .map_err(|e| CliError::Other(format!("{}: {e}", args.path.display())))?;
        check(bytes)?
    };
    let signature = match &args.sign {
        Some(key_file) => {
            let text = std::fs::read_to_string(key_file)
                .map_err(|e| CliError::Other(format!("signing key {}: {e}", key_file.display())))?;
            let key = verify::signing_key(text.trim())
                .map_err(|e| CliError::Other(format!("signing key {}: {e}", key_file.display())))?;
            Some(verify::sign(&built.bytes, &key))
        }
        None => None,
    };
    let m = &built.manifest;
    let info = match registry
        .publish(
            &m.name,
            &m.version,
            built.bytes.clone(),
            signature.as_deref(),
        )
        .await
    {
        Ok(info) => info,
        Err(e) if e.status() == Some(409) => {
            let existing = registry.version(&m.name, &m.version).await?;
            if existing.sha256 != verify::sha256_hex(&built.bytes) {
                return Err(CliError::Rejected(format!(
                    "{} {} is already published with other contents; versions are immutable: \
                     bump `version` in crpc.toml",
                    m.name, m.version
                )));
            }
            if !json {
                eprintln!(
                    "crpc: {} {} was already published with these exact contents",
                    m.name, m.version
                );
            }
            existing
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        output::json_line(&info);
    } else {
        println!(
            "published {} {} (sha256 {}{})",
            info.name,
            info.version,
            info.sha256,
            if info.signature.is_some() {
                ", signed"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `crpc owners NAME [--add SUB…] [--remove SUB…]`.
pub async fn owners(registry: &RegistryClient, args: &OwnersArgs, json: bool) -> CliResult {
    let now = if !args.add.is_empty() {
        registry
            .change_owners(&args.name, args.add.clone(), true)
            .await?
    } else if !args.remove.is_empty() {
        registry
            .change_owners(&args.name, args.remove.clone(), false)
            .await?
    } else {
        registry.owners(&args.name).await?
    };
    if json {
        output::json_line(&now);
    } else {
        println!("{}: {}", now.name, now.owners.join(", "));
    }
    Ok(())
}
