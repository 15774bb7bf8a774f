//! In-process wake-ups for long-polls: callers waiting on a task or a batch park on a `Notify`
//! keyed by id; whoever finishes the task wakes exactly those callers (no polling, no herd).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Registry of parked callers.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A registration; dropping it forgets the key once nobody else waits on it.
pub struct Waiter<'a> {
    owner: &'a Waiters,
    key: String,
    /// Await `notify.notified()`.
    pub notify: Arc<Notify>,
}

impl Waiters {
    /// Registers interest in `key`.
    pub fn subscribe(&self, key: String) -> Waiter<'_> {
        let notify = self
            .map
            .lock()
            .expect("waiters lock")
            .entry(key.clone())
            .or_default()
            .clone();
        Waiter {
            owner: self,
            key,
            notify,
        }
    }

    /// Wakes everyone parked on `key`.
    pub fn notify(&self, key: &str) {
        if let Some(n) = self.map.lock().expect("waiters lock").get(key) {
            n.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.map.lock().expect("waiters lock");
        // Two references: the map's and ours.
        if map
            .get(&self.key)
            .is_some_and(|n| Arc::strong_count(n) <= 2)
        {
            map.remove(&self.key);
        }
    }
}

/// Key for a task.
pub fn task_key(id: &uuid::Uuid) -> String {
    format!("t:{id}")
}

/// Key for a batch.
pub fn batch_key(id: &uuid::Uuid) -> String {
    format!("b:{id}")
}
