//! The one way a check reads a registry: by the SHA-256 of a presented
//! secret. The host's loaded registry and every snapshot reader (the host's
//! file, the gate's data component) answer it, so the check is written once.

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Result;

use crate::record::{Identity, KeyRecord};
use crate::time::Timestamp;

/// A key found by the hash of a presented secret.
#[derive(Debug)]
pub struct Found<'a> {
    /// Where the key sits in its registry's `keys`.
    pub position: usize,
    /// The key's record.
    pub key: Lent<'a, KeyRecord>,
    /// The key's identity; none if it no longer exists.
    pub identity: Option<Lent<'a, Identity>>,
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
            key: self.key.into_static(),
            identity: self.identity.map(Lent::into_static),
            retired_until: self.retired_until,
        }
    }
}

/// A record as a lookup gives it: lent by the registry that holds it,
/// decoded for this caller alone, or shared from records kept decoded
/// (which a caller keeps past the lookup without a copy).
#[derive(Debug)]
pub enum Lent<'a, T> {
    /// Held by the registry.
    Borrowed(&'a T),
    /// Decoded for this lookup.
    Owned(T),
    /// Kept decoded, shared.
    Shared(Arc<T>),
}

impl<T: Clone> Lent<'_, T> {
    /// The record itself, copied unless this lookup decoded it.
    pub fn into_owned(self) -> T {
        match self {
            Lent::Borrowed(record) => record.clone(),
            Lent::Owned(record) => record,
            Lent::Shared(record) => Arc::unwrap_or_clone(record),
        }
    }

    /// The same record, free of the registry it was lent from: a borrowed
    /// one is copied, a shared one is not.
    pub fn into_static(self) -> Lent<'static, T> {
        match self {
            Lent::Borrowed(record) => Lent::Owned(record.clone()),
            Lent::Owned(record) => Lent::Owned(record),
            Lent::Shared(record) => Lent::Shared(record),
        }
    }
}

impl<T> Deref for Lent<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Lent::Borrowed(record) => record,
            Lent::Owned(record) => record,
            Lent::Shared(record) => record,
        }
    }
}
