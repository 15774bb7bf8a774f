//! Where the CLI finds its server, registry and token: the flag, else the environment
//! (`CRPC_SERVER`, `CRPC_REGISTRY`, `CRPC_TOKEN`), else the config file written by `crpc dev` and
//! `crpc login` (`$CRPC_CONFIG`, default `$XDG_CONFIG_HOME/crpc/config.toml` or
//! `~/.config/crpc/config.toml`), else the local defaults.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// Default task server.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";
/// Default registry.
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:7701";

/// The config file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Task server base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Registry base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Token for the registry (publish, owners) when it differs from `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_token: Option<String>,
    /// The server data directory holding `jwt_secret` (for `crpc token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// The config file path in effect, if a home can be found.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRPC_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(x).join("crpc/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .map(|h| PathBuf::from(h).join(".config/crpc/config.toml"))
}

/// Reads the config file; a missing one is empty, a broken one is an error naming it.
pub fn load() -> CliResult<FileConfig> {
    let Some(path) = path() else {
        return Ok(FileConfig::default());
    };
    load_from(&path)
}

fn load_from(path: &Path) -> CliResult<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CliError::Other(format!("config file {}: {}", path.display(), e.message()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(CliError::Other(format!(
            "cannot read config file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the config file atomically, readable by its owner only (it holds a token).
pub fn save(cfg: &FileConfig) -> CliResult<PathBuf> {
    let path = path().ok_or_else(|| {
        CliError::Other("no config file location: set CRPC_CONFIG or HOME".into())
    })?;
    save_to(&path, cfg)?;
    Ok(path)
}

fn save_to(path: &Path, cfg: &FileConfig) -> CliResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let text = toml::to_string(cfg).map_err(|e| CliError::Other(e.to_string()))?;
    crpc_service::fs::write_atomic(path, text.as_bytes())
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))
}

/// Writes `text` to a new file with mode 0600 (replacing a leftover one).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

/// Flags and environment, before the config file fills the gaps.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--server` / `CRPC_SERVER`.
    pub server: Option<String>,
    /// `--registry` / `CRPC_REGISTRY`.
    pub registry: Option<String>,
    /// `--token` / `CRPC_TOKEN`.
    pub token: Option<String>,
    /// `--registry-token` / `CRPC_REGISTRY_TOKEN`.
    pub registry_token: Option<String>,
}

/// What a command talks to.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Task server base URL.
    pub server: String,
    /// Registry base URL.
    pub registry: String,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Token for registry calls: `--registry-token`, else the config file's, else `token`.
    pub registry_token: Option<String>,
    /// Server data dir from the config file.
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Flag or env, else config file, else default.
    pub fn resolve(given: &Given) -> CliResult<Settings> {
        let file = load()?;
        let pick = |g: &Option<String>, f: Option<String>| {
            g.clone()
                .filter(|s| !s.trim().is_empty())
                .or(f)
                .map(|s| s.trim().trim_end_matches('/').to_string())
        };
        Ok(Settings {
            server: pick(&given.server, file.server).unwrap_or_else(|| DEFAULT_SERVER.into()),
            registry: pick(&given.registry, file.registry)
                .unwrap_or_else(|| DEFAULT_REGISTRY.into()),
            registry_token: pick(&given.registry_token, file.registry_token)
                .or_else(|| pick(&given.token, file.token.clone())),
            token: pick(&given.token, file.token),
            data_dir: file.data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_config_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let cfg = FileConfig {
            server: Some("http://h:1".into()),
            registry: None,
            token: Some("t".into()),
            registry_token: None,
            data_dir: Some("/d".into()),
        };
        save_to(&path, &cfg).unwrap();
        assert_eq!(load_from(&path).unwrap(), cfg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "server = 3").unwrap();
        let e = load_from(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
        assert!(load_from(&dir.path().join("none.toml")).unwrap() == FileConfig::default());
    }
}
