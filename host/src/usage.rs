//! A key's activity (IBM's `activity{last_authn, authn_count}`): its last
//! authentication (time, service, client address), use count and uses per
//! hour over the last day, kept in a state file beside the registry
//! (`PATH.usage.json`), so the TOML is not rewritten per request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
/// How much a key was used.
pub struct Usage {
    /// When serve last let the key through.
    pub last_used: Option<Timestamp>,
    /// Where that use was going and came from.
    #[serde(flatten)]
    pub last_authn: LastAuthn,
    /// How often it did.
    pub count: u64,
    /// Uses per hour over the last day.
    #[serde(default)]
    pub hourly: Hourly,
}

/// The service and client address of a key's last use. Both are what serve
/// decided on: a service with a control character never got that far, and
/// the address is the one serve believes (its peer, or a trusted proxy's
/// forwarded address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAuthn {
    /// The service the request named, if it named one.
    #[serde(
        default,
        rename = "last_service",
        skip_serializing_if = "Option::is_none"
    )]
    pub service: Option<String>,
    /// The client's address, if serve knew it.
    #[serde(
        default,
        rename = "last_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<String>,
}

/// The longest service kept, in characters (a service field's bound).
const MAX_SERVICE_CHARS: usize = 128;

impl LastAuthn {
    /// Becomes `service` and `address`, allocating only for what changed
    /// (one key's uses usually repeat both). A service is kept redacted of
    /// anything shaped like a key and cut to [`MAX_SERVICE_CHARS`]; an
    /// address only if it is one, in canonical form.
    fn set(&mut self, service: Option<&str>, address: Option<&str>) {
        let service = service.map(kept_service);
        if self.service.as_deref() != service.as_deref() {
            self.service = service.map(std::borrow::Cow::into_owned);
        }
        if self.address.as_deref() != address {
            self.address = address
                .and_then(|text| text.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.to_string());
        }
    }
}

/// `service` as an activity record keeps it.
fn kept_service(service: &str) -> std::borrow::Cow<'_, str> {
    let plain = !service.contains(['_', '%']) && !service.contains("eyJ");
    if plain && service.len() <= MAX_SERVICE_CHARS {
        return service.into();
    }
    let redacted = crate::key_format::redact(service);
    redacted
        .chars()
        .take(MAX_SERVICE_CHARS)
        .collect::<String>()
        .into()
}

/// One use of a key, as serve let it through.
#[derive(Clone, Copy, Debug)]
pub struct Use<'a> {
    /// When.
    pub at: Timestamp,
    /// The service the request named.
    pub service: Option<&'a str>,
    /// The client address serve believed.
    pub address: Option<&'a str>,
}

impl Use<'static> {
    /// A use at `at` with no service or address known.
    pub fn at(at: Timestamp) -> Use<'static> {
        Use {
            at,
            service: None,
            address: None,
        }
    }
}

impl Usage {
    /// Counts one use.
    pub fn add_use(&mut self, used: Use<'_>) {
        self.count += 1;
        if self.last_used.is_none_or(|last| used.at >= last) {
            self.last_used = Some(used.at);
            self.last_authn.set(used.service, used.address);
        }
        self.hourly.add(used.at, 1);
    }

    /// Adds uses counted elsewhere; the later last use wins.
    pub fn merge(&mut self, other: &Usage) {
        self.count += other.count;
        if other.last_used > self.last_used {
            self.last_used = other.last_used;
            self.last_authn = other.last_authn.clone();
        }
        self.hourly.merge(&other.hourly);
    }
}

/// The hours a [`Hourly`] window holds.
pub const HOURS: usize = 24;

/// Uses per hour over the last [`HOURS`] hours: `counts[HOURS - 1]` is the
/// hour numbered `hour` (Unix seconds / 3600), each slot before it one hour
/// earlier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hourly {
    /// The latest hour held.
    pub hour: i64,
    /// Uses in each hour, oldest first.
    pub counts: [u64; HOURS],
}

