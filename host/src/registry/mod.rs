//! The key registry: identities, keys (hashes only) and policy settings,
//! kept in one TOML file.

mod changes;
mod compact;
mod decoded;
mod file;
mod index;
mod loaded;
mod lookup;
mod rules;
mod split;
mod validate;

use serde::{Deserialize, Serialize};

use crate::iam::IamId;

pub use keyhost_core::key_hash::KeyHash;
pub use keyhost_core::record::{Identity, KeyRecord, MANAGEMENT_SCOPES, RetiredSecret};

pub use changes::DEFAULT_CHANGES_FROM_KEYS;
pub use compact::{CompactRegistry, SnapshotBytes, Unreadable, encode_snapshot, snapshot_bytes};
pub use file::{Committed, Missing, OlderCopy, RegistryFile, TooLate, Touches, Written, line_of};
pub use index::{KeyIndex, Matched};
pub use loaded::LoadedRegistry;
pub use lookup::{Found, Lent, Lookup, open_for_check};
pub use rules::{Lifetime, Rules};

/// The registry format this build writes. Version 2 may have a changes
/// file beside it (registry/changes.rs); builds that read only version 1
/// would not see one, and so refuse the registry rather than answer
/// without its changes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest registry format this build reads: a version 1 registry is
/// read as it is, and its first write makes it version 2, written whole,
/// before any of its key writes goes to a changes file.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Keys per identity unless the registry sets another cap, as in IBM Cloud.
pub const DEFAULT_MAX_KEYS_PER_IDENTITY: u32 = 20;
/// The prefix of new registries' keys.
pub const DEFAULT_PREFIX: &str = "kh";

/// The whole registry file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The file format version.
    pub version: u32,
    /// Bumped by every change, for optimistic concurrency.
    #[serde(default)]
    pub revision: u64,
    /// The first part of every secret of this registry.
    pub prefix: String,
    /// What marking a key as leaked does.
    #[serde(default)]
    pub action_when_leaked: LeakAction,
    /// The most keys one identity may hold.
    #[serde(default = "default_cap")]
    pub max_keys_per_identity: u32,
    /// From how many keys on key writes go to the changes file rather than
    /// rewrite this file (registry/changes.rs).
    #[serde(
        default = "default_changes_from",
        skip_serializing_if = "is_default_changes_from"
    )]
    pub changes_from_keys: u32,
    /// Rules over every identity's keys (`[rules]`).
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// Settings passed to the policy's `configure`.
    #[serde(default, skip_serializing_if = "PolicySection::is_empty")]
    pub policy: PolicySection,
    #[serde(default, rename = "identity")]
    /// The identities (`[[identity]]`).
    pub identities: Vec<Identity>,
    #[serde(default, rename = "key")]
    /// The keys (`[[key]]`).
    pub keys: Vec<KeyRecord>,
}

fn default_cap() -> u32 {
    DEFAULT_MAX_KEYS_PER_IDENTITY
}

fn default_changes_from() -> u32 {
    changes::DEFAULT_CHANGES_FROM_KEYS
}

fn is_default_changes_from(keys: &u32) -> bool {
    *keys == changes::DEFAULT_CHANGES_FROM_KEYS
}

/// What happens to a key that is marked as leaked (IBM Cloud's choices).
/// Its names are `none`, `disable` and `delete`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakAction {
    /// The key is only flagged; the default policy then refuses it.
    #[default]
    None,
    /// The key is flagged and disabled.
    Disable,
    /// The key is deleted.
    Delete,
}

impl LeakAction {
    /// The actions' names.
    pub const NAMES: [&'static str; 3] = ["none", "disable", "delete"];
}

impl std::str::FromStr for LeakAction {
    type Err = String;

    fn from_str(name: &str) -> Result<LeakAction, String> {
        match name {
            "none" => Ok(LeakAction::None),
            "disable" => Ok(LeakAction::Disable),
            "delete" => Ok(LeakAction::Delete),
            other => Err(format!(
                "{other:?} is not an action when leaked; the actions are none, disable and delete"
            )),
        }
    }
}

/// The `[policy]` table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// `[policy.config]`: free-form settings for the policy.
    #[serde(default)]
    pub config: toml::Table,
}

impl PolicySection {
    fn is_empty(&self) -> bool {
        self.config.is_empty()
    }

    /// The settings as name/value pairs; values that are not strings are
    /// given in TOML syntax.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect()
    }
}

impl Registry {
    /// An empty registry whose keys start with `prefix`.
    pub fn new(prefix: &str) -> Registry {
        Registry {
            version: FORMAT_VERSION,
            revision: 0,
            prefix: prefix.to_string(),
            action_when_leaked: LeakAction::default(),
            max_keys_per_identity: DEFAULT_MAX_KEYS_PER_IDENTITY,
            changes_from_keys: changes::DEFAULT_CHANGES_FROM_KEYS,
            rules: Rules::default(),
            policy: PolicySection::default(),
            identities: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// The identity `iam_id`.
    pub fn identity(&self, iam_id: &IamId) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|identity| &identity.iam_id == iam_id)
    }

    /// The key `id`.
    pub fn key(&self, id: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// The key `id`, to change.
    pub fn key_mut(&mut self, id: &str) -> Option<&mut KeyRecord> {
        self.keys.iter_mut().find(|key| key.id == id)
    }
}
