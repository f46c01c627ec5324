//! Per-key rate limits (`100/min`), enforced with token buckets.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `COUNT/PERIOD`: at most COUNT requests per PERIOD, where PERIOD is `s`,
/// `min`, `h`, `d` or a duration such as `10s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// At most this many requests...
    pub count: u32,
    /// ...per this long.
    pub per: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<RateLimit, String> {
        let bad = || format!("{text:?} is not a rate limit such as 100/min, 10/s or 5/30s");
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if count == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(RateLimit { count, per })
    }
}

impl RateLimit {
    /// Whether this limit is no looser than `other`: no larger a burst, and
    /// no faster a steady rate.
    pub fn within(&self, other: &RateLimit) -> bool {
        let rate = |limit: &RateLimit| f64::from(limit.count) / limit.per.as_secs_f64();
        self.count <= other.count && rate(self) <= rate(other)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// In the registry and in JSON, the text form (`100/1m`).
impl serde::Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

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
