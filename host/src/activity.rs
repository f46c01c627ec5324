//! Which keys and identities have not authenticated for a while: the
//! inactive report, as IBM's inactive-identities report gives it. The CLI
//! (`keyhost report inactive`) and the API (`GET /v1/reports/inactive`)
//! both make it here, from the registry's records and serve's usage.
//!
//! A key is inactive when it is at least the period old and serve has not
//! let it through within the period. An identity is inactive when it is at
//! least the period old and none of its keys was let through within it
//! (an identity with no keys at all is inactive too). Something younger
//! than the period is never reported: it has not had the time to be used.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::iam::KeyKind;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::usage::Usage;

/// The period the report covers when none is given, as IBM's report does.
pub const DEFAULT_PERIOD: &str = "720h";

/// The shortest period the report takes: a period of no time would report
/// everything.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);

/// A period of inactivity, as given (`720h`) and in seconds.
#[derive(Clone, Debug)]
pub struct Period {
    text: String,
    length: Duration,
}

impl Period {
    /// Reads `text` (`30s`, `24h`, `90d`), refusing one shorter than
    /// [`MIN_PERIOD`].
    pub fn parse(text: &str) -> Result<Period, String> {
        let length = crate::time::parse_duration(text)?;
        if length < MIN_PERIOD {
            return Err(format!(
                "{text:?} is shorter than one second: every key and identity would be inactive"
            ));
        }
        Ok(Period {
            text: text.trim().to_string(),
            length,
        })
    }

    /// The start of the period that ends at `now` (the epoch at the
    /// latest, for a period longer than time so far).
    fn start(&self, now: Timestamp) -> Timestamp {
        let seconds = i64::try_from(self.length.as_secs()).unwrap_or(i64::MAX);
        Timestamp(now.0.saturating_sub(seconds).max(0))
    }
}

/// The report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InactiveReport {
    /// The period, as given (`720h`).
    #[serde(rename = "for")]
    pub period: String,
    /// Its start: nothing let through since then is listed.
    pub since: String,
    /// Keys not let through since then.
    pub keys: Vec<InactiveKey>,
    /// Identities none of whose keys was let through since then.
    pub identities: Vec<InactiveIdentity>,
}

/// A key in the report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InactiveKey {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    #[schema(value_type = String)]
    pub kind: KeyKind,
    /// Its identity.
    pub owner: String,
    /// When it was created.
    pub created_at: String,
    /// When serve last let it through, if ever.
    pub last_used: Option<String>,
    /// How often serve let it through.
    pub use_count: u64,
}

/// An identity in the report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InactiveIdentity {
    /// The IAM id.
    pub iam_id: String,
    /// `user` or `service-id`.
    pub kind: &'static str,
    /// When it was added.
    pub created_at: String,
    /// When serve last let one of its keys through, if ever.
    pub last_used: Option<String>,
}

