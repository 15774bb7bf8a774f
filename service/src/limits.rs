//! Per-token limits: a request rate (GCRA, `governor`) and a number of concurrent long-polls.
//! Past either, the answer is 429 `rate_limited` with `Retry-After`.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Caller;
use crate::error::ApiError;

/// Limits per token (role and subject), shared by every route of a service.
pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    max_long_polls: usize,
    long_polls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Limits {
    /// `per_second` requests per token with bursts of `burst` (0: no rate limit), and at most
    /// `max_long_polls` waiting requests per token at once (0: no cap).
    pub fn new(per_second: u32, burst: u32, max_long_polls: usize) -> Limits {
        let rate = NonZeroU32::new(per_second).map(|r| {
            let burst = NonZeroU32::new(burst).unwrap_or(r);
            RateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        Limits {
            rate,
            max_long_polls,
            long_polls: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key(caller: &Caller) -> String {
        format!("{}:{}", caller.role.as_str(), caller.sub)
    }

    /// One request of `caller`: 429 once its token is over the rate.
    pub fn check(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        match rate.check_key(&Self::key(caller)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::rate_limited(
                    format!("too many requests for `{}`; slow down", caller.sub),
                    wait.as_secs_f64().ceil().max(1.0) as u64,
                ))
            }
        }
    }

    /// A long-poll of `caller`, counted until the guard drops: 429 past the cap.
    pub fn long_poll(&self, caller: &Caller) -> Result<LongPoll, ApiError> {
        let key = Self::key(caller);
        let mut polls = self.long_polls.lock().expect("long-poll lock");
        let n = polls.entry(key.clone()).or_default();
        if self.max_long_polls > 0 && *n >= self.max_long_polls {
            return Err(ApiError::rate_limited(
                format!(
                    "`{}` already has {} waiting requests (--max-long-polls-per-token)",
                    caller.sub, self.max_long_polls
                ),
                1,
            ));
        }
        *n += 1;
        Ok(LongPoll {
            key,
            polls: self.long_polls.clone(),
        })
    }
}

/// Holds one long-poll slot of a token.
pub struct LongPoll {
    key: String,
    polls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        let mut polls = self.polls.lock().expect("long-poll lock");
        if let Some(n) = polls.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                polls.remove(&self.key);
            }
        }
    }
}
