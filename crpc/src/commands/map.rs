//! `crpc map PKG.FUNC --inputs FILE.jsonl`: one task per input line, submitted in batches;
//! results stream to stdout as JSON lines in completion order, or in input order with
//! `--ordered` (`index` is the input line's position, counting from 0); a progress bar with the
//! server's ETA on stderr; Ctrl-C cancels what has not finished, on the server (one request per
//! batch). An input may refer to an earlier input's answer with `{"$ref": "#N"}` (N its
//! position): across chunks the CLI writes the task id in its place.
use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use task_api::{BatchResultsResponse, BatchStatusResponse, TaskState};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cli::MapArgs;
use crate::client::Api;
use crate::error::{CliError, CliResult};
use crate::{output, spec};

/// How long one results long-poll lasts, seconds.
const POLL_S: f64 = 10.0;
/// Concurrent batch cancel requests after Ctrl-C.
const CANCEL_CONCURRENCY: usize = 8;

/// One line of output: the input's position, the task, how it ended.
#[derive(serde::Serialize)]
struct MapLine {
    index: u64,
    id: Uuid,
    state: TaskState,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<task_api::TaskError>,
}

struct Batch {
    id: Uuid,
    offset: u64,
    ids: Vec<Uuid>,
}

/// Runs the command.
pub async fn run(api: &Api, args: &MapArgs, _json: bool) -> CliResult {
    let started = Instant::now();
    let common = spec::parse_kwargs(args.opts.kwargs.as_deref())?;
    let inputs = read_inputs(&args.inputs)?;
    if inputs.is_empty() {
        return Err(CliError::Other(format!(
            "{}: no inputs (one JSON value per line)",
            args.inputs.display()
        )));
    }
    let total = inputs.len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ({per_sec}, {eta} left at this rate) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message("submitting");
    // One SIGINT listener for the whole run: a Ctrl-C between two polls is not lost.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    // Submit in chunks; Ctrl-C here cancels what was already accepted.
    let mut batches: Vec<Batch> = Vec::new();
    let mut offset = 0u64;
    let mut iter = inputs.into_iter();
    loop {
        let chunk: Vec<_> = iter.by_ref().take(args.chunk as usize).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len() as u64;
        let specs = chunk
            .into_iter()
            .map(|(mut a, k)| {
                let mut kwargs = common.clone();
                kwargs.extend(k);
                let earlier = |i: u64| id_of(&batches, i);
                a.iter_mut()
                    .chain(kwargs.values_mut())
                    .for_each(|v| rebase_refs(v, offset, &earlier));
                spec::build(&args.target, a, kwargs, &args.opts)
            })
            .collect::<CliResult<Vec<_>>>()?;
        tokio::select! {
            r = api.submit_batch(specs) => {
                let r = r.inspect_err(|_| {
                    bar.finish_and_clear();
                    if offset > 0 {
                        eprintln!("crpc: inputs {offset}.. were not submitted; the first {offset} were");
                    }
                })?;
                batches.push(Batch { id: r.batch_id, offset, ids: r.ids });
            }
            _ = sigint.recv() => {
                return interrupted(api, &bar, &batches, &HashSet::new()).await;
            }
        }
        offset += n;
    }
    bar.set_message("");

    // One long-polling results stream per batch, merged; in input order, one batch after
    // the other.
    let (tx, mut rx) = mpsc::channel::<(u64, CliResult<BatchResultsResponse>)>(64);
    let streams: Vec<Vec<(Uuid, u64)>> = match args.ordered {
        true => vec![batches.iter().map(|b| (b.id, b.offset)).collect()],
        false => batches.iter().map(|b| vec![(b.id, b.offset)]).collect(),
    };
    for list in streams {
        let (api, tx, ordered) = (api.clone(), tx.clone(), args.ordered);
        tokio::spawn(async move {
            for (id, off) in list {
                let mut after = 0;
                loop {
                    let page = api.batch_results(id, after, POLL_S, ordered).await;
                    let stop = match &page {
                        Ok(p) => {
                            after = p.next;
                            p.done
                        }
                        Err(_) => true,
                    };
                    let failed = page.is_err();
                    if tx.send((off, page)).await.is_err() || failed {
                        return;
                    }
                    if stop {
                        break;
                    }
                }
            }
        });
    }
    drop(tx);

    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut done: HashSet<Uuid> = HashSet::new();
    let mut failed = 0u64;
    let mut eta_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some((off, page)) = msg else { break };
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        bar.finish_and_clear();
                        let _ = out.flush();
                        eprintln!("crpc: lost the results stream; {} of {total} results were printed; \
                                   the tasks go on (see `crpc tasks`)", done.len());
                        return Err(e);
                    }
                };
                let mut lines = String::new();
                for r in page.results {
                    if !done.insert(r.id) {
                        continue;
                    }
                    if r.state != TaskState::Succeeded {
                        failed += 1;
                    }
                    let line = MapLine { index: off + r.index, id: r.id, state: r.state, answer: r.answer, error: r.error };
                    lines.push_str(&serde_json::to_string(&line).unwrap_or_default());
                    lines.push('\n');
                    bar.inc(1);
                }
                if tty {
                    bar.suspend(|| { let _ = out.write_all(lines.as_bytes()); let _ = out.flush(); });
                } else {
                    out.write_all(lines.as_bytes())?;
                }
                if done.len() as u64 >= total {
                    break;
                }
            }
            _ = eta_tick.tick() => {
                if let Some((eta, p10, p90)) = server_eta(api, &batches).await {
                    bar.set_message(format!(
                        "server ETA {} ({}–{})",
                        output::seconds(eta),
                        output::seconds(p10),
                        output::seconds(p90)
                    ));
                }
            }
            _ = sigint.recv() => {
                let _ = out.flush();
                return interrupted(api, &bar, &batches, &done).await;
            }
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!(
        "crpc: {total} task(s) in {}: {} succeeded, {failed} did not",
        output::seconds(started.elapsed().as_secs_f64()),
        total - failed
    );
    if failed > 0 {
        return Err(CliError::TaskFailed(format!(
            "{failed} of {total} task(s) did not succeed (their lines have \"state\" and \"error\")"
        )));
    }
    Ok(())
}

