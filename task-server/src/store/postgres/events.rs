//! How replicas sharing one database wake each other: `LISTEN/NOTIFY` on one channel, with
//! notifications coalesced off the hot transactions.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::statements::sql_file;
use crate::store::{Finished, Result, StoreEvent};

const CHANNEL: &str = "crpc_events";

/// At most one NOTIFY per window while busy.
const ANNOUNCE_WINDOW: Duration = Duration::from_millis(2);

/// Largest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes).
const PAYLOAD_MAX: usize = 7000;

/// Listens for other replicas' notifications and forwards them to `events`.
pub(super) async fn listen(
    pool: &PgPool,
    events: broadcast::Sender<StoreEvent>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(n) => n.payload().split(',').filter_map(parse).for_each(|ev| {
                    let _ = events.send(ev);
                }),
                Err(e) => {
                    // PgListener reconnects on the next recv; wake everyone in case we missed
                    // notifications meanwhile (parked callers re-check the database).
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    let _ = events.send(StoreEvent::Work);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }))
}

/// One item of a payload: `w` (work), `t:<id>` (task finished), `b:<id>` (batch task finished).
fn parse(item: &str) -> Option<StoreEvent> {
    match item.split_once(':') {
        None if item == "w" => Some(StoreEvent::Work),
        Some(("t", id)) => Uuid::parse_str(id).ok().map(StoreEvent::Task),
        Some(("b", id)) => Uuid::parse_str(id).ok().map(StoreEvent::Batch),
        _ => None,
    }
}

/// The payload items announcing that tasks finished.
pub(super) fn finished_items<'a>(f: impl IntoIterator<Item = &'a Finished>) -> Vec<String> {
    let mut out = HashSet::new();
    for f in f {
        out.insert(format!("t:{}", f.id));
        if let Some(b) = f.batch_id {
            out.insert(format!("b:{b}"));
        }
    }
    out.into_iter().collect()
}

/// The payload item announcing work to lease.
pub(super) fn work_item() -> String {
    "w".into()
}

/// Coalesces notifications. Hot transactions never NOTIFY themselves: PostgreSQL serialises the
/// commits of transactions that notified on one global lock. Instead, after a commit, the items are
/// handed here, and a background task sends them at once when idle, else what accumulated
/// during a 2 ms window, as a few NOTIFYs of comma-separated items.
#[derive(Default)]
pub(super) struct Announcer {
    pending: std::sync::Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
}

impl Announcer {
    /// Queues items for the next NOTIFY; call only after the change they announce committed.
    pub fn announce(&self, items: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock().expect("announcer lock");
        let before = p.len();
        p.extend(items);
        if p.len() > before {
            self.wake.notify_one();
        }
    }

    /// Sends what is queued, forever. NOTIFYs go through the `synchronous_commit = off` pool: a
    /// notification is a hint (parked callers re-check the database), so it need not wait for
    /// a WAL flush.
    pub async fn run(self: Arc<Self>, pool: PgPool) {
        let mut last_sent: Option<Instant> = None;
        loop {
            self.wake.notified().await;
            // Idle (nothing sent within the window): send at once, so a lone submit or answer
            // wakes the other replicas without delay. Busy: wait out the window, so a burst of
            // commits goes out as one NOTIFY.
            if let Some(since) = last_sent.map(|t| t.elapsed()) {
                if since < ANNOUNCE_WINDOW {
                    tokio::time::sleep(ANNOUNCE_WINDOW - since).await;
                }
            }
            let items = std::mem::take(&mut *self.pending.lock().expect("announcer lock"));
            if let Err(e) = sqlx::query(sql_file!("postgres", "notify"))
                .bind(CHANNEL)
                .bind(payloads(items))
                .execute(&pool)
                .await
            {
                // Parked callers also time out and re-check; nothing is lost, only woken later.
                tracing::warn!(error = %e, "NOTIFY failed");
            }
            last_sent = Some(Instant::now());
        }
    }
}

/// Items joined with commas into payloads of at most [`PAYLOAD_MAX`] bytes.
fn payloads(items: HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for item in items {
        if !cur.is_empty() && cur.len() + item.len() + 1 > PAYLOAD_MAX {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
