//! The one way a check reads a registry: by the SHA-256 of a presented
//! secret. The host's loaded registry and every snapshot reader (the host's
//! file, the gate's data component) answer it, so the check is written once.

use std::borrow::Cow;

use anyhow::Result;

use crate::record::{Identity, KeyRecord};
use crate::time::Timestamp;

/// A key found by the hash of a presented secret.
#[derive(Debug)]
pub struct Found<'a> {
    /// Where the key sits in its registry's `keys`.
    pub position: usize,
    /// The key's record.
    pub key: Cow<'a, KeyRecord>,
    /// The key's identity; none if it no longer exists.
    pub identity: Option<Cow<'a, Identity>>,
    /// Set when the secret is a rotated-out one, valid until then.
    pub retired_until: Option<Timestamp>,
}

/// A registry a check can read.
pub trait Lookup {
    /// The first part of every secret of this registry.
    fn prefix(&self) -> &str;
    /// The registry's revision.
    fn revision(&self) -> u64;
    /// `[policy.config]`, as name/value pairs.
    fn policy_config(&self) -> Vec<(String, String)>;
    /// The key whose current or retired secret hashes to `hash`, compared
    /// in constant time. An `Err` is a registry that cannot be read.
    fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>>;
    /// The key whose id is `id` (how an access token names its key), with
    /// its identity. An `Err` is a registry that cannot be read.
    fn find_by_id(&self, id: &str) -> Result<Option<Found<'_>>>;
}

impl Found<'_> {
    /// The same key, owning its record and identity.
    pub fn into_owned(self) -> Found<'static> {
        Found {
            position: self.position,
            key: Cow::Owned(self.key.into_owned()),
            identity: self
                .identity
                .map(|identity| Cow::Owned(identity.into_owned())),
            retired_until: self.retired_until,
        }
    }
}
