//! Optimistic concurrency, as IBM's `entity_tag` and HTTP's `ETag` and
//! `If-Match`: every key and identity has a tag that changes whenever its
//! record does, and a change may ask to be made only on the version it
//! read. The tag is checked under the registry's lock, in the write that
//! makes the change, so of two writers that read one version, one wins
//! and the other is told, with nothing written.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{LifecycleError, Result};
use crate::iam::IamId;
use crate::registry::{Identity, KeyHash, KeyRecord, Registry};

/// A record's tag: the first 12 bytes of the SHA-256 of the record as
/// stored, in hex, but for a key's secret hashes. Made from the record
/// alone, so every replica of a registry gives the same tag, and a record
/// that changes and changes back is the same version again. The hashes are
/// left out so that a tag is no test of a guessed secret (an imported one
/// may be weak); a rotation still changes the tag, by the times it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag(String);

impl EntityTag {
    /// The tag of `key` as it stands.
    pub fn of_key(key: &KeyRecord) -> EntityTag {
        let mut shown = key.clone();
        shown.hash = KeyHash([0; 32]);
        for retired in &mut shown.retired {
            retired.hash = KeyHash([0; 32]);
        }
        EntityTag::of(&shown)
    }

    /// The tag of `identity` as it stands.
    pub fn of_identity(identity: &Identity) -> EntityTag {
        EntityTag::of(identity)
    }

    fn of(record: &impl serde::Serialize) -> EntityTag {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        EntityTag(hex::encode(&Sha256::digest(bytes)[..12]))
    }

    /// The tag as text, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as an HTTP `ETag` value: quoted, strong.
    pub fn header_value(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a change asks of the record's version before it is made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: the change is made on whatever version stands.
    #[default]
    None,
    /// `*`: any version, as long as the record exists.
    Exists,
    /// One of these tags (as a client sent them, unquoted).
    OneOf(Vec<String>),
}

impl Precondition {
    /// Reads an `If-Match` value or a `--if-match` argument: `*`, or one or
    /// more tags separated by commas, each quoted (`"abc"`) or bare (as
    /// IBM's clients send `entity_tag`). A weak tag (`W/"abc"`) never
    /// matches: If-Match compares strongly (RFC 9110, 13.1.1).
    pub fn parse(text: &str) -> std::result::Result<Precondition, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Precondition::Exists);
        }
        let mut tags = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.starts_with("W/") {
                continue;
            }
            let tag = part
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or(part);
            if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!(
                    "{part:?} is not an entity tag: give the entity_tag a read answered, or *"
                ));
            }
            tags.push(tag.to_string());
        }
        if tags.is_empty() && !text.contains("W/") {
            return Err("no entity tag given: give the entity_tag a read answered, or *".into());
        }
        Ok(Precondition::OneOf(tags))
    }

    /// Whether a change asks for anything.
    pub fn is_none(&self) -> bool {
        matches!(self, Precondition::None)
    }

    /// Refuses when the record `what` `id`, whose tag is `current` (none:
    /// it does not exist), is not the version asked for.
    pub fn check(&self, what: &'static str, id: &str, current: Option<&EntityTag>) -> Result<()> {
        let holds = match (self, current) {
            (Precondition::None, _) => true,
            (Precondition::Exists, current) => current.is_some(),
            (Precondition::OneOf(tags), Some(current)) => {
                tags.iter().any(|tag| tag == current.as_str())
            }
            (Precondition::OneOf(_), None) => false,
        };
        if holds {
            return Ok(());
        }
        Err(LifecycleError::Stale {
            what,
            id: id.to_string(),
            current: current.cloned(),
        })
    }
}

/// Makes `change` to key `id` only if the key stands as `precondition`
/// asks. The rules `change` applies (ownership, locks) are met first, so
/// that a stale tag tells no one but the key's manager that it exists.
pub fn on_key<T>(
    registry: &mut Registry,
    id: &str,
    precondition: &Precondition,
    change: impl FnOnce(&mut Registry) -> Result<T>,
) -> Result<T> {
    let before = registry.key(id).map(EntityTag::of_key);
    let value = change(registry)?;
    precondition.check("key", id, before.as_ref())?;
    Ok(value)
}

/// Makes `change` to identity `iam_id` only if it stands as
/// `precondition` asks.
pub fn on_identity<T>(
    registry: &mut Registry,
    iam_id: &IamId,
    precondition: &Precondition,
    change: impl FnOnce(&mut Registry) -> Result<T>,
) -> Result<T> {
    let before = registry.identity(iam_id).map(EntityTag::of_identity);
    let value = change(registry)?;
    precondition.check("identity", iam_id.as_str(), before.as_ref())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_reads_a_star_bare_or_quoted_tags_and_skips_weak_ones() {
        assert_eq!(Precondition::parse(" * ").unwrap(), Precondition::Exists);
        assert_eq!(
            Precondition::parse("\"abc\", def, W/\"ghi\"").unwrap(),
            Precondition::OneOf(vec!["abc".into(), "def".into()])
        );
        // Only weak tags: nothing can match.
        assert_eq!(
            Precondition::parse("W/\"abc\"").unwrap(),
            Precondition::OneOf(Vec::new())
        );
        for bad in ["", "\"\"", "a b", "\"abc", "x\u{202E}y"] {
            assert!(Precondition::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_precondition_holds_only_for_the_version_it_names() {
        let tag = EntityTag("0123456789abcdef01234567".into());
        let other = Precondition::OneOf(vec!["ffffffffffffffffffffffff".into()]);
        let same = Precondition::OneOf(vec![tag.to_string()]);
        assert!(Precondition::None.check("key", "kid_a", None).is_ok());
        assert!(
            Precondition::Exists
                .check("key", "kid_a", Some(&tag))
                .is_ok()
        );
        assert!(Precondition::Exists.check("key", "kid_a", None).is_err());
        assert!(same.check("key", "kid_a", Some(&tag)).is_ok());
        assert!(same.check("key", "kid_a", None).is_err());
        let stale = other.check("key", "kid_a", Some(&tag)).unwrap_err();
        assert!(stale.to_string().contains("kid_a"), "{stale}");
        assert!(stale.to_string().contains(tag.as_str()), "{stale}");
    }
}
