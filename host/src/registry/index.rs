//! Finds a key by the SHA-256 of a presented secret.
//!
//! The map is keyed by the first 8 bytes of the hash; the full 32 bytes are
//! then compared in constant time, so how long a lookup takes says nothing
//! about how close a guess came.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use super::Registry;
use crate::time::Timestamp;

/// What a presented hash matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    /// Index into `Registry::keys`.
    pub key: usize,
    /// Set when the hash is a rotated-out secret that is valid until then.
    pub retired_until: Option<Timestamp>,
}

struct Entry {
    hash: [u8; 32],
    matched: Matched,
}

/// An index of every current and retired secret hash of a registry.
#[derive(Default)]
pub struct KeyIndex {
    by_prefix: HashMap<u64, Vec<Entry>>,
}

fn prefix_of(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

impl KeyIndex {
    /// The index of every hash in `registry`.
    pub fn build(registry: &Registry) -> KeyIndex {
        let mut index = KeyIndex::default();
        for (hash, key, retired_until) in KeyIndex::hashes(registry) {
            index
                .by_prefix
                .entry(prefix_of(&hash))
                .or_default()
                .push(Entry {
                    hash,
                    matched: Matched { key, retired_until },
                });
        }
        index
    }

    /// Every current and retired secret hash of `registry`, with the key's
    /// position and, for a retired one, when it stops working.
    pub fn hashes(
        registry: &Registry,
    ) -> impl Iterator<Item = ([u8; 32], usize, Option<Timestamp>)> + '_ {
        keyhost_core::record::secret_hashes(&registry.keys)
    }

    /// The key whose secret hashes to `hash`, if any.
    pub fn find(&self, hash: &[u8; 32]) -> Option<Matched> {
        let candidates = self.by_prefix.get(&prefix_of(hash))?;
        let mut result = None;
        // Every candidate is compared, not just up to the first match.
        for entry in candidates {
            if bool::from(entry.hash.ct_eq(hash)) {
                result = Some(entry.matched);
            }
        }
        result
    }
}
