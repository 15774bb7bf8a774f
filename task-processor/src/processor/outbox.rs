//! Answers on their way to the server. A lease request takes whatever is waiting and carries it
//! (one request per slot-batch, answers and leases together); what no request picks up within
//! [`LINGER`] goes out on its own, batched, retried until the server has it.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use task_api::{SubmitAnswer, SubmitAnswerResult};
use tokio::sync::Notify;

use super::link::Link;
use super::Backoff;
use crate::client::{CallError, ServerClient};

/// How long an answer waits for a lease request to carry it before it is sent alone (a freed
/// slot's lease request carries it at once; this bounds the wait of answers of tasks that ran
/// from prefetched leases, and batches them: one request per ~10 ms, not one per answer).
const LINGER: Duration = Duration::from_millis(10);
/// So many answers waiting go out at once.
const EARLY: usize = 256;
/// A lease request for free slots in flight this long is parked at the server (no work for
/// it): a claim that finds work answers sooner.
const PARKED: Duration = Duration::from_micros(150);
/// Most answers in one request (the server's limit).
pub const MAX_BATCH: usize = 1000;

/// Most bytes of answers the outbox keeps in memory; past that they wait on disk.
pub const MEMORY_BYTES: usize = 64 << 20;
/// Most bytes of answers waiting on disk; past that new answers are dropped (logged): their
/// leases expire and the tasks run again, so nothing is lost, only redone.
pub const DISK_BYTES: u64 = 4 << 30;

/// Answers not yet delivered: in memory up to a bound, then in a file, oldest first.
pub struct Outbox {
    pending: Mutex<Pending>,
    added: Notify,
    closed: AtomicBool,
    /// Lease requests for free slots (long-polls) in flight, and since when the oldest one;
    /// see [`Outbox::polling`].
    polls: Mutex<(usize, Option<std::time::Instant>)>,
    poll_started: Notify,
}

struct Pending {
    /// Answers with their serialized size.
    memory: VecDeque<(SubmitAnswer, usize)>,
    /// Serialized size of `memory`.
    bytes: usize,
    max_bytes: usize,
    spill: Spill,
}

impl Outbox {
    /// An outbox keeping up to `max_bytes` in memory and the rest in a file in `dir`.
    pub fn new(dir: PathBuf, max_bytes: usize) -> Outbox {
        Outbox {
            pending: Mutex::new(Pending {
                memory: VecDeque::new(),
                bytes: 0,
                max_bytes,
                spill: Spill::new(dir),
            }),
            added: Notify::new(),
            closed: AtomicBool::new(false),
            polls: Mutex::new((0, None)),
            poll_started: Notify::new(),
        }
    }

    pub fn push(&self, a: SubmitAnswer) {
        self.pending.lock().expect("outbox lock").push(a);
        self.added.notify_one();
    }

    /// A lease request for free slots (one that may long-poll) went out (`true`) or came back
    /// (`false`). While one is parked at the server, answers do not wait for a lease request
    /// to carry them: the parked request may be waiting for the very task an answer unblocks
    /// (a task graph), and no request goes out until it returns.
    pub fn polling(&self, started: bool) {
        let mut p = self.polls.lock().expect("polls lock");
        if started {
            p.0 += 1;
            p.1.get_or_insert_with(std::time::Instant::now);
            drop(p);
            self.poll_started.notify_one();
        } else {
            p.0 = p.0.saturating_sub(1);
            if p.0 == 0 {
                p.1 = None;
            }
        }
    }

    /// How long the oldest lease request for free slots has been in flight.
    fn polled_for(&self) -> Option<Duration> {
        self.polls
            .lock()
            .expect("polls lock")
            .1
            .map(|t| t.elapsed())
    }

    /// Up to [`MAX_BATCH`] answers, oldest first.
    pub fn take(&self) -> Vec<SubmitAnswer> {
        self.pending.lock().expect("outbox lock").take(MAX_BATCH)
    }

    /// Answers whose delivery failed go back to the front, to be retried first.
    pub fn put_back(&self, answers: Vec<SubmitAnswer>) {
        if answers.is_empty() {
            return;
        }
        let mut p = self.pending.lock().expect("outbox lock");
        for a in answers.into_iter().rev() {
            let size = serde_json::to_vec(&a).expect("answers serialize").len();
            p.bytes += size;
            p.memory.push_front((a, size));
        }
        drop(p);
        self.added.notify_one();
    }

