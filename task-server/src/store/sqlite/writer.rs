//! The single writer: one connection, fed typed commands through a bounded channel, that
//! group-commits whatever is pending in one transaction.
//!
//! Because it is the only writer, it keeps two pieces of state in memory that a multi-writer
//! backend keeps in the database: the next completion number and the runtime statistics
//! (authoritative copy, written through shortly after each change).
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::sql;
use crate::stats::{FnKey, FunctionStats};
use crate::store::core::{Finishing, RetryPolicy};
use crate::store::{Result, StoreConfig, StoreError, StoreEvent};

/// Jobs a single group commit takes at most; bounds one transaction's latency.
const MAX_GROUP: usize = 256;
/// Writer queue depth: submitters wait (backpressure) rather than queue without bound.
pub(super) const WRITER_QUEUE: usize = 4096;
/// How often statistics changed by answers are written (a kill -9 loses at most this much).
const STATS_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One write, with the reply it produces.
#[async_trait]
pub(super) trait Command: Send + Sync + 'static {
    /// What the caller gets back.
    type Reply: Send + 'static;
    /// Whether it issues one write statement on its common path, so a group holding only it
    /// needs no explicit transaction (saves BEGIN and COMMIT).
    fn single_statement(&self) -> bool {
        true
    }
    /// The stop marker: commit what is pending, then take no more jobs.
    fn is_shutdown(&self) -> bool {
        false
    }
    /// Runs inside the group's transaction (or alone, autocommitted).
    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Self::Reply>;
}

/// What a command sees while it runs.
pub(super) struct Ctx<'a> {
    /// The writer's connection (inside the group's transaction when there is one).
    pub conn: &'a mut SqliteConnection,
    /// Store policy.
    pub config: &'a StoreConfig,
    /// The retry policy.
    pub retry: &'a RetryPolicy,
    /// Committed statistics.
    pub stats: &'a HashMap<FnKey, FunctionStats>,
    /// This group's changes, kept only if it commits.
    pub staged: &'a mut Staged,
    /// The first completion number not yet committed.
    base: i64,
}

impl<'a> Ctx<'a> {
    /// What a statement that finishes tasks binds; it may use completion numbers from
    /// `first_number` on and must [`Ctx::use_numbers`] what it did.
    pub fn finishing(&self, now: i64) -> Finishing<'a> {
        let retry: &'a RetryPolicy = self.retry;
        Finishing {
            now,
            delays: retry.delays_json(),
            first_number: self.base + self.staged.numbers_used,
            ttl_s: self.config.default_result_ttl_s,
        }
    }

    /// Marks `n` completion numbers used.
    pub fn use_numbers(&mut self, n: usize) {
        self.staged.numbers_used += n as i64;
    }

    /// Settles the waiting tasks that wait for `from` (just finished) and `candidates` (see
    /// `statements::settle`); what became of them is announced once the group commits.
    pub async fn settle(
        &mut self,
        now: i64,
        from: Vec<uuid::Uuid>,
        candidates: Vec<uuid::Uuid>,
    ) -> Result<usize> {
        if from.is_empty() && candidates.is_empty() {
            return Ok(0);
        }
        let at = self.finishing(now);
        let mut out = sql::settle(&mut *self.conn, &at, from, candidates).await?;
        self.use_numbers(out.finished.len());
        self.staged
            .events
            .extend(crate::store::core::settled_events(&out));
        self.gate(now, &[], std::mem::take(&mut out.gates), false)
            .await?;
        Ok(out.queued + out.finished.len())
    }

    /// A gate pass over `keys` after recording `limits` (see `statements::gate`); tasks it
    /// lets through are announced as work once the group commits (those due later, then).
    pub async fn gate(
        &mut self,
        now: i64,
        limits: &[crate::caps::CapLimit],
        keys: Vec<String>,
        leased: bool,
    ) -> Result<usize> {
        let opened = sql::gate(&mut *self.conn, now, limits, keys, leased).await?;
        if opened.through > 0 {
            self.staged.events.push(StoreEvent::Work);
        }
        let due = opened.due.into_iter().map(StoreEvent::WorkAt);
        self.staged.events.extend(due);
        Ok(opened.through)
    }

    /// The statistics of `key` as this group sees them.
    pub fn stats_of(&self, key: &FnKey) -> Option<FunctionStats> {
        self.staged
            .stats
            .get(key)
            .or_else(|| self.stats.get(key))
            .cloned()
    }
}

/// A group's changes to the writer's memory.
#[derive(Default)]
pub(super) struct Staged {
    numbers_used: i64,
    /// Statistics changed by this group.
    pub stats: HashMap<FnKey, FunctionStats>,
    /// What to announce once it commits (tasks settled beside the commands' own results).
    events: Vec<StoreEvent>,
}

/// A command with its reply channel, its type erased so one queue carries them all.
#[async_trait]
pub(super) trait Job: Send {
    fn single_statement(&self) -> bool;
    fn is_shutdown(&self) -> bool;
    async fn run(&mut self, ctx: &mut Ctx<'_>) -> Result<()>;
    /// Sends the reply of the last run (or `error`).
    fn finish(self: Box<Self>, error: Option<StoreError>);
}

struct Pending<C: Command> {
    cmd: C,
    reply: Option<C::Reply>,
    tx: oneshot::Sender<Result<C::Reply>>,
}

#[async_trait]
impl<C: Command> Job for Pending<C> {
    fn single_statement(&self) -> bool {
        self.cmd.single_statement()
    }

    fn is_shutdown(&self) -> bool {
        self.cmd.is_shutdown()
    }

