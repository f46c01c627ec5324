//! The fast-changing state of `keyhost serve`: rate-limit windows and key
//! usage. One process keeps it in memory (usage flushed to a file beside
//! the registry); replicas share it in Redis (`--state redis://…`), so that a
//! key limited to 100/min gets 100/min across all of them and no use is
//! counted twice or lost.

mod lease;
mod redis;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

pub use self::redis::{OnStateError, RedisCounters};
use crate::ratelimit::{Buckets, RateLimit};
use crate::usage::{Usage, UsageTracker, Use};

/// Where rate limits and usage live.
pub enum Counters {
    /// In this process; usage is flushed to `REGISTRY.usage.json`.
    Local {
        /// Rate-limit buckets.
        buckets: Buckets,
        /// Use counts and last uses.
        usage: UsageTracker,
    },
    /// In Redis, shared by every replica.
    Redis(Box<RedisCounters>),
}

/// A rate-limit decision.
pub enum Limited {
    /// The request may go on.
    Allowed,
    /// Used up; a use is free again after this long.
    Wait(Duration),
    /// The shared limiter cannot be reached, and its limits fail closed.
    Unreachable,
}

impl Counters {
    /// Takes one use of `key_id`'s `limit` (in Redis, within its timeout).
    pub async fn take(&self, key_id: &str, limit: RateLimit, now: Instant) -> Limited {
        match self {
            Counters::Local { buckets, .. } => match buckets.take(key_id, limit, now) {
                Ok(()) => Limited::Allowed,
                Err(wait) => Limited::Wait(wait),
            },
            Counters::Redis(redis) => redis.take(key_id, limit).await,
        }
    }

    /// Counts one allowed use of `key_id`.
    pub fn record(&self, key_id: &str, used: Use<'_>) {
        match self {
            Counters::Local { usage, .. } => usage.record(key_id, used),
            Counters::Redis(redis) => redis.record(key_id, used),
        }
    }

    /// Writes out the uses counted since the last flush. Blocks.
    pub fn flush(&self) -> Result<()> {
        match self {
            Counters::Local { usage, .. } => usage.flush(),
            Counters::Redis(redis) => redis.flush(),
        }
    }

    /// The usage of these keys, as every replica counted it. Blocks.
    pub fn usage_of(&self, key_ids: &[&str]) -> BTreeMap<String, Usage> {
        match self {
            Counters::Local { usage, .. } => key_ids
                .iter()
                .filter_map(|id| usage.get(id).map(|u| (id.to_string(), u)))
                .collect(),
            Counters::Redis(redis) => redis.usage_of(key_ids),
        }
    }

    /// Why the shared state may be off, if it may.
    pub fn problem(&self) -> Option<String> {
        match self {
            Counters::Local { .. } => None,
            Counters::Redis(redis) => redis.problem(),
        }
    }
}
