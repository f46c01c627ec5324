//! The registry's `[rules]`, as IBM Cloud's account settings: rules over
//! every identity's keys, set by the registry's owner (`keyhost rules`) and
//! met by every key written, through the CLI, the API and the console. The
//! lifecycle rules ask them; nothing else decides what they mean.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::iam::IamId;
use crate::net::parse_cidr;
use crate::time::Timestamp;

/// The rules. Each one left out does not apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Only these users may create (or import) keys, as IBM's
    /// `restrict_create_platform_apikey`; any user when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_keys: Option<Vec<IamId>>,
    /// The longest a key may live from when it is created or its expiry is
    /// changed; a key that never expires is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_lifetime: Option<Lifetime>,
    /// Every key must expire.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_expiry: bool,
    /// The addresses every key is used from: a key's own list may only
    /// narrow it, and a key with none takes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    /// Every change to a key through the management API must name the
    /// version it changes (`If-Match`); one without is refused (428).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_if_match: bool,
}

/// A duration as the registry writes it (`90d`), kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetime {
    text: String,
    length: Duration,
}

impl Lifetime {
    /// Reads `text`: a duration of at least a second.
    pub fn parse(text: &str) -> Result<Lifetime, String> {
        let length = crate::time::parse_duration(text)?;
        if length < Duration::from_secs(1) {
            return Err(format!("{text:?} is shorter than one second"));
        }
        Ok(Lifetime {
            text: text.trim().to_string(),
            length,
        })
    }
}

impl Serialize for Lifetime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Lifetime::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A rule's refusal, naming the rule.
pub type Refusal = String;

impl Rules {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    /// That `actor` may create keys.
    pub fn check_creator(&self, actor: &IamId) -> Result<(), Refusal> {
        match &self.create_keys {
            Some(allowed) if !allowed.contains(actor) => Err(format!(
                "the rule create_keys lets only {} create keys, not {actor}",
                if allowed.is_empty() {
                    "no one".to_string()
                } else {
                    allowed
                        .iter()
                        .map(IamId::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
            _ => Ok(()),
        }
    }

    /// That a key set at `now` to expire at `expires_at` (none: never)
    /// meets the expiry rules.
    pub fn check_expiry(
        &self,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        match (expires_at, &self.max_key_lifetime) {
            (None, Some(max)) => Err(format!(
                "the rule max_key_lifetime ({}) refuses a key that never expires: give it an expiry",
                max.text
            )),
            (Some(at), Some(max))
                if now
                    .checked_plus(max.length)
                    .is_some_and(|latest| at > latest) =>
            {
                Err(format!(
                    "the rule max_key_lifetime ({}) refuses an expiry of {at}: a key set now may expire by {} at the latest",
                    max.text,
                    now.checked_plus(max.length).expect("checked above")
                ))
            }
            (None, None) if self.require_expiry => Err(
                "the rule require_expiry refuses a key that never expires: give it an expiry"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The allow-list a key with `own` (canonical CIDRs) gets: its own when
    /// each entry lies within the rule's, the rule's when it has none.
    pub fn narrow(&self, own: Vec<String>) -> Result<Vec<String>, Refusal> {
        if self.allowed_ips.is_empty() {
            return Ok(own);
        }
        if own.is_empty() {
            return Ok(self.allowed_ips.clone());
        }
        let account = self.account_nets();
        for entry in &own {
            let net = parse_cidr(entry).map_err(|e| format!("allowed IPs: {e}"))?;
            if !account.iter().any(|outer| outer.contains(&net)) {
                return Err(format!(
                    "the rule allowed_ips ({}) refuses {entry}: a key's addresses may only narrow it",
                    self.allowed_ips.join(", ")
                ));
            }
        }
        Ok(own)
    }

    fn account_nets(&self) -> Vec<IpNet> {
        // Written by `keyhost rules set`, which parses them: one that does
        // not parse here (a hand edit) contains nothing, so it fails closed.
        self.allowed_ips
            .iter()
            .filter_map(|entry| parse_cidr(entry).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_refuses_by_name_and_lets_the_rest_through() {
        let now = Timestamp(1_000_000);
        let alice: IamId = "user:alice".parse().unwrap();
        let bob: IamId = "user:bob".parse().unwrap();
        let rules = Rules {
            create_keys: Some(vec![alice.clone()]),
            max_key_lifetime: Some(Lifetime::parse("30d").unwrap()),
            require_expiry: true,
            allowed_ips: vec!["10.0.0.0/8".into()],
            require_if_match: false,
        };
        assert!(rules.check_creator(&alice).is_ok());
        assert!(
            rules
                .check_creator(&bob)
                .unwrap_err()
                .contains("create_keys")
        );
        assert!(
            rules
                .check_expiry(None, now)
                .unwrap_err()
                .contains("max_key_lifetime")
        );
        let day = 86_400;
        assert!(
            rules
                .check_expiry(Some(Timestamp(now.0 + 30 * day)), now)
                .is_ok()
        );
        assert!(
            rules
                .check_expiry(Some(Timestamp(now.0 + 30 * day + 1)), now)
                .is_err()
        );
        let expiry_only = Rules {
            require_expiry: true,
            ..Rules::default()
        };
        assert!(
            expiry_only
                .check_expiry(None, now)
                .unwrap_err()
                .contains("require_expiry")
        );
        assert_eq!(rules.narrow(Vec::new()).unwrap(), ["10.0.0.0/8"]);
        assert_eq!(
            rules.narrow(vec!["10.1.0.0/16".into()]).unwrap(),
            ["10.1.0.0/16"]
        );
        assert!(
            rules
                .narrow(vec!["10.0.0.0/7".into()])
                .unwrap_err()
                .contains("allowed_ips")
        );
        assert!(rules.narrow(vec!["192.0.2.1/32".into()]).is_err());
        assert!(Rules::default().is_empty() && !rules.is_empty());
    }

    #[test]
    fn the_table_reads_back_as_written_and_refuses_what_it_does_not_know() {
        let rules: Rules = toml::from_str(
            "create_keys = [\"user:alice\"]\nmax_key_lifetime = \"90d\"\nallowed_ips = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert!(
            toml::to_string(&rules)
                .unwrap()
                .contains("max_key_lifetime = \"90d\"")
        );
        assert!(toml::from_str::<Rules>("max_key_lifetime = \"soon\"").is_err());
        assert!(toml::from_str::<Rules>("restrict = true").is_err());
    }
}
