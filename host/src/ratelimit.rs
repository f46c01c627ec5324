//! Per-key rate limits (`100/min`), enforced with token buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use keyhost_core::rate_limit::RateLimit;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// One token bucket per key id. A bucket holds `count` tokens and refills
/// fully over `per`.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Takes a token for `key_id`; when none is left, says how long until one is.
    pub fn take(&self, key_id: &str, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(limit.count);
        let per_second = capacity / limit.per.as_secs_f64();
        let mut buckets = self.buckets.lock().expect("rate-limit lock");
        let bucket = buckets.entry(key_id.to_string()).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            "100/min".parse::<RateLimit>().unwrap().per,
            Duration::from_secs(60)
        );
        assert_eq!(
            "5/30s".parse::<RateLimit>().unwrap().per,
            Duration::from_secs(30)
        );
        assert!("0/min".parse::<RateLimit>().is_err());
        assert!("ten/min".parse::<RateLimit>().is_err());
        assert!("10".parse::<RateLimit>().is_err());
    }

    #[test]
    fn a_bucket_empties_and_refills() {
        let buckets = Buckets::default();
        let limit: RateLimit = "3/3s".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(buckets.take("k", limit, start).is_ok());
        }
        let wait = buckets.take("k", limit, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            buckets.take("other", limit, start).is_ok(),
            "buckets are per key"
        );
        assert!(
            buckets
                .take("k", limit, start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            buckets
                .take("k", limit, start + Duration::from_secs(1))
                .is_err()
        );
    }
}
