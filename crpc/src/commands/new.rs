//! `crpc new NAME --template wasm|python`: a package that builds, publishes and answers as is.
use std::path::{Path, PathBuf};

use crate::cli::{NewArgs, Template};
use crate::error::{CliError, CliResult};

const WASM: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/wasm/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/wasm/lib.rs.tmpl"),
    ),
    (
        "crpc.toml",
        include_str!("../../templates/wasm/crpc.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/wasm/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/wasm/gitignore.tmpl"),
    ),
];

const PYTHON: &[(&str, &str)] = &[
    (
        "worker.py",
        include_str!("../../templates/python/worker.py.tmpl"),
    ),
    (
        "crpc_worker.py",
        include_str!("../../../sdk/python/crpc_worker.py"),
    ),
    (
        "crpc.toml",
        include_str!("../../templates/python/crpc.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/gitignore.tmpl"),
    ),
];

/// Runs the command.
pub fn run(args: &NewArgs) -> CliResult {
    if !crpc_package::manifest::valid_package_name(&args.name) {
        return Err(CliError::Other(format!(
            "`{}` is not a package name: 1 to 64 lowercase letters, digits and `-`, not starting or ending with `-`",
            args.name
        )));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(CliError::Other(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let crate_name = args.name.replace('-', "_");
    let (files, guest) = match args.template {
        Template::Wasm => (WASM, Some(guest_path(args.guest_path.as_deref())?)),
        Template::Python => (PYTHON, None),
    };
    for (rel, text) in files {
        let text = text
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace(
                "{{guest_path}}",
                &guest
                    .as_ref()
                    .map(|g| g.display().to_string().replace('\\', "/"))
                    .unwrap_or_default(),
            );
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)
            .map_err(|e| CliError::Other(format!("writing {}: {e}", path.display())))?;
    }
    let fname = format!("{}.greet", args.name);
    println!(
        "created {} ({:?} package `{}`)",
        dir.display(),
        args.template,
        args.name
    );
    println!(
        "next:  crpc publish {}  &&  crpc submit {fname} world --wait",
        dir.display()
    );
    Ok(())
}

/// The crpc-guest crate: the flag, else `guest/` of the source tree this binary was built from.
fn guest_path(given: Option<&Path>) -> CliResult<PathBuf> {
    let candidate = match given {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest"),
    };
    candidate
        .join("Cargo.toml")
        .is_file()
        .then(|| candidate.canonicalize())
        .transpose()?
        .ok_or_else(|| {
            CliError::Other(format!(
                "the crpc-guest crate is not at {}: pass --guest-path to the `guest/` directory of a crpc checkout",
                candidate.display()
            ))
        })
}
