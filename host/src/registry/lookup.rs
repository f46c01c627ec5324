//! The one way a check reads a registry: by the SHA-256 of a presented
//! secret. The loaded registry (`loaded.rs`) and the on-disk index
//! (`compact.rs`) both answer it, so `check::check` is written once.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Result;

use super::{CompactRegistry, Identity, KeyRecord, LoadedRegistry, RegistryFile};
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
}

/// What a one-shot check reads: the registry's compact index in
/// `cache_root`, rebuilt first when it is missing or stale, or, when no
/// index can be kept (no cache folder, or one that cannot be written), the
/// registry as loaded.
pub fn open_for_check(file: &RegistryFile, cache_root: Option<&Path>) -> Result<Box<dyn Lookup>> {
    match CompactRegistry::open_or_build(file, cache_root)? {
        Ok(index) => Ok(Box::new(index)),
        Err(loaded) => Ok(Box::new(LoadedRegistry::new(loaded))),
    }
}
