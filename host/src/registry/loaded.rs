//! A registry loaded in memory, with its hash index and its identities by
//! IAM id: what `keyhost serve` checks against.

use std::collections::HashMap;

use anyhow::Result;

use super::{Found, Identity, KeyIndex, KeyRecord, Lent, Lookup, Registry};

/// A loaded registry, indexed for checks.
pub struct LoadedRegistry {
    /// The registry itself.
    pub registry: Registry,
    index: KeyIndex,
    identities: HashMap<String, usize>,
    ids: HashMap<String, usize>,
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
        let ids = registry
            .keys
            .iter()
            .enumerate()
            .map(|(position, key)| (key.id.clone(), position))
            .collect();
        LoadedRegistry {
            registry,
            index,
            identities,
            ids,
        }
    }

    /// The identity `key` belongs to, if it still exists.
    pub fn identity_of(&self, key: &KeyRecord) -> Option<&Identity> {
        let position = *self.identities.get(key.owner.as_str())?;
        self.registry.identities.get(position)
    }

    /// The position and record of key `id`: how a token finds its key.
    pub fn key_by_id(&self, id: &str) -> Option<(usize, &KeyRecord)> {
        let position = *self.ids.get(id)?;
        Some((position, &self.registry.keys[position]))
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
                key: Lent::Borrowed(key),
                identity: self.identity_of(key).map(Lent::Borrowed),
                retired_until: matched.retired_until,
            }
        }))
    }

    fn find_by_id(&self, id: &str) -> Result<Option<Found<'_>>> {
        Ok(self.key_by_id(id).map(|(position, key)| Found {
            position,
            key: Lent::Borrowed(key),
            identity: self.identity_of(key).map(Lent::Borrowed),
            retired_until: None,
        }))
    }
}
