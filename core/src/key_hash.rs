//! The stored form of a secret: its SHA-256, written as 64 lowercase hex
//! digits in the registry and decoded once, when the registry is read.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The SHA-256 of a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `secret`.
    pub fn of(secret: &str) -> KeyHash {
        KeyHash(crate::key_format::hash(secret))
    }

    /// Whether `self` and `other` are the same hash, compared in constant
    /// time: how long it takes says nothing of where they differ.
    pub fn same_as(&self, other: &KeyHash) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let lowercase_hex =
            text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut hash = [0u8; 32];
        if !lowercase_hex || hex::decode_to_slice(&text, &mut hash).is_err() {
            return Err(serde::de::Error::custom(
                "a hash must be 64 lowercase hex digits (a SHA-256)",
            ));
        }
        Ok(KeyHash(hash))
    }
}
