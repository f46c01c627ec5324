//! A registry loaded in memory, with its hash index and its identities by
//! IAM id: what `keyhost serve` checks against.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::Result;

use super::{Found, Identity, KeyIndex, KeyRecord, Lookup, Registry};

/// A loaded registry, indexed for checks.
pub struct LoadedRegistry {
    /// The registry itself.
    pub registry: Registry,
    index: KeyIndex,
    identities: HashMap<String, usize>,
}

impl LoadedRegistry {
    /// Indexes `registry`.
    pub fn new(registry: Registry) -> LoadedRegistry {
        let index = KeyIndex::build(&registry);
        let identities = registry
            .identities
            .iter()
            .enumerate()
            .map(|(position, identity)| (identity.iam_id.to_string(), position))
            .collect();
        LoadedRegistry {
            registry,
            index,
            identities,
        }
    }

    fn identity(&self, key: &KeyRecord) -> Option<&Identity> {
        let position = *self.identities.get(key.owner.as_str())?;
        self.registry.identities.get(position)
    }
}

impl Lookup for LoadedRegistry {
    fn prefix(&self) -> &str {
        &self.registry.prefix
    }

    fn revision(&self) -> u64 {
        self.registry.revision
    }

    fn policy_config(&self) -> Vec<(String, String)> {
        self.registry.policy.config_pairs()
    }

    fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
        Ok(self.index.find(hash).map(|matched| {
            let key = &self.registry.keys[matched.key];
            Found {
                position: matched.key,
                key: Cow::Borrowed(key),
                identity: self.identity(key).map(Cow::Borrowed),
                retired_until: matched.retired_until,
            }
        }))
    }
}
