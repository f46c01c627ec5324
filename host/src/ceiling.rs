//! What a key may grant. A key that manages keys through the API can never
//! mint or shape a key wider than itself: not more scopes, not more
//! addresses, not a later expiry, not a looser rate limit. That includes
//! itself, so a narrowed key cannot lift its own limits.
//!
//! The CLI acts with the registry file in hand, as its owner; there is no
//! ceiling there.

use ipnet::IpNet;

use crate::lifecycle::LifecycleError;
use crate::net::parse_cidr;
use crate::ratelimit::RateLimit;
use crate::registry::KeyRecord;
use crate::time::Timestamp;

/// The bounds of the key a caller presented. `None` in a field means the
/// key is not narrowed there, so it bounds nothing.
#[derive(Clone, Debug, Default)]
pub struct Ceiling {
    key_id: String,
    scopes: Option<Vec<String>>,
    networks: Option<Vec<IpNet>>,
    expires_at: Option<Timestamp>,
    rate: Option<RateLimit>,
}

impl Ceiling {
    /// The bounds of `key`, as the registry holds it.
    pub fn of(key: &KeyRecord) -> Ceiling {
        Ceiling {
            key_id: key.id.clone(),
            scopes: (!key.scopes.is_empty()).then(|| key.scopes.clone()),
            // The registry was validated when it was read: every entry parses.
            networks: (!key.allowed_ips.is_empty()).then(|| {
                key.allowed_ips
                    .iter()
                    .filter_map(|entry| parse_cidr(entry).ok())
                    .collect()
            }),
            expires_at: key.expires_at,
            rate: key.rate_limit,
        }
    }

    /// Refuses `key` (a key being created or its state after an update)
    /// when it would reach beyond these bounds.
    pub fn permits(&self, key: &KeyRecord) -> Result<(), LifecycleError> {
        let refuse = |what: String| {
            Err(LifecycleError::Refused(format!(
                "key {} cannot grant more than it has: {what}",
                self.key_id
            )))
        };
        if let Some(own) = &self.scopes {
            if key.scopes.is_empty() {
                return refuse(format!(
                    "it holds only the scopes {}, so the key must name its scopes among them",
                    own.join(", ")
                ));
            }
            if let Some(extra) = key.scopes.iter().find(|scope| !own.contains(scope)) {
                return refuse(format!("it does not hold the scope {extra:?}"));
            }
        }
        if let Some(own) = &self.networks {
            let shown = || {
                own.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if key.allowed_ips.is_empty() {
                return refuse(format!(
                    "it may be used only from {}, so the key needs an IP allow-list within that",
                    shown()
                ));
            }
            for entry in &key.allowed_ips {
                let inside =
                    parse_cidr(entry).is_ok_and(|net| own.iter().any(|outer| outer.contains(&net)));
                if !inside {
                    return refuse(format!("{entry} is outside its allow-list ({})", shown()));
                }
            }
        }
        if let Some(own) = self.expires_at {
            match key.expires_at {
                Some(when) if when <= own => {}
                _ => {
                    return refuse(format!(
                        "it expires at {own}, so the key must expire by then"
                    ));
                }
            }
        }
        if let Some(own) = self.rate {
            let within = key.rate_limit.is_some_and(|rate| rate.within(&own));
            if !within {
                return refuse(format!(
                    "its rate limit is {own}, so the key needs a limit no looser"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::KeyKind;

    fn key(scopes: &[&str], ips: &[&str], expires: Option<i64>, rate: Option<&str>) -> KeyRecord {
        let now = Timestamp(1_700_000_000);
        KeyRecord {
            id: "kid_caller".into(),
            name: "k".into(),
            kind: KeyKind::User,
            owner: "user:eve".parse().unwrap(),
            service: None,
            description: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            allowed_ips: ips.iter().map(|s| s.to_string()).collect(),
            hash: crate::registry::KeyHash([0; 32]),
            created_at: now,
            updated_at: now,
            expires_at: expires.map(Timestamp),
            locked: false,
            disabled: false,
            leaked: false,
            rate_limit: rate.map(|text| text.parse().unwrap()),
            retired: Vec::new(),
        }
    }

    #[test]
    fn an_unbounded_key_permits_anything() {
        let ceiling = Ceiling::of(&key(&[], &[], None, None));
        assert!(ceiling.permits(&key(&[], &[], None, None)).is_ok());
    }

    #[test]
    fn a_narrowed_key_cannot_lift_its_own_limits() {
        let caller = key(&["read"], &["10.0.0.0/8"], Some(100), Some("100/1m"));
        let ceiling = Ceiling::of(&caller);
        assert!(ceiling.permits(&caller).is_ok(), "itself, unchanged");
        let lifted = [
            key(&[], &["10.0.0.0/8"], Some(100), Some("100/1m")),
            key(
                &["read", "write"],
                &["10.0.0.0/8"],
                Some(100),
                Some("100/1m"),
            ),
            key(&["read"], &[], Some(100), Some("100/1m")),
            key(&["read"], &["0.0.0.0/0"], Some(100), Some("100/1m")),
            key(&["read"], &["10.0.0.0/8"], None, Some("100/1m")),
            key(&["read"], &["10.0.0.0/8"], Some(101), Some("100/1m")),
            key(&["read"], &["10.0.0.0/8"], Some(100), None),
            key(&["read"], &["10.0.0.0/8"], Some(100), Some("101/1m")),
            key(&["read"], &["10.0.0.0/8"], Some(100), Some("1000/10m")),
        ];
        for wider in lifted {
            assert!(ceiling.permits(&wider).is_err(), "{wider:?}");
        }
        let narrower = key(&["read"], &["10.1.0.0/16"], Some(50), Some("10/1m"));
        assert!(ceiling.permits(&narrower).is_ok());
    }
}
