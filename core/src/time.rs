//! Times and durations: RFC 3339 on the outside, Unix seconds inside.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in whole seconds since the Unix epoch (UTC). It
/// serialises as an RFC 3339 string (`"2026-01-31T12:00:00Z"`); the registry
/// model writes a TOML datetime instead, through [`toml_form`]. Either form
/// is read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// 9999-12-31T23:59:59Z: the latest time an RFC 3339 or TOML datetime
    /// can say, so the latest keyhost takes or writes.
    pub const LATEST: Timestamp = Timestamp(253_402_300_799);

    /// The time now, to the second.
    pub fn now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the system clock is before 1970");
        Timestamp(since.as_secs() as i64)
    }

    /// `duration` later, saturating at [`LATEST`](Self::LATEST).
    pub fn plus(self, duration: Duration) -> Timestamp {
        self.checked_plus(duration).unwrap_or(Self::LATEST)
    }

    /// The first whole second at or after `duration` from now: an end that
    /// must not come early (a now truncated to the second, plus whole
    /// seconds of `duration`, would end up to 2 s early).
    pub fn now_plus_rounded_up(duration: Duration) -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the system clock is before 1970")
            .saturating_add(duration);
        let seconds = since
            .as_secs()
            .saturating_add(u64::from(since.subsec_nanos() > 0));
        Timestamp(
            i64::try_from(seconds)
                .unwrap_or(i64::MAX)
                .min(Self::LATEST.0),
        )
    }

    /// `duration` later, or `None` past [`LATEST`](Self::LATEST).
    pub fn checked_plus(self, duration: Duration) -> Option<Timestamp> {
        let seconds = i64::try_from(duration.as_secs()).ok()?;
        self.0
            .checked_add(seconds)
            .filter(|&later| later <= Self::LATEST.0)
            .map(Timestamp)
    }

    /// Parses an RFC 3339 time such as `2026-01-31T12:00:00Z` or
    /// `2027-01-01T00:00:00+02:00`.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let trimmed = text.trim();
        // humantime's parser for UTC (`Z`), the form keyhost writes; the
        // `time` crate's for an offset.
        let seconds = match humantime::parse_rfc3339_weak(trimmed) {
            Ok(time) => time
                .duration_since(UNIX_EPOCH)
                .map_err(|_| format!("{text:?} is before 1970"))?
                .as_secs() as i64,
            Err(e) => ::time::OffsetDateTime::parse(
                trimmed,
                &::time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| format!("{text:?} is not an RFC 3339 time ({e})"))?
            .unix_timestamp(),
        };
        if seconds < 0 {
            return Err(format!("{text:?} is before 1970"));
        }
        Ok(Timestamp(seconds))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Clamped: past year 9999 there is no RFC 3339 form to write.
        let seconds = self.0.clamp(0, Self::LATEST.0) as u64;
        let time = UNIX_EPOCH + Duration::from_secs(seconds);
        write!(f, "{}", humantime::format_rfc3339_seconds(time))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The registry's form of a [`Timestamp`]: a TOML datetime, for
/// `#[serde(with = "...")]` on the registry model's fields.
pub mod toml_form {
    use super::*;

    /// Writes `time` as a TOML datetime.
    pub fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        toml::value::Datetime::from_str(&time.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }

    /// Reads either form.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(deserializer)
    }

    /// The same for an optional field.
    pub mod option {
        use super::*;

        /// Writes `time`, when there is one, as a TOML datetime.
        pub fn serialize<S: Serializer>(
            time: &Option<Timestamp>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => serializer.serialize_some(&Form(*time)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads either form.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            Option::<Timestamp>::deserialize(deserializer)
        }

        struct Form(Timestamp);

        impl Serialize for Form {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(&self.0, serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Datetime(toml::value::Datetime),
            Text(String),
        }
        let text = match Either::deserialize(deserializer)? {
            Either::Datetime(datetime) => datetime.to_string(),
            Either::Text(text) => text,
        };
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration such as `30s`, `15m`, `24h` or `90d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 30s, 15m, 24h or 90d ({e})"))
}

/// Parses a point in time given either as a duration from `now` (`90d`) or
/// as an RFC 3339 time.
pub fn parse_when(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let when = match humantime::parse_duration(text.trim()) {
        Ok(duration) => now.checked_plus(duration),
        Err(_) => Some(Timestamp::parse_rfc3339(text).map_err(|_| {
            format!("{text:?} is neither a duration (30s, 15m, 24h, 90d) nor an RFC 3339 time")
        })?),
    };
    when.filter(|when| *when <= Timestamp::LATEST)
        .ok_or_else(|| {
            format!(
                "{text:?} is after {}, the latest time keyhost can write",
                Timestamp::LATEST
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        let now = Timestamp(1_000_000);
        assert_eq!(parse_when("30s", now).unwrap(), Timestamp(1_000_030));
        assert_eq!(parse_when("15m", now).unwrap(), Timestamp(1_000_900));
        assert_eq!(parse_when("24h", now).unwrap(), Timestamp(1_086_400));
        assert_eq!(
            parse_when("90d", now).unwrap(),
            Timestamp(1_000_000 + 90 * 86_400)
        );
        assert_eq!(
            parse_when("1970-01-02T00:00:00Z", now).unwrap(),
            Timestamp(86_400)
        );
        assert!(parse_when("soon", now).is_err());
    }

    #[test]
    fn an_offset_is_taken_and_a_time_past_9999_is_refused() {
        let now = Timestamp(1_000_000);
        assert_eq!(
            parse_when("1970-01-02T02:00:00+02:00", now).unwrap(),
            Timestamp(86_400)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T19:00:00-05:00").unwrap(),
            Timestamp(86_400)
        );
        for far in ["3000000d", "1000000000000d"] {
            let error = parse_when(far, now).unwrap_err();
            assert!(error.contains("latest time"), "{error}");
        }
        assert_eq!(
            parse_when("9999-12-31T23:59:59Z", now).unwrap(),
            Timestamp::LATEST
        );
        // Nothing past it is ever written, and nothing panics on the way.
        assert_eq!(Timestamp(i64::MAX).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(now.plus(Duration::MAX), Timestamp::LATEST);
    }

    #[test]
    fn display_is_rfc3339() {
        assert_eq!(Timestamp(86_400).to_string(), "1970-01-02T00:00:00Z");
    }

    #[test]
    fn json_gets_a_string_and_old_datetime_objects_still_read() {
        let json = serde_json::to_string(&Timestamp(86_400)).unwrap();
        assert_eq!(json, r#""1970-01-02T00:00:00Z""#);
        let old = r#"{"$__toml_private_datetime":"1970-01-02T00:00:00Z"}"#;
        assert_eq!(
            serde_json::from_str::<Timestamp>(old).unwrap(),
            Timestamp(86_400)
        );
    }

    #[test]
    fn the_registry_form_is_a_toml_datetime() {
        #[derive(Serialize, Deserialize)]
        struct Row {
            #[serde(with = "toml_form")]
            at: Timestamp,
            #[serde(with = "toml_form::option", default)]
            until: Option<Timestamp>,
        }
        let row = Row {
            at: Timestamp(86_400),
            until: Some(Timestamp(0)),
        };
        let text = toml::to_string(&row).unwrap();
        assert_eq!(
            text,
            "at = 1970-01-02T00:00:00Z\nuntil = 1970-01-01T00:00:00Z\n"
        );
        let back: Row = toml::from_str("at = \"1970-01-02T00:00:00Z\"").unwrap();
        assert_eq!((back.at, back.until), (Timestamp(86_400), None));
    }
}
