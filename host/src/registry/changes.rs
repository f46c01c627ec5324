//! The changes file: key writes to a large registry, kept beside it
//! (`PATH.changes.toml`) until they are folded in.
//!
//! Rewriting a registry of a million keys (400 MB of TOML) for every
//! `create` costs seconds. So once a registry holds `changes_from_keys`
//! keys, a write that touches only keys (create, rotate, disable, delete
//! ...) writes the keys it changed here, and the snapshot of them beside
//! the registry's own (registry/compact.rs); what it costs is what it
//! changed. Any other write (an identity, a setting) folds the changes into
//! the registry file; a key write that finds [`MAX_CHANGES`] keys here
//! folds them in first (registry/file.rs).
//!
//! It is TOML, as the registry is: the keys as they are now (`[[key]]`),
//! and the ids of the keys deleted (`removed`). Each is a change of the
//! registry file's `base_revision`. A registry file of the revision right
//! after the changes' own holds them already (they were folded into it,
//! and the writer stopped before it removed this file): they are void. A
//! registry file of any other revision is not the one they were made for
//! (an older copy put back, or a revision edited by hand): guessing could
//! bring back a key they deleted, so it is an error until a person
//! settles it.
//!
//! A hand edit of the registry file still counts: `[bases]` keeps, for each
//! key changed here, a digest of that key as the registry file held it
//! (`""` when it held none). When the registry file's key no longer
//! matches, it was edited after the change, and the registry file's
//! version is in force.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KeyRecord;

/// The changes file format this build reads and writes.
pub const CHANGES_VERSION: u32 = 1;

/// The most keys a changes file holds: the next key write folds them into
/// the registry file.
pub const MAX_CHANGES: usize = 512;

/// A registry smaller than this (`changes_from_keys`, unless the registry
/// sets it) is rewritten whole on every write.
pub const DEFAULT_CHANGES_FROM_KEYS: u32 = 1000;

/// The changes file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// Its format version.
    pub version: u32,
    /// The revision of the registry file these changes are made to.
    pub base_revision: u64,
    /// The registry's revision with them.
    pub revision: u64,
    /// The ids of the keys deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Per key changed here, the digest of the registry file's version of
    /// it when it was first changed (`""`: it had none).
    #[serde(default)]
    pub bases: BTreeMap<String, String>,
    /// The keys created or changed, as they are now.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyRecord>,
}

/// What the changes make of the registry file's keys: the changes that
/// stand (those whose key the registry file has not changed since).
#[derive(Debug, Default)]
pub struct Effective {
    /// Keys created or changed, in the changes file's order.
    pub keys: Vec<KeyRecord>,
    /// Ids of keys deleted.
    pub removed: Vec<String>,
}

impl Effective {
    /// Every key id the changes speak for: the registry file's key of
    /// that id, if any, is not in force.
    pub fn superseded(&self) -> HashSet<String> {
        self.keys
            .iter()
            .map(|key| key.id.clone())
            .chain(self.removed.iter().cloned())
            .collect()
    }
}

/// The digest `[bases]` keeps of a registry file's key (`""` for none).
pub fn digest_of(key: Option<&KeyRecord>) -> String {
    key.map(|key| {
        let json = serde_json::to_vec(key).expect("a key record serializes");
        hex::encode(Sha256::digest(json))
    })
    .unwrap_or_default()
}

impl Changes {
    /// No changes yet, to the registry file of `base_revision`.
    pub fn new(base_revision: u64) -> Changes {
        Changes {
            version: CHANGES_VERSION,
            base_revision,
            revision: base_revision,
            ..Changes::default()
        }
    }

    /// Parses a changes file's text; errors name the line.
    pub fn parse(text: &str) -> Result<Changes> {
        let changes: Changes =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        if changes.version != CHANGES_VERSION {
            bail!(
                "unsupported changes file version {} (this keyhost reads version {CHANGES_VERSION})",
                changes.version
            );
        }
        if changes.revision < changes.base_revision {
            bail!(
                "its revision {} is older than the registry file's {} it changes",
                changes.revision,
                changes.base_revision
            );
        }
        Ok(changes)
    }