    /// No more answers will come: the loop delivers what is left and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.added.notify_one();
    }

    /// Waits up to [`LINGER`] for a lease request to take the answers, unless [`EARLY`] of them
    /// are waiting, the outbox is closing, or a lease request is parked at the server (in
    /// flight for [`PARKED`]: yielding until then, tokio's timer ticks by the millisecond).
    async fn linger(&self) {
        let until = tokio::time::Instant::now() + LINGER;
        loop {
            let more = self.added.notified();
            let poll = self.poll_started.notified();
            tokio::pin!(more, poll);
            more.as_mut().enable();
            poll.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) || self.len() >= EARLY {
                return;
            }
            match self.polled_for() {
                Some(d) if d >= PARKED => return,
                Some(_) => {
                    tokio::task::yield_now().await;
                    continue;
                }
                None => {}
            }
            tokio::select! {
                _ = &mut more => {}
                _ = &mut poll => {}
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// Answers waiting (in memory and on disk).
    pub fn len(&self) -> usize {
        let p = self.pending.lock().expect("outbox lock");
        p.memory.len() + p.spill.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pending {
    /// Serialized once: the size counts against the memory bound, and the bytes are what a
    /// spill writes.
    fn push(&mut self, a: SubmitAnswer) {
        let line = serde_json::to_vec(&a).expect("answers serialize");
        let size = line.len();
        // Once answers wait on disk, newer ones queue behind them there: oldest first.
        if self.spill.count == 0 && self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.memory.push_back((a, size));
        } else {
            self.spill.push(&a, line);
        }
    }

    fn take(&mut self, n: usize) -> Vec<SubmitAnswer> {
        if self.memory.is_empty() && self.spill.count > 0 {
            let back = self.spill.pop(n);
            self.bytes = back.iter().map(|(_, size)| size).sum();
            self.memory.extend(back);
        }
        let n = self.memory.len().min(n);
        let bytes = &mut self.bytes;
        self.memory
            .drain(..n)
            .map(|(a, size)| {
                *bytes -= size;
                a
            })
            .collect()
    }
}

/// Answers waiting on disk, as JSON lines, read from the front.
struct Spill {
    path: PathBuf,
    /// Answers in the file past the read offset.
    count: usize,
    /// Bytes of the file already read.
    read_at: u64,
    /// Bytes written.
    written: u64,
}

impl Spill {
    fn new(dir: PathBuf) -> Spill {
        Spill {
            path: dir.join(format!("outbox-{}.jsonl", std::process::id())),
            count: 0,
            read_at: 0,
            written: 0,
        }
    }

    /// Appends `a`, serialized as `line`.
    fn push(&mut self, a: &SubmitAnswer, mut line: Vec<u8>) {
        line.push(b'\n');
        if self.written + line.len() as u64 > DISK_BYTES {
            tracing::error!(task = %a.id, "outbox full ({DISK_BYTES} bytes on disk): answer dropped; its lease will expire and the task run again");
            return;
        }
        if self.count == 0 {
            tracing::warn!(path = %self.path.display(), "outbox past {} MiB in memory: answers now wait on disk", MEMORY_BYTES >> 20);
        }
        let written = std::fs::create_dir_all(self.path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            })
            .and_then(|mut f| f.write_all(&line));
        match written {
            Ok(()) => {
                self.count += 1;
                self.written += line.len() as u64;
            }
            Err(e) => {
                tracing::error!(task = %a.id, "cannot keep an answer on disk ({e}): dropped; its lease will expire and the task run again")
            }
        }
    }

    /// Up to `n` answers from the front, each with its serialized size; the file goes once read
    /// through.
    fn pop(&mut self, n: usize) -> Vec<(SubmitAnswer, usize)> {
        let mut out = Vec::new();
        let read = File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.read_at))?;
            let mut lines = BufReader::new(f);
            let mut line = Vec::new();
            while out.len() < n && self.count > 0 {
                line.clear();
                let got = lines.read_until(b'\n', &mut line)?;
                if got == 0 {
                    break;
                }
                self.read_at += got as u64;
                self.count -= 1;
                match serde_json::from_slice(&line) {
                    Ok(a) => out.push((a, got.saturating_sub(1))),
                    Err(e) => tracing::error!("an answer on disk is unreadable ({e}); skipped"),
                }
            }
            Ok(())
        });
        if let Err(e) = read {
            tracing::error!(path = %self.path.display(), "cannot read the answers on disk ({e}); {} dropped, their tasks will run again", self.count);
            self.count = 0;
        }
        if self.count == 0 {
            let _ = std::fs::remove_file(&self.path);
            self.read_at = 0;
            self.written = 0;
        }
        out
    }
}

