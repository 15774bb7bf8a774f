//! `crpc put FILE` and `crpc get HASH [-o FILE]`: task files, streamed both ways.
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use task_api::FileStored;

use crate::cli::{GetArgs, PutArgs};
use crate::client::Api;
use crate::error::{CliError, CliResult};
use crate::output;

/// Uploads the file; prints its `$file` value (or the whole answer with `--json`).
pub async fn put(api: &Api, a: &PutArgs, json: bool) -> CliResult {
    let stored = upload(api, &a.file).await?;
    if json {
        output::json_line(&stored);
    } else {
        println!("{}", stored.file);
    }
    Ok(())
}

/// Uploads the file at `path` (streamed).
pub async fn upload(api: &Api, path: &Path) -> CliResult<FileStored> {
    let what = path.display();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Other(format!("{what}: {e}")))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| CliError::Other(format!("{what}: {e}")))?;
    if !meta.is_file() {
        return Err(CliError::Other(format!("{what} is not a regular file")));
    }
    api.put_file(file, meta.len()).await
}

/// Downloads every file value in `answer` into `dir`, each under the last part of its `name`
/// (its sha256 when it has none or the name is not a plain file name); where they went.
pub async fn download_answer_files(
    api: &Api,
    answer: &Value,
    dir: &Path,
) -> CliResult<Vec<(PathBuf, u64)>> {
    let mut found = Vec::new();
    file_values(answer, &mut found);
    std::fs::create_dir_all(dir).map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for (hash, name) in found {
        let plain = name
            .as_deref()
            .and_then(|n| n.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains('\\'));
        let path = dir.join(plain.unwrap_or(&hash));
        let size = save(api, &hash, Some(&path)).await?;
        out.push((path, size));
    }
    Ok(out)
}

/// (sha256, name) of every `{"$file": "sha256:…"}` value under `v`.
fn file_values(v: &Value, out: &mut Vec<(String, Option<String>)>) {
    match v {
        Value::Object(o) => match o.get("$file").and_then(Value::as_str) {
            Some(f) => {
                if let Some(h) = f.strip_prefix("sha256:") {
                    let name = o.get("name").and_then(Value::as_str).map(str::to_string);
                    out.push((h.to_string(), name));
                }
            }
            None => o.values().for_each(|x| file_values(x, out)),
        },
        Value::Array(a) => a.iter().for_each(|x| file_values(x, out)),
        _ => {}
    }
}

/// Downloads a file, checking its sha256; into `-o FILE` (written beside it, then renamed, so
/// a failed download leaves nothing half-written) or standard output.
pub async fn get(api: &Api, a: &GetArgs) -> CliResult {
    save(api, &a.hash, a.output.as_deref()).await.map(|_| ())
}

/// Downloads file `hash` into `output` (standard output when `None`); its size.
async fn save(api: &Api, hash: &str, output: Option<&Path>) -> CliResult<u64> {
    let given = hash;
    let hash = hash
        .strip_prefix("sha256:")
        .unwrap_or(hash)
        .to_ascii_lowercase();
    if !task_api::files::is_sha256(&hash) {
        return Err(CliError::Other(format!(
            "`{given}` is not a sha256 (64 hex digits, optionally after sha256:)"
        )));
    }
    let resp = api.get_file(&hash).await?;
    let (mut out, tmp): (Box<dyn Write>, _) = match output {
        None => (Box::new(std::io::stdout().lock()), None),
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(std::path::Path::new(".")))
                .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
            let file = tmp
                .reopen()
                .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
            (Box::new(std::io::BufWriter::new(file)), Some(tmp))
        }
    };
    let (mut sum, mut size) = (Sha256::new(), 0u64);
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Other(format!("downloading {hash}: {e}")))?;
        sum.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .map_err(|e| CliError::Other(format!("writing: {e}")))?;
    }
    out.flush()
        .map_err(|e| CliError::Other(format!("writing: {e}")))?;
    drop(out);
    let got = hex::encode(sum.finalize());
    if got != hash {
        return Err(CliError::Other(format!(
            "the download's sha256 is {got}, not {hash}: discarded"
        )));
    }
    if let (Some(tmp), Some(path)) = (tmp, output) {
        tmp.persist(path)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    }
    Ok(size)
}