    /// Whether these changes are to be made to a registry file of
    /// `revision`: yes for the one they were made for, no (void) for the
    /// one they were folded into, an error for any other.
    pub fn apply_to(&self, revision: u64) -> Result<bool> {
        if revision == self.base_revision {
            return Ok(true);
        }
        if self.revision.checked_add(1) == Some(revision) {
            return Ok(false);
        }
        bail!(
            "the changes are to revision {} of the registry file, which is at revision {revision}: \
             it was replaced by another copy, or its revision edited; put back the registry file \
             they were made for, or remove the changes file to drop them",
            self.base_revision
        )
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# Key changes not yet folded into the registry file beside it; they are\n\
             # newer than it. Edit a key here if it is listed here. Any write that is\n\
             # not of keys alone folds them in (docs: \"The registry on disk\").\n{body}"
        ))
    }

    /// How many keys it speaks for.
    pub fn len(&self) -> usize {
        self.keys.len() + self.removed.len()
    }

    /// The changes that stand over the registry file whose key of an id
    /// is `base(id)`; the ids whose change the registry file overrode go
    /// to `overridden`.
    pub fn effective(
        &self,
        mut base: impl FnMut(&str) -> Result<Option<KeyRecord>>,
        overridden: &mut Vec<String>,
    ) -> Result<Effective> {
        let mut stands = |id: &str| -> Result<bool> {
            let recorded = self.bases.get(id).map(String::as_str).unwrap_or("");
            let now = digest_of(base(id)?.as_ref());
            if now != recorded {
                overridden.push(id.to_string());
            }
            Ok(now == recorded)
        };
        let mut effective = Effective::default();
        let mut seen = HashSet::new();
        for key in &self.keys {
            if !seen.insert(key.id.as_str()) {
                bail!("key id {} appears twice", key.id);
            }
            if stands(&key.id)? {
                effective.keys.push(key.clone());
            }
        }
        for id in &self.removed {
            if !seen.insert(id.as_str()) {
                bail!("key id {id} is both changed and removed, or removed twice");
            }
            if stands(id)? {
                effective.removed.push(id.clone());
            }
        }
        Ok(effective)
    }

    /// Drops whatever it says of key `id`.
    pub fn forget(&mut self, id: &str) {
        self.bases.remove(id);
        self.keys.retain(|key| key.id != id);
        self.removed.retain(|removed| removed != id);
    }

    /// Records that key `id`, whose registry file version is `base`, is
    /// now `now` (`None`: deleted).
    pub fn record(&mut self, id: &str, base: Option<&KeyRecord>, now: Option<KeyRecord>) {
        let first = self.bases.remove(id).unwrap_or_else(|| digest_of(base));
        self.removed.retain(|removed| removed != id);
        // A key changed again keeps its place: the registry's order is
        // the order keys were created in.
        let at = self.keys.iter().position(|key| key.id == id);
        match (now, at) {
            (Some(key), Some(at)) => self.keys[at] = key,
            (Some(key), None) => self.keys.push(key),
            (None, at) => {
                if let Some(at) = at {
                    self.keys.remove(at);
                }
                // A key the registry file never had leaves nothing behind.
                if base.is_none() {
                    return;
                }
                self.removed.push(id.to_string());
            }
        }
        self.bases.insert(id.to_string(), first);
    }
}

/// Applies `effective` to the registry file's `keys`.
pub fn apply(keys: &mut Vec<KeyRecord>, effective: Effective) {
    let superseded = effective.superseded();
    lay_over(keys, effective.keys, &superseded);
}

