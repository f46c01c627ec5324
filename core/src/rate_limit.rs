//! The text form of a per-key rate limit (`100/min`), as the registry
//! keeps it. Enforcing it is the host's (`ratelimit.rs`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