impl Hourly {
    /// Counts `uses` in the hour of `at`; an hour older than the window is
    /// dropped.
    pub fn add(&mut self, at: Timestamp, uses: u64) {
        let hour = at.0.div_euclid(3600);
        self.advance(hour);
        let back = self.hour.saturating_sub(hour);
        if (0..HOURS as i64).contains(&back) {
            self.counts[HOURS - 1 - back as usize] =
                self.counts[HOURS - 1 - back as usize].saturating_add(uses);
        }
    }

    /// Adds another window's counts.
    pub fn merge(&mut self, other: &Hourly) {
        for (slot, &uses) in other.counts.iter().enumerate() {
            if uses > 0 {
                let hour = other.hour.saturating_sub((HOURS - 1 - slot) as i64);
                self.add(Timestamp(hour.saturating_mul(3600)), uses);
            }
        }
    }

    /// Moves the window forward so that its latest hour is `hour`.
    fn advance(&mut self, hour: i64) {
        if hour <= self.hour {
            return;
        }
        let shift = hour.saturating_sub(self.hour).min(HOURS as i64) as usize;
        self.counts.rotate_left(shift);
        self.counts[HOURS - shift..].fill(0);
        self.hour = hour;
    }

    /// The [`HOURS`] hours up to and including the hour of `now`, oldest
    /// first: each hour's start and its uses.
    pub fn window(&self, now: Timestamp) -> Vec<(Timestamp, u64)> {
        let mut moved = *self;
        moved.advance(now.0.div_euclid(3600));
        let latest = moved.hour;
        moved
            .counts
            .iter()
            .enumerate()
            .map(|(slot, &uses)| {
                let hour = latest.saturating_sub((HOURS - 1 - slot) as i64);
                (Timestamp(hour.saturating_mul(3600)), uses)
            })
            .collect()
    }
}

/// Reads the usage file; a missing file is no usage yet.
pub fn load(path: &Path) -> Result<BTreeMap<String, Usage>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("usage file {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read usage file {}", path.display())),
    }
}

/// Counts uses in memory; `flush` writes them out.
pub struct UsageTracker {
    path: PathBuf,
    state: Mutex<Tracked>,
}

struct Tracked {
    usage: BTreeMap<String, Usage>,
    dirty: bool,
}

impl UsageTracker {
    /// Starts from what the file already holds.
    pub fn open(path: PathBuf) -> Result<UsageTracker> {
        let usage = load(&path)?;
        Ok(UsageTracker {
            path,
            state: Mutex::new(Tracked {
                usage,
                dirty: false,
            }),
        })
    }

    /// Counts a use of `key_id`.
    pub fn record(&self, key_id: &str, used: Use<'_>) {
        let mut state = self.state.lock().expect("usage lock");
        let usage = match state.usage.get_mut(key_id) {
            Some(usage) => usage,
            None => state.usage.entry(key_id.to_string()).or_default(),
        };
        usage.add_use(used);
        state.dirty = true;
    }

    /// The counts of one key so far, flushed or not.
    pub fn get(&self, key_id: &str) -> Option<Usage> {
        self.state
            .lock()
            .expect("usage lock")
            .usage
            .get(key_id)
            .cloned()
    }

    /// Writes the counts when they changed since the last flush.
    pub fn flush(&self) -> Result<()> {
        let bytes = {
            let mut state = self.state.lock().expect("usage lock");
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            serde_json::to_vec_pretty(&state.usage)?
        };
        crate::durable::replace(&self.path, &bytes)
    }
}

#[cfg(test)]
mod hourly_tests {
    use super::*;

    const HOUR: i64 = 3600;

