//! What the registry keeps about identities and keys: never a secret, only
//! its SHA-256. The host reads and writes these in TOML; the snapshot
//! carries them to every other reader.

use serde::{Deserialize, Serialize};

use crate::iam::{IamId, IdentityKind, KeyKind};
use crate::key_hash::KeyHash;
use crate::rate_limit::RateLimit;
use crate::time::{Timestamp, toml_form};

/// The scopes that managing keys takes: reading them, and changing them.
/// Every user holds both over their own keys and their service IDs' keys; a
/// key carries them unless its own scopes leave them out.
pub const MANAGEMENT_SCOPES: [&str; 2] = ["keys:read", "keys:write"];
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

/// Every current and retired secret hash of `keys`, with the key's position
/// and, for a retired one, when it stops working: what every index of a
/// registry is built from.
pub fn secret_hashes(
    keys: &[KeyRecord],
) -> impl Iterator<Item = ([u8; 32], usize, Option<Timestamp>)> + '_ {
    keys.iter().enumerate().flat_map(|(position, key)| {
        let current = std::iter::once((key.hash.0, position, None));
        let retired = key
            .retired
            .iter()
            .map(move |r| (r.hash.0, position, Some(r.valid_until)));
        current.chain(retired)
    })
}