/// Delivers what no lease request carried, retrying with backoff; ends once closed and empty.
pub async fn outbox_loop(client: ServerClient, outbox: Arc<Outbox>, link: Arc<Link>) {
    let mut backoff = Backoff(0);
    loop {
        if outbox.closed.load(Ordering::SeqCst) && outbox.is_empty() {
            return;
        }
        outbox.added.notified().await;
        outbox.linger().await;
        loop {
            let batch = outbox.take();
            if batch.is_empty() {
                break;
            }
            match client.submit_answers(&batch).await {
                Ok(results) => {
                    backoff = Backoff(0);
                    link.up();
                    log_results(&results);
                }
                Err(CallError::Rejected {
                    status,
                    code,
                    message,
                }) => {
                    tracing::error!("{} answer(s) refused as a whole ({status} {code}: {message}); dropped, their leases will expire", batch.len());
                }
                Err(e) => {
                    let wait = backoff.next();
                    match &e {
                        CallError::Unavailable { .. } => link.lost("delivering answers", &e),
                        _ => tracing::warn!(
                            "could not deliver {} answer(s): {e}; retrying in {wait:?}",
                            batch.len()
                        ),
                    }
                    outbox.put_back(batch);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Logs the answers the server did not record: one line for those whose lease was no longer
/// ours (a processor that stalled past its leases finds them all re-leased), one per refusal.
pub fn log_results(results: &[SubmitAnswerResult]) {
    let stale = results.iter().filter(|r| r.status == 409).count();
    if stale > 0 {
        tracing::info!(
            "{stale} answer(s) not recorded, dropped: their leases are no longer ours (the tasks were re-leased after this processor stalled, cancelled, or finished elsewhere)"
        );
    }
    for r in results.iter().filter(|r| !matches!(r.status, 200 | 409)) {
        tracing::warn!(task = %r.id, status = r.status, code = ?r.code, "answer refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(i: u64) -> SubmitAnswer {
        SubmitAnswer {
            id: uuid::Uuid::now_v7(),
            lease_epoch: Some(i as i64),
            worker_id: Some("w".into()),
            answer: Some(serde_json::json!(i)),
            error: None,
            runtime_ms: Some(1.0),
        }
    }

    #[test]
    fn answers_past_the_memory_bound_wait_on_disk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&answer(0)).unwrap().len();
        let outbox = Outbox::new(dir.path().to_path_buf(), 10 * one);
        for i in 0..2500 {
            outbox.push(answer(i));
        }
        assert_eq!(outbox.len(), 2500);
        let p = outbox.pending.lock().unwrap();
        assert!(p.memory.len() <= 10, "memory holds {}", p.memory.len());
        assert!(p.spill.path.exists());
        drop(p);
        // A failed delivery goes back to the front; order holds across memory and disk.
        let first = outbox.take();
        outbox.put_back(first);
        let mut seen = Vec::new();
        loop {
            let batch = outbox.take();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= MAX_BATCH);
            seen.extend(batch.iter().map(|a| a.lease_epoch.unwrap()));
        }
        assert_eq!(seen, (0..2500).collect::<Vec<i64>>());
        assert!(!dir
            .path()
            .join(format!("outbox-{}.jsonl", std::process::id()))
            .exists());
        // Emptied, the outbox keeps new answers in memory again.
        outbox.push(answer(7));
        assert_eq!(outbox.pending.lock().unwrap().memory.len(), 1);
    }
}
