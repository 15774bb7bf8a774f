//! Runtime statistics shared by replicas: each replica keeps the samples of its committed
//! answers and merges them into the shared rows every [`FLUSH_EVERY`], under row locks.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;

use super::sql;
use crate::stats::{FnKey, FunctionStats, Sample};
use crate::store::core;
use crate::store::rows::StatsRow;
use crate::store::statements::sql_file;
use crate::store::Result;

/// How often this replica merges its samples into the shared statistics rows. Locking the row
/// inside every answer's transaction would serialise all answers to one function on that lock
/// for the length of a commit (an fsync): ~500 answers/s at most, whatever the replica count.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Runtime samples per function.
type ByFunction = BTreeMap<FnKey, Vec<Sample>>;

/// Runtime samples of committed answers, waiting to be merged.
#[derive(Default)]
pub(super) struct Samples {
    pending: std::sync::Mutex<ByFunction>,
    /// Held for the whole of a flush, so `close` never aborts one between taking the samples
    /// and committing them (they would be lost).
    flushing: tokio::sync::Mutex<()>,
}

impl Samples {
    /// Keeps the samples of committed answers.
    pub fn add(&self, samples: ByFunction) {
        let mut p = self.pending.lock().expect("samples lock");
        for (key, s) in samples {
            p.entry(key).or_default().extend(s);
        }
    }

    /// Merges the samples into the statistics rows, each under its row lock (keys in sorted
    /// order, so replicas cannot deadlock). On failure they are kept for the next flush.
    pub async fn flush(&self, pool: &PgPool) -> Result<()> {
        let _flushing = self.flushing.lock().await;
        let batch = std::mem::take(&mut *self.pending.lock().expect("samples lock"));
        if batch.is_empty() {
            return Ok(());
        }
        let result = merge(pool, &batch).await;
        if result.is_err() {
            let mut p = self.pending.lock().expect("samples lock");
            for (k, v) in batch {
                p.entry(k).or_default().extend(v);
            }
        }
        result
    }

    /// Flushes every [`FLUSH_EVERY`] until aborted.
    pub async fn run(self: Arc<Self>, pool: PgPool) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "writing runtime statistics failed; will retry");
            }
        }
    }

    /// Waits for a flush in progress to end (the caller may then stop the flusher safely).
    pub async fn quiesce(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.flushing.lock().await
    }
}

async fn merge(pool: &PgPool, batch: &ByFunction) -> Result<()> {
    let mut tx = pool.begin().await?;
    for (key, samples) in batch {
        sqlx::query(sql_file!("postgres", "ensure_stats"))
            .bind(&key.package)
            .bind(&key.version)
            .bind(&key.function)
            .execute(&mut *tx)
            .await?;
        let row: StatsRow = sqlx::query_as(sql_file!("postgres", "lock_stats"))
            .bind(&key.package)
            .bind(&key.version)
            .bind(&key.function)
            .fetch_one(&mut *tx)
            .await?;
        let st = core::merge_samples(Some(FunctionStats::try_from(row)?), key, samples);
        sql::upsert_stats(&mut *tx, &st).await?;
    }
    tx.commit().await?;
    Ok(())
}
