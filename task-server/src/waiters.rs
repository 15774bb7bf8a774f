//! In-process wake-ups for long-polls: callers waiting on a task or a batch park on a `Notify`
//! keyed by id; whoever finishes the task wakes exactly those callers (no polling, no herd).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Registry of parked callers.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Slot>>>,
}

/// One key's parked callers and what was last published for them.
#[derive(Default)]
pub struct Slot {
    /// Wakes the parked callers.
    pub notify: Notify,
    /// The finished task, when whoever finished it could say (saves a database read).
    pub finished: Mutex<Option<Arc<crate::store::Finished>>>,
}

impl Slot {
    /// The published finished task, if any.
    pub fn finished(&self) -> Option<Arc<crate::store::Finished>> {
        self.finished.lock().expect("slot lock").clone()
    }
}

/// A registration; dropping it forgets the key once nobody else waits on it.
pub struct Waiter<'a> {
    owner: &'a Waiters,
    key: String,
    /// Await `slot.notify.notified()`.
    pub slot: Arc<Slot>,
}

impl Waiters {
    /// Registers interest in `key`.
    pub fn subscribe(&self, key: String) -> Waiter<'_> {
        let slot = self
            .map
            .lock()
            .expect("waiters lock")
            .entry(key.clone())
            .or_default()
            .clone();
        Waiter {
            owner: self,
            key,
            slot,
        }
    }

    /// Wakes everyone parked on `key`.
    pub fn notify(&self, key: &str) {
        if let Some(n) = self.map.lock().expect("waiters lock").get(key) {
            n.notify.notify_waiters();
        }
    }

    /// Hands a finished task to everyone parked on its key, then wakes them.
    pub fn publish(&self, key: &str, finished: Arc<crate::store::Finished>) {
        if let Some(n) = self.map.lock().expect("waiters lock").get(key) {
            *n.finished.lock().expect("slot lock") = Some(finished);
            n.notify.notify_waiters();
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
