//! `crpc put FILE` and `crpc get HASH [-o FILE]`: task files, streamed both ways.
use std::io::Write;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::cli::{GetArgs, PutArgs};
use crate::client::Api;
use crate::error::{CliError, CliResult};
use crate::output;

/// Uploads the file; prints its `$file` value (or the whole answer with `--json`).
pub async fn put(api: &Api, a: &PutArgs, json: bool) -> CliResult {
    let what = a.file.display();
    let file = tokio::fs::File::open(&a.file)
        .await
        .map_err(|e| CliError::Other(format!("{what}: {e}")))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| CliError::Other(format!("{what}: {e}")))?;
    if !meta.is_file() {
        return Err(CliError::Other(format!("{what} is not a regular file")));
    }
    let stored = api.put_file(file, meta.len()).await?;
    if json {
        output::json_line(&stored);
    } else {
        println!("{}", stored.file);
    }
    Ok(())
}

/// Downloads a file, checking its sha256; into `-o FILE` (written beside it, then renamed, so
/// a failed download leaves nothing half-written) or standard output.
pub async fn get(api: &Api, a: &GetArgs) -> CliResult {
    let hash = a.hash.strip_prefix("sha256:").unwrap_or(&a.hash);
    let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(CliError::Other(format!(
            "`{}` is not a sha256 (64 hex digits, optionally after sha256:)",
            a.hash
        )));
    }
    let hash = hash.to_ascii_lowercase();
    let resp = api.get_file(&hash).await?;
    let (mut out, tmp): (Box<dyn Write>, _) = match &a.output {
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
    let mut sum = Sha256::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Other(format!("downloading {hash}: {e}")))?;
        sum.update(&chunk);
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
    if let (Some(tmp), Some(path)) = (tmp, &a.output) {
        tmp.persist(path)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
