//! Which lookup a one-shot check reads. The `Lookup` trait itself is the
//! core crate's, shared with the gate.

use std::path::Path;

use anyhow::Result;

use super::{CompactRegistry, LoadedRegistry, RegistryFile};

pub use keyhost_core::lookup::{Found, Lent, Lookup};

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