    #[test]
    fn uses_land_in_their_hour_and_fall_out_after_a_day() {
        let start = Timestamp(1_000 * HOUR);
        let mut usage = Usage::default();
        usage.add_use(Use::at(start));
        usage.add_use(Use::at(Timestamp(start.0 + 59)));
        usage.add_use(Use::at(Timestamp(start.0 + 2 * HOUR)));
        let window = usage.hourly.window(Timestamp(start.0 + 2 * HOUR));
        assert_eq!(window.len(), HOURS);
        assert_eq!(window[HOURS - 1], (Timestamp(start.0 + 2 * HOUR), 1));
        assert_eq!(window[HOURS - 3], (start, 2));
        assert_eq!(window.iter().map(|(_, n)| n).sum::<u64>(), 3);
        // A day later the first hour is gone; two days later, all of them.
        let later = usage.hourly.window(Timestamp(start.0 + 24 * HOUR));
        assert_eq!(later.iter().map(|(_, n)| n).sum::<u64>(), 1);
        let gone = usage.hourly.window(Timestamp(start.0 + 48 * HOUR));
        assert_eq!(gone.iter().map(|(_, n)| n).sum::<u64>(), 0);
        assert_eq!(usage.count, 3);
    }

    #[test]
    fn merging_two_windows_adds_them_hour_by_hour() {
        let start = Timestamp(2_000 * HOUR);
        let (mut a, mut b) = (Usage::default(), Usage::default());
        a.add_use(Use {
            at: start,
            service: Some("billing"),
            address: Some("192.0.2.1"),
        });
        b.add_use(Use::at(start));
        b.add_use(Use {
            at: Timestamp(start.0 + 5 * HOUR),
            service: Some("reports"),
            address: Some("192.0.2.2"),
        });
        a.merge(&b);
        let window = a.hourly.window(Timestamp(start.0 + 5 * HOUR));
        assert_eq!(window[HOURS - 6], (start, 2));
        assert_eq!(window[HOURS - 1].1, 1);
        assert_eq!(a.count, 3);
        assert_eq!(a.last_used, Some(Timestamp(start.0 + 5 * HOUR)));
    }

    #[test]
    fn the_last_authentication_is_the_latest_use_wherever_it_was_counted() {
        let start = Timestamp(3_000 * HOUR);
        let mut usage = Usage::default();
        usage.add_use(Use {
            at: start,
            service: Some("billing"),
            address: Some("192.0.2.1"),
        });
        // A use counted with an earlier time (another thread's clock read)
        // does not take the last authentication's place.
        usage.add_use(Use {
            service: Some("reports"),
            ..Use::at(Timestamp(start.0 - 1))
        });
        assert_eq!(usage.last_authn.service.as_deref(), Some("billing"));
        assert_eq!(usage.last_authn.address.as_deref(), Some("192.0.2.1"));

        let mut later = Usage::default();
        later.add_use(Use {
            address: Some("2001:db8::1"),
            ..Use::at(Timestamp(start.0 + 10))
        });
        let mut merged = usage.clone();
        merged.merge(&later);
        assert_eq!(merged.last_authn, later.last_authn);
        let mut other_way = later.clone();
        other_way.merge(&usage);
        assert_eq!(other_way.last_authn, later.last_authn);
        assert_eq!((merged.count, other_way.count), (3, 3));

        // A service shaped like a key is kept redacted, a long one cut, and
        // an address that is not one is not kept.
        let mut odd = Usage::default();
        odd.add_use(Use {
            service: Some(&"s".repeat(500)),
            address: Some("not an address"),
            ..Use::at(start)
        });
        assert_eq!(odd.last_authn.service.as_ref().map(String::len), Some(128));
        assert_eq!(odd.last_authn.address, None);
        let secret = crate::key_format::generate("kh", crate::iam::KeyKind::User);
        odd.add_use(Use {
            service: Some(secret.expose()),
            address: Some("2001:DB8::1"),
            ..Use::at(Timestamp(start.0 + 1))
        });
        let kept = odd.last_authn.service.clone().unwrap();
        assert!(!kept.contains(secret.expose()), "{kept}");
        assert_eq!(odd.last_authn.address.as_deref(), Some("2001:db8::1"));

        // The file's form: the two fields sit beside last_used, and a file
        // written before they existed still reads.
        let json = serde_json::to_value(&merged).unwrap();
        assert_eq!(json["last_address"], "2001:db8::1");
        assert!(json.get("last_service").is_none());
        let old: Usage =
            serde_json::from_str(r#"{"last_used":"2026-01-01T00:00:00Z","count":4}"#).unwrap();
        assert_eq!((old.count, old.last_authn), (4, LastAuthn::default()));
    }
}