/// `keys` (the registry file's, in order) with the `changed` keys in place
/// of those of their ids, the `superseded` ones without a change gone
/// (deleted), and the rest of `changed` (created) at the end.
pub fn lay_over(keys: &mut Vec<KeyRecord>, changed: Vec<KeyRecord>, superseded: &HashSet<String>) {
    let mut changed: Vec<Option<KeyRecord>> = changed.into_iter().map(Some).collect();
    let at: std::collections::HashMap<String, usize> = changed
        .iter()
        .enumerate()
        .map(|(i, key)| (key.as_ref().expect("all present").id.clone(), i))
        .collect();
    keys.retain_mut(|key| {
        if !superseded.contains(&key.id) {
            return true;
        }
        match at.get(&key.id).and_then(|&i| changed[i].take()) {
            Some(now) => {
                *key = now;
                true
            }
            None => false,
        }
    });
    keys.extend(changed.into_iter().flatten());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, name: &str) -> KeyRecord {
        let mut record = crate::synthetic::registry(1, 1).registry.keys.remove(0);
        record.id = id.to_string();
        record.name = name.to_string();
        record
    }

    #[test]
    fn a_change_stands_until_the_registry_file_changes_that_key() {
        let base = vec![key("kid_a", "a"), key("kid_b", "b")];
        let find = |id: &str| Ok(base.iter().find(|k| k.id == id).cloned());
        let mut changes = Changes::new(3);
        changes.record("kid_a", Some(&base[0]), Some(key("kid_a", "renamed")));
        changes.record("kid_b", Some(&base[1]), None);
        changes.record("kid_c", None, Some(key("kid_c", "new")));
        let text = changes.to_toml().unwrap();
        let changes = Changes::parse(&text).unwrap();
        let mut overridden = Vec::new();
        let effective = changes.effective(find, &mut overridden).unwrap();
        assert!(overridden.is_empty());
        let mut keys = base.clone();
        apply(&mut keys, effective);
        let names: Vec<_> = keys
            .iter()
            .map(|k| (k.id.as_str(), k.name.as_str()))
            .collect();
        assert_eq!(names, [("kid_a", "renamed"), ("kid_c", "new")]);

        // kid_a edited by hand in the registry file after the change: the
        // hand edit is in force; the other changes still stand.
        let mut edited = base.clone();
        edited[0].name = "by hand".into();
        let find = |id: &str| Ok(edited.iter().find(|k| k.id == id).cloned());
        let mut overridden = Vec::new();
        let effective = changes.effective(find, &mut overridden).unwrap();
        assert_eq!(overridden, ["kid_a"]);
        let mut keys = edited.clone();
        apply(&mut keys, effective);
        let names: Vec<_> = keys
            .iter()
            .map(|k| (k.id.as_str(), k.name.as_str()))
            .collect();
        assert_eq!(names, [("kid_a", "by hand"), ("kid_c", "new")]);
    }

    #[test]
    fn changes_apply_to_their_revision_are_void_once_folded_and_refuse_any_other() {
        let mut changes = Changes::new(7);
        changes.revision = 9;
        assert!(changes.apply_to(7).unwrap());
        assert!(!changes.apply_to(10).unwrap());
        for other in [6, 8, 9, 11, 70] {
            let error = changes.apply_to(other).unwrap_err().to_string();
            assert!(
                error.contains("revision 7") && error.contains(&format!("revision {other}")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_key_created_and_deleted_among_the_changes_leaves_nothing() {
        let mut changes = Changes::new(1);
        changes.record("kid_c", None, Some(key("kid_c", "new")));
        changes.record("kid_c", None, None);
        assert_eq!(changes.len(), 0);
        assert!(changes.bases.is_empty());
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let mut changes = Changes::new(1);
        changes.keys.push(key("kid_a", "a"));
        changes.removed.push("kid_a".into());
        let error = changes
            .effective(|_| Ok(None), &mut Vec::new())
            .unwrap_err();
        assert!(error.to_string().contains("kid_a"), "{error}");
    }
}