    async fn run(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        self.reply = Some(self.cmd.run(ctx).await?);
        Ok(())
    }

    fn finish(self: Box<Self>, error: Option<StoreError>) {
        let out = match (error, self.reply) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => Ok(r),
            (None, None) => Err(StoreError::Closed),
        };
        let _ = self.tx.send(out);
    }
}

/// A command ready to queue, and where its reply arrives.
pub(super) fn job<C: Command>(cmd: C) -> (Box<dyn Job>, oneshot::Receiver<Result<C::Reply>>) {
    let (tx, rx) = oneshot::channel();
    let job = Pending {
        cmd,
        reply: None,
        tx,
    };
    (Box::new(job), rx)
}

/// The writer's in-memory state.
pub(super) struct Writer {
    conn: SqliteConnection,
    config: StoreConfig,
    retry: RetryPolicy,
    next_number: i64,
    stats: HashMap<FnKey, FunctionStats>,
    /// Statistics changed by committed answers but not yet written (written right after the
    /// replies of their group went out, so they stay off the answer's critical path).
    dirty: HashSet<FnKey>,
    /// Where committed groups announce what they settled.
    events: broadcast::Sender<StoreEvent>,
}

impl Writer {
    pub async fn load(
        mut conn: SqliteConnection,
        config: StoreConfig,
        events: broadcast::Sender<StoreEvent>,
    ) -> Result<Self> {
        let max: Option<i64> = sqlx::query_scalar(sql::MAX_FINISH_SEQ)
            .fetch_one(&mut conn)
            .await?;
        let mut stats = HashMap::new();
        for row in sql::function_stats(&mut conn).await? {
            let st = FunctionStats::try_from(row)?;
            stats.insert(st.key.clone(), st);
        }
        Ok(Writer {
            conn,
            retry: RetryPolicy::new(&config),
            config,
            next_number: max.unwrap_or(0) + 1,
            stats,
            dirty: HashSet::new(),
            events,
        })
    }

    /// Takes jobs until the channel closes or a shutdown job arrives, committing them in
    /// groups; flushes statistics between groups.
    pub async fn serve(&mut self, mut rx: mpsc::Receiver<Box<dyn Job>>) {
        let mut flush = tokio::time::interval(STATS_FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                biased;
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                _ = flush.tick() => {
                    self.flush_stats().await;
                    continue;
                }
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let stopper = jobs
                .iter()
                .position(|j| j.is_shutdown())
                .map(|i| jobs.remove(i));
            if !jobs.is_empty() {
                self.run_group(jobs).await;
            }
            if let Some(stopper) = stopper {
                self.drain(&mut rx).await;
                stopper.finish(None);
                break;
            }
        }
    }

    /// Stops taking jobs; those that raced in before the close still get done.
    async fn drain(&mut self, rx: &mut mpsc::Receiver<Box<dyn Job>>) {
        rx.close();
        let mut late = Vec::new();
        while let Ok(j) = rx.try_recv() {
            if j.is_shutdown() {
                j.finish(None);
            } else {
                late.push(j);
            }
        }
        if !late.is_empty() {
            self.run_group(late).await;
        }
    }

    /// Writes the statistics of answers committed since the last flush, in one transaction.
    async fn flush_stats(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let keys: Vec<FnKey> = self.dirty.drain().collect();
        let result = async {
            let mut tx = self.conn.begin().await?;
            for k in &keys {
                if let Some(st) = self.stats.get(k) {
                    sql::upsert_stats(&mut *tx, st).await?;
                }
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing runtime statistics failed; will retry");
            self.dirty.extend(keys);
        }
    }

    /// Writes the last statistics and checkpoints the WAL into the database file.
    pub async fn close(mut self) {
        self.flush_stats().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }

    /// Runs every job in one transaction. If the transaction fails as a whole, each job is run
    /// again alone so one bad job cannot fail its neighbours.
    async fn run_group(&mut self, mut jobs: Vec<Box<dyn Job>>) {
        if jobs.len() > 1 {
            match self.try_group(&mut jobs).await {
                Ok(()) => {
                    jobs.into_iter().for_each(|j| j.finish(None));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; retrying jobs one by one")
                }
            }
        }
        for mut job in jobs {
            let r = self.try_group(std::slice::from_mut(&mut job)).await;
            job.finish(r.err());
        }
    }

    async fn try_group(&mut self, jobs: &mut [Box<dyn Job>]) -> Result<()> {
        let mut staged = Staged::default();
        if let [job] = jobs {
            if job.single_statement() {
                let mut ctx = Ctx {
                    conn: &mut self.conn,
                    config: &self.config,
                    retry: &self.retry,
                    stats: &self.stats,
                    staged: &mut staged,
                    base: self.next_number,
                };
                job.run(&mut ctx).await?;
                self.commit_staged(staged);
                return Ok(());
            }
        }
        let mut tx = self.conn.begin().await?;
        for job in jobs.iter_mut() {
            let mut ctx = Ctx {
                conn: &mut tx,
                config: &self.config,
                retry: &self.retry,
                stats: &self.stats,
                staged: &mut staged,
                base: self.next_number,
            };
            if let Err(e) = job.run(&mut ctx).await {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
        tx.commit().await?;
        self.commit_staged(staged);
        Ok(())
    }

    fn commit_staged(&mut self, staged: Staged) {
        for ev in staged.events {
            let _ = self.events.send(ev);
        }
        self.next_number += staged.numbers_used;
        self.dirty.extend(staged.stats.keys().cloned());
        self.stats.extend(staged.stats);
    }
}