impl InactiveReport {
    /// The keys and identities among these that were not used within
    /// `period` up to `now`. `usage` holds what serve counted, by key id;
    /// the result does not depend on any record that is not passed.
    pub fn of<'a>(
        identities: impl IntoIterator<Item = &'a Identity>,
        keys: &[&KeyRecord],
        usage: &BTreeMap<String, Usage>,
        period: &Period,
        now: Timestamp,
    ) -> InactiveReport {
        let since = period.start(now);
        let last_used = |key: &KeyRecord| usage.get(&key.id).and_then(|usage| usage.last_used);
        // The latest use of any of each identity's keys.
        let mut latest: BTreeMap<&str, Option<Timestamp>> = BTreeMap::new();
        for key in keys {
            let entry = latest.entry(key.owner.as_str()).or_default();
            *entry = (*entry).max(last_used(key));
        }
        let inactive_keys = keys
            .iter()
            .filter(|key| key.created_at <= since && last_used(key).is_none_or(|t| t < since))
            .map(|key| InactiveKey {
                id: key.id.clone(),
                name: key.name.clone(),
                kind: key.kind,
                owner: key.owner.to_string(),
                created_at: key.created_at.to_string(),
                last_used: last_used(key).map(|t| t.to_string()),
                use_count: usage.get(&key.id).map_or(0, |usage| usage.count),
            })
            .collect();
        let inactive_identities = identities
            .into_iter()
            .filter_map(|identity| {
                let used = latest.get(identity.iam_id.as_str()).copied().flatten();
                (identity.created_at <= since && used.is_none_or(|t| t < since)).then(|| {
                    InactiveIdentity {
                        iam_id: identity.iam_id.to_string(),
                        kind: identity.kind().as_str(),
                        created_at: identity.created_at.to_string(),
                        last_used: used.map(|t| t.to_string()),
                    }
                })
            })
            .collect();
        InactiveReport {
            period: period.text.clone(),
            since: since.to_string(),
            keys: inactive_keys,
            identities: inactive_identities,
        }
    }

    /// The report as lines of text.
    pub fn text(&self) -> String {
        if self.keys.is_empty() && self.identities.is_empty() {
            return format!(
                "no key or identity has gone unused since {} ({})",
                self.since, self.period
            );
        }
        let mut lines = vec![format!(
            "unused since {} ({}): {} keys, {} identities",
            self.since,
            self.period,
            self.keys.len(),
            self.identities.len()
        )];
        let never = |last: &Option<String>| {
            last.as_deref()
                .map_or("never used".to_string(), |t| format!("last used {t}"))
        };
        for key in &self.keys {
            lines.push(format!(
                "key       {}  {:<24}  {}  {}",
                key.id,
                key.owner,
                key.name,
                never(&key.last_used)
            ));
        }
        for identity in &self.identities {
            lines.push(format!(
                "identity  {:<24}  {}",
                identity.iam_id,
                never(&identity.last_used)
            ));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::IamId;

    const DAY: i64 = 86_400;

    fn identity(name: &str, created: i64) -> Identity {
        Identity {
            iam_id: name.parse::<IamId>().unwrap(),
            owner: None,
            scopes: Vec::new(),
            created_at: Timestamp(created),
        }
    }

    fn key(id: &str, owner: &str, created: i64) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: "site".into(),
            kind: KeyKind::User,
            owner: owner.parse().unwrap(),
            service: None,
            description: String::new(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            hash: crate::registry::KeyHash([0; 32]),
            created_at: Timestamp(created),
            updated_at: Timestamp(created),
            expires_at: None,
            locked: false,
            disabled: false,
            leaked: false,
            rate_limit: None,
            retired: Vec::new(),
        }
    }

    fn used(at: i64) -> Usage {
        let mut usage = Usage::default();
        usage.add_use(crate::usage::Use::at(Timestamp(at)));
        usage
    }

    #[test]
    fn lists_what_went_unused_for_the_period_and_nothing_younger_than_it() {
        let now = 100 * DAY;
        let identities = [
            identity("user:alice", 0),
            identity("user:bob", 0),
            identity("user:carol", now - DAY),
            identity("user:dave", 0),
        ];
        let keys = [
            key("kid_used", "user:alice", 0),
            key("kid_stale", "user:alice", 0),
            key("kid_never", "user:bob", 0),
            key("kid_young", "user:carol", now - DAY),
        ];
        let usage = BTreeMap::from([
            ("kid_used".to_string(), used(now - DAY)),
            ("kid_stale".to_string(), used(now - 40 * DAY)),
        ]);
        let refs: Vec<&KeyRecord> = keys.iter().collect();
        let period = Period::parse("30d").unwrap();
        let report = InactiveReport::of(&identities, &refs, &usage, &period, Timestamp(now));
        let ids: Vec<&str> = report.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["kid_stale", "kid_never"]);
        assert_eq!(report.keys[0].use_count, 1);
        assert_eq!(report.keys[1].last_used, None);
        // Alice used a key; Bob never did; Carol is younger than the
        // period; Dave has no keys.
        let who: Vec<&str> = report
            .identities
            .iter()
            .map(|i| i.iam_id.as_str())
            .collect();
        assert_eq!(who, ["user:bob", "user:dave"]);
        assert_eq!(report.since, Timestamp(now - 30 * DAY).to_string());
        assert!(report.text().contains("kid_stale"));
    }

    #[test]
    fn a_use_at_the_start_of_the_period_counts_and_one_before_it_does_not() {
        let now = 100 * DAY;
        let identities = [identity("user:alice", 0)];
        let keys = [key("kid_a", "user:alice", 0)];
        let refs: Vec<&KeyRecord> = keys.iter().collect();
        let period = Period::parse("1d").unwrap();
        let at = |t: i64| {
            let usage = BTreeMap::from([("kid_a".to_string(), used(t))]);
            InactiveReport::of(&identities, &refs, &usage, &period, Timestamp(now))
                .keys
                .len()
        };
        assert_eq!(at(now - DAY), 0);
        assert_eq!(at(now - DAY - 1), 1);
    }

    #[test]
    fn a_period_is_a_duration_of_a_second_or_more() {
        assert!(Period::parse("0s").unwrap_err().contains("shorter"));
        assert!(
            Period::parse("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        let long = Period::parse("100000000d").unwrap();
        assert_eq!(long.start(Timestamp(DAY)), Timestamp(0));
    }
}