/// Reads the inputs: one JSON value per non-empty line.
fn read_inputs(path: &std::path::Path) -> CliResult<Vec<spec::Input>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
            |e| CliError::Other(format!("--inputs {}: {e}", path.display())),
        )?))
    };
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| CliError::Other(format!("{} line {}: {e}", path.display(), n + 1));
        let v: Value = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        out.push(spec::input_line(v).map_err(|e| at(e.to_string()))?);
    }
    Ok(out)
}

/// The server's ETA for what is left of our batches (they run one after another), with its
/// 10th and 90th percentiles, seconds.
async fn server_eta(api: &Api, batches: &[Batch]) -> Option<(f64, f64, f64)> {
    let mut sum = (0.0, 0.0, 0.0);
    for b in batches {
        let v: BatchStatusResponse = api.get(&format!("/user/batches/{}", b.id)).await.ok()?;
        if !v.done {
            let eta = v.eta.eta_s?;
            sum.0 += eta;
            sum.1 += v.eta.eta_p10_s.unwrap_or(eta);
            sum.2 += v.eta.eta_p90_s.unwrap_or(eta);
        }
    }
    Some(sum)
}

/// Ctrl-C: cancels every batch's unfinished tasks (one request per batch), then exits 130.
async fn interrupted(
    api: &Api,
    bar: &ProgressBar,
    batches: &[Batch],
    done: &HashSet<Uuid>,
) -> CliResult {
    let left = batches.iter().map(|b| b.ids.len()).sum::<usize>() - done.len();
    bar.set_message(format!("interrupted: cancelling {left} task(s)"));
    let cancelled: u64 = stream::iter(batches.iter())
        .map(|b| async move { api.cancel_batch(b.id).await.map_or(0, |r| r.cancelled) })
        .buffer_unordered(CANCEL_CONCURRENCY)
        .fold(0, |n, c| std::future::ready(n + c))
        .await;
    bar.finish_and_clear();
    Err(CliError::Interrupted(format!(
        "interrupted: cancelled {cancelled} unfinished task(s) on the server ({} had finished meanwhile)",
        (left as u64).saturating_sub(cancelled)
    )))
}

/// The task id of input `i`, when it was submitted in an earlier chunk.
fn id_of(batches: &[Batch], i: u64) -> Option<Uuid> {
    let b = batches.iter().rev().find(|b| b.offset <= i)?;
    b.ids.get((i - b.offset) as usize).copied()
}

/// Makes `{"$ref": "#N"}` (N an input's position) right for the chunk starting at input
/// `offset`: an earlier chunk's input becomes its task id, one of this chunk `#(N - offset)`.
fn rebase_refs(v: &mut Value, offset: u64, earlier: &dyn Fn(u64) -> Option<Uuid>) {
    match v {
        Value::Object(o) if o.contains_key("$ref") => {
            let n = o["$ref"]
                .as_str()
                .and_then(|s| s.strip_prefix('#')?.parse::<u64>().ok());
            if let Some(n) = n {
                let to = match (n.checked_sub(offset), earlier(n)) {
                    (None, Some(id)) => id.to_string(),
                    (Some(k), _) => format!("#{k}"),
                    (None, None) => return,
                };
                o.insert("$ref".into(), Value::String(to));
            }
        }
        Value::Object(o) => o.values_mut().for_each(|x| rebase_refs(x, offset, earlier)),
        Value::Array(a) => a.iter_mut().for_each(|x| rebase_refs(x, offset, earlier)),
        _ => {}
    }
}
