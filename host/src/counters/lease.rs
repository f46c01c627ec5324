//! Rate-limit uses taken from Redis ahead of need, and refusals remembered,
//! so that a busy key does not cost a Redis call per request.
//!
//! - A key limited to COUNT per PERIOD takes `lease_size` uses at a time
//!   (one for COUNT under 128, up to 64 for large limits) and spends them
//!   here for at most `lease_ttl`. Uses left when a lease ends are dropped:
//!   the limit only gets stricter for them. A window can see more than COUNT
//!   uses only by those the replicas held, leased, when it began: one lease
//!   each for requests that come one at a time.
//! - A refusal carries when the window frees a use; until then this replica
//!   refuses by itself, since no replica can free a use sooner.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ratelimit::RateLimit;

/// How many uses to take from Redis at once.
pub fn lease_size(limit: RateLimit) -> u32 {
    (limit.count / 64).clamp(1, 64)
}

/// How long leased uses may be spent.
fn lease_ttl(limit: RateLimit) -> Duration {
    (limit.per / 4).min(Duration::from_secs(1))
}

enum Held {
    Uses { left: u32, until: Instant },
    Refused { until: Instant },
}

#[derive(Default)]
pub struct Leases {
    held: Mutex<HashMap<String, Held>>,
}

impl Leases {
    /// Decides from what this replica holds: `Some(Ok)` spent a leased use,
    /// `Some(Err(wait))` is a remembered refusal, `None` means ask Redis.
    pub fn spend(&self, key_id: &str, now: Instant) -> Option<Result<(), Duration>> {
        let mut held = self.held.lock().expect("lease lock");
        let decided = match held.get_mut(key_id)? {
            Held::Uses { left, until } if *left > 0 && now < *until => {
                *left -= 1;
                Some(Ok(()))
            }
            Held::Refused { until } if now < *until => Some(Err(*until - now)),
            _ => None,
        };
        if decided.is_none() {
            held.remove(key_id);
        }
        decided
    }

    /// Keeps what Redis answered: `taken` uses, one of which the caller
    /// spends now, or a refusal for `wait`. Uses taken by requests that
    /// asked at the same time add up.
    pub fn keep(&self, key_id: &str, limit: RateLimit, taken: u32, wait: Duration, now: Instant) {
        let mut held = self.held.lock().expect("lease lock");
        if taken == 0 {
            held.insert(key_id.to_string(), Held::Refused { until: now + wait });
            return;
        }
        let until = now + lease_ttl(limit);
        match held.get_mut(key_id) {
            Some(Held::Uses { left, until: was }) if now < *was => {
                *left += taken - 1;
                *was = until.max(*was);
            }
            _ => {
                held.insert(
                    key_id.to_string(),
                    Held::Uses {
                        left: taken - 1,
                        until,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    #[test]
    fn small_limits_ask_every_time_and_large_ones_lease() {
        assert_eq!(lease_size(limit("20/s")), 1);
        assert_eq!(lease_size(limit("1000/min")), 15);
        assert_eq!(lease_size(limit("1000000/s")), 64);
    }

    #[test]
    fn a_lease_is_spent_then_ends_and_a_refusal_is_remembered_until_it_frees() {
        let leases = Leases::default();
        let (large, start) = (limit("6400/s"), Instant::now());
        assert!(leases.spend("k", start).is_none(), "nothing held yet");
        leases.keep("k", large, 3, Duration::ZERO, start);
        leases.keep("k", large, 2, Duration::ZERO, start);
        for _ in 0..3 {
            assert_eq!(leases.spend("k", start), Some(Ok(())), "leases add up");
        }
        assert!(leases.spend("k", start).is_none(), "spent");
        leases.keep("k", large, 5, Duration::ZERO, start);
        assert!(
            leases.spend("k", start + Duration::from_secs(2)).is_none(),
            "a lease ends"
        );
        leases.keep("k", large, 0, Duration::from_millis(300), start);
        assert_eq!(
            leases.spend("k", start + Duration::from_millis(100)),
            Some(Err(Duration::from_millis(200)))
        );
        assert!(
            leases
                .spend("k", start + Duration::from_millis(300))
                .is_none()
        );
    }
}
