//! Whether the server can be reached, so that a processor cut off from it says so once (and then
//! every half minute), and says when it is back, instead of a line per retry.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::CallError;

/// How often a processor still cut off says so.
const REMIND: Duration = Duration::from_secs(30);

/// The link to the server, as the calls over it found it.
#[derive(Default)]
pub struct Link {
    down: Mutex<Option<Down>>,
}

struct Down {
    since: Instant,
    logged: Instant,
}

impl Link {
    /// A call (`what`) failed for want of the server.
    pub fn lost(&self, what: &str, e: &CallError) {
        let now = Instant::now();
        let mut down = self.down.lock().expect("link lock");
        match &mut *down {
            None => {
                tracing::warn!(
                    "cannot reach the server ({what}: {e}); retrying with backoff, keeping finished answers until they are delivered"
                );
                *down = Some(Down {
                    since: now,
                    logged: now,
                });
            }
            Some(d) if now.duration_since(d.logged) >= REMIND => {
                tracing::warn!(
                    "still cannot reach the server after {:.0?} ({what}: {e})",
                    now.duration_since(d.since)
                );
                d.logged = now;
            }
            Some(_) => {}
        }
    }

    /// A call got through.
    pub fn up(&self) {
        if let Some(d) = self.down.lock().expect("link lock").take() {
            tracing::info!(
                "server reachable again after {:.1?}; resuming",
                d.since.elapsed()
            );
        }
    }
}
