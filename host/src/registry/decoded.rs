//! Records of keys found lately, kept decoded for the snapshot in force.
//!
//! A snapshot holds each key's record as JSON; decoding it (with its
//! timestamps and hashes) took 14% of serve's own CPU on /auth (perf, one
//! key under wrk). A key found once is decoded once for the life of the
//! snapshot, which is that of one version of the registry: a write, a
//! reload or a changes file makes a new one, and a new, empty cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use super::{Found, Identity, KeyRecord, Lent};
use crate::time::Timestamp;

/// How many keys' records are kept decoded; past it the cache starts
/// again. About 1 KB each.
const DECODED_KEYS: usize = 4096;

/// Decoded records by the first 8 bytes of the SHA-256 that found them,
/// the whole hash compared in constant time, as the snapshot's own index
/// does. Only keys found are kept: unknown secrets cannot fill it.
#[derive(Default)]
pub(super) struct DecodedKeys {
    kept: Mutex<HashMap<u64, Vec<DecodedKey>>>,
}

struct DecodedKey {
    hash: [u8; 32],
    position: usize,
    key: Arc<KeyRecord>,
    identity: Option<Arc<Identity>>,
    retired_until: Option<Timestamp>,
}

impl DecodedKey {
    fn found(&self) -> Found<'static> {
        Found {
            position: self.position,
            key: Lent::Shared(self.key.clone()),
            identity: self.identity.clone().map(Lent::Shared),
            retired_until: self.retired_until,
        }
    }
}

fn prefix(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

impl DecodedKeys {
    /// The key `hash` found before, shared.
    pub(super) fn get(&self, hash: &[u8; 32]) -> Option<Found<'static>> {
        let kept = self.kept.lock().expect("decoded keys lock");
        kept.get(&prefix(hash))?
            .iter()
            .find(|decoded| bool::from(decoded.hash.ct_eq(hash)))
            .map(DecodedKey::found)
    }

    /// Keeps `found`, found by `hash`, and gives it back shared.
    pub(super) fn keep(&self, hash: &[u8; 32], found: Found<'_>) -> Found<'static> {
        let decoded = DecodedKey {
            hash: *hash,
            position: found.position,
            key: Arc::new(found.key.into_owned()),
            identity: found
                .identity
                .map(|identity| Arc::new(identity.into_owned())),
            retired_until: found.retired_until,
        };
        let shared = decoded.found();
        let mut kept = self.kept.lock().expect("decoded keys lock");
        if kept.len() >= DECODED_KEYS {
            kept.clear();
        }
        kept.entry(prefix(hash)).or_default().push(decoded);
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str) -> Found<'static> {
        let mut key = crate::synthetic::registry(1, 1).registry.keys.remove(0);
        key.id = id.to_string();
        Found {
            position: 3,
            key: Lent::Owned(key),
            identity: None,
            retired_until: None,
        }
    }

    #[test]
    fn a_key_kept_is_found_by_its_whole_hash_only() {
        let decoded = DecodedKeys::default();
        let hash = [7u8; 32];
        let mut same_prefix = hash;
        same_prefix[31] = 8;
        assert!(decoded.get(&hash).is_none());
        decoded.keep(&hash, found("kid_a"));
        assert_eq!(decoded.get(&hash).unwrap().key.id, "kid_a");
        assert!(
            decoded.get(&same_prefix).is_none(),
            "a hash that shares the first 8 bytes is another key"
        );
        decoded.keep(&same_prefix, found("kid_b"));
        assert_eq!(decoded.get(&same_prefix).unwrap().key.id, "kid_b");
        assert_eq!(decoded.get(&hash).unwrap().key.id, "kid_a");
    }

    #[test]
    fn the_cache_holds_at_most_its_bound() {
        let decoded = DecodedKeys::default();
        for i in 0..(DECODED_KEYS as u32 + 10) {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_le_bytes());
            decoded.keep(&hash, found("kid_x"));
            assert!(decoded.kept.lock().unwrap().len() <= DECODED_KEYS);
        }
    }
}
