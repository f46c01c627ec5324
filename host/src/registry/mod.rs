//! The key registry: identities, keys (hashes only) and policy settings,
//! kept in one TOML file.

mod compact;
mod file;
mod index;
mod key_hash;
mod loaded;
mod lookup;
mod validate;

use serde::{Deserialize, Serialize};

use crate::iam::{IamId, IdentityKind, KeyKind};
use crate::ratelimit::RateLimit;
use crate::time::{Timestamp, toml_form};

pub use compact::CompactRegistry;
pub use file::{Missing, RegistryFile, TooLate, line_of};
pub use index::{KeyIndex, Matched};
pub use key_hash::KeyHash;
pub use loaded::LoadedRegistry;
pub use lookup::{Found, Lookup, open_for_check};

/// The registry format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Keys per identity unless the registry sets another cap, as in IBM Cloud.
pub const DEFAULT_MAX_KEYS_PER_IDENTITY: u32 = 20;
/// The scopes that managing keys takes: reading them, and changing them.
/// Every user holds both over their own keys and their service IDs' keys; a
/// key carries them unless its own scopes leave them out.
pub const MANAGEMENT_SCOPES: [&str; 2] = ["keys:read", "keys:write"];
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

/// A user or a service ID.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The IAM id.
    pub iam_id: IamId,
    /// For a service ID, the user who owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<IamId>,
    /// The identity's access rights.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When the identity was added.
    #[serde(with = "toml_form")]
    pub created_at: Timestamp,
}

impl Identity {
    /// A user or a service ID.
    pub fn kind(&self) -> IdentityKind {
        self.iam_id.kind()
    }

    /// The user who may manage this identity's keys: the user itself, or the
    /// owner of a service ID.
    pub fn manager(&self) -> &IamId {
        self.owner.as_ref().unwrap_or(&self.iam_id)
    }

    /// The identity's scopes, and for a user the management scopes that
    /// every user holds over their own keys ([`MANAGEMENT_SCOPES`]).
    pub fn rights(&self) -> impl Iterator<Item = &str> {
        let implied = match self.kind() {
            IdentityKind::User => MANAGEMENT_SCOPES.as_slice(),
            IdentityKind::ServiceId => &[],
        };
        self.scopes.iter().map(String::as_str).chain(
            implied
                .iter()
                .copied()
                .filter(|scope| !self.scopes.iter().any(|own| own == scope)),
        )
    }
}

/// One API key. The secret is never stored; only its SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The key's id (`kid_...`).
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Its kind.
    pub kind: KeyKind,
    /// The identity the key belongs to.
    pub owner: IamId,
    /// The one service a service-specific key is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    /// A description.
    pub description: String,
    /// Narrows the identity's scopes; empty means all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// CIDRs the key may be used from; empty means anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// The SHA-256 of the secret, in hex.
    pub hash: KeyHash,
    /// When the key was created.
    #[serde(with = "toml_form")]
    pub created_at: Timestamp,
    /// When the key last changed.
    #[serde(with = "toml_form")]
    pub updated_at: Timestamp,
    /// When the key stops working; never when unset.
    #[serde(
        default,
        with = "toml_form::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<Timestamp>,
    /// Protected against change and deletion; still authenticates.
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    /// Disabled: it does not authenticate.
    pub disabled: bool,
    #[serde(default)]
    /// Found exposed.
    pub leaked: bool,
    /// `COUNT/PERIOD` (for example `100/min`), enforced by `keyhost serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Earlier secrets that still work until their grace period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredSecret>,
}

/// A secret replaced by a rotation, valid until `valid_until`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredSecret {
    /// The SHA-256 of the earlier secret.
    pub hash: KeyHash,
    /// When it stops working.
    #[serde(with = "toml_form")]
    pub valid_until: Timestamp,
}

impl KeyRecord {
    /// Whether the key is past its expiry at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|expiry| now >= expiry)
    }

    /// The key's state as people read it; the first that applies wins.
    pub fn state(&self, now: Timestamp) -> &'static str {
        if self.leaked {
            "leaked"
        } else if self.disabled {
            "disabled"
        } else if self.is_expired(now) {
            "expired"
        } else if self.locked {
            "locked"
        } else {
            "active"
        }
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
