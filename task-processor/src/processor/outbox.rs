//! Answers on their way to the server. A lease request takes whatever is waiting and carries it
//! (one request per slot-batch, answers and leases together); what no request picks up within
//! [`LINGER`] goes out on its own, batched, retried until the server has it.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use task_api::{SubmitAnswer, SubmitAnswerResult};
use tokio::sync::Notify;

use super::Backoff;
use crate::client::{CallError, ServerClient};

/// How long an answer waits for a lease request to carry it before it is sent alone (a freed
/// slot's lease request carries it at once; this bounds the wait of answers of tasks that ran
/// from prefetched leases, and batches them: one request per ~10 ms, not one per answer).
const LINGER: Duration = Duration::from_millis(10);
/// So many answers waiting go out at once.
const EARLY: usize = 256;
/// Most answers in one request (the server's limit).
pub const MAX_BATCH: usize = 1000;

/// Answers not yet delivered.
#[derive(Default)]
pub struct Outbox {
    pending: Mutex<VecDeque<SubmitAnswer>>,
    added: Notify,
    closed: AtomicBool,
}

impl Outbox {
    pub fn push(&self, a: SubmitAnswer) {
        self.pending.lock().expect("outbox lock").push_back(a);
        self.added.notify_one();
    }

    /// Up to [`MAX_BATCH`] answers, oldest first.
    pub fn take(&self) -> Vec<SubmitAnswer> {
        let mut p = self.pending.lock().expect("outbox lock");
        let n = p.len().min(MAX_BATCH);
        p.drain(..n).collect()
    }

    /// Answers whose delivery failed go back to the front, to be retried first.
    pub fn put_back(&self, answers: Vec<SubmitAnswer>) {
        if answers.is_empty() {
            return;
        }
        let mut p = self.pending.lock().expect("outbox lock");
        for a in answers.into_iter().rev() {
            p.push_front(a);
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
    /// are waiting or the outbox is closing.
    async fn linger(&self) {
        let until = tokio::time::Instant::now() + LINGER;
        loop {
            let more = self.added.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) || self.len() >= EARLY {
                return;
            }
            tokio::select! {
                _ = &mut more => {}
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }

    fn len(&self) -> usize {
        self.pending.lock().expect("outbox lock").len()
    }

    fn is_empty(&self) -> bool {
        self.pending.lock().expect("outbox lock").is_empty()
    }
}

/// Delivers what no lease request carried, retrying with backoff; ends once closed and empty.
pub async fn outbox_loop(client: ServerClient, outbox: std::sync::Arc<Outbox>) {
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
                    tracing::warn!(
                        "could not deliver {} answer(s): {e}; retrying in {wait:?}",
                        batch.len()
                    );
                    outbox.put_back(batch);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Logs the answers the server did not record.
pub fn log_results(results: &[SubmitAnswerResult]) {
    for r in results {
        match r.status {
            200 => {}
            409 => {
                tracing::info!(task = %r.id, "answer not recorded: the lease is no longer ours (task re-leased, cancelled or finished)")
            }
            _ => {
                tracing::warn!(task = %r.id, status = r.status, code = ?r.code, "answer refused")
            }
        }
    }
}
