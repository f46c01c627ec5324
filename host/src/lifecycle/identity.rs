//! The rules of an identity's life: adding users and service IDs, changing
//! their scopes, and removing them with their keys.

use super::{LifecycleError, Result, refuse, unknown};
use crate::fields;
use crate::iam::{IamId, IdentityKind};
use crate::registry::{Identity, Registry};
use crate::time::Timestamp;

/// An identity to add.
#[derive(Clone, Debug)]
pub struct NewIdentity {
    /// The new identity's IAM id.
    pub iam_id: IamId,
    /// For a service ID, the user who owns it.
    pub owner: Option<IamId>,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// Adds an identity; a service ID needs an owner who is a user.
pub fn add_identity(registry: &mut Registry, new: NewIdentity, now: Timestamp) -> Result<Identity> {
    if registry.identity(&new.iam_id).is_some() {
        return refuse(format!("identity {} already exists", new.iam_id));
    }
    match (new.iam_id.kind(), &new.owner) {
        (IdentityKind::User, Some(_)) => {
            invalid!("a user cannot have an owner; only service IDs are owned")
        }
        (IdentityKind::ServiceId, None) => {
            invalid!(
                "service ID {} needs an owner, a user of this registry",
                new.iam_id
            )
        }
        (IdentityKind::ServiceId, Some(owner)) => {
            if owner.kind() != IdentityKind::User || registry.identity(owner).is_none() {
                invalid!("owner {owner} is not a user of this registry");
            }
        }
        (IdentityKind::User, None) => {}
    }
    let identity = Identity {
        iam_id: new.iam_id,
        owner: new.owner,
        scopes: fields::scopes(new.scopes)?,
        created_at: now,
    };
    registry.identities.push(identity.clone());
    Ok(identity)
}

/// Removes an identity and deletes its keys; returns the deleted key ids.
/// A user who still owns service IDs is refused: those go first.
pub fn remove_identity(registry: &mut Registry, iam_id: &IamId) -> Result<Vec<String>> {
    if registry.identity(iam_id).is_none() {
        return Err(unknown("identity", iam_id));
    }
    let owned: Vec<String> = registry
        .identities
        .iter()
        .filter(|identity| identity.owner.as_ref() == Some(iam_id))
        .map(|identity| identity.iam_id.to_string())
        .collect();
    if !owned.is_empty() {
        return refuse(format!(
            "{iam_id} still owns service IDs ({}); remove them first",
            owned.join(", ")
        ));
    }
    if let Some(key) = registry
        .keys
        .iter()
        .find(|k| &k.owner == iam_id && k.locked)
    {
        return refuse(format!(
            "key {} of {iam_id} is locked; unlock it first",
            key.id
        ));
    }
    let deleted = registry
        .keys
        .iter()
        .filter(|key| &key.owner == iam_id)
        .map(|key| key.id.clone())
        .collect();
    registry.keys.retain(|key| &key.owner != iam_id);
    registry
        .identities
        .retain(|identity| &identity.iam_id != iam_id);
    Ok(deleted)
}

/// Replaces the scopes of identity `iam_id`. Returns the identity, and the
/// keys that name scopes it no longer has: those scopes stop working at
/// once, since a key only ever narrows its identity's.
pub fn set_identity_scopes(
    registry: &mut Registry,
    iam_id: &IamId,
    scopes: Vec<String>,
) -> Result<(Identity, Vec<String>)> {
    let scopes = fields::scopes(scopes)?;
    let identity = registry
        .identities
        .iter_mut()
        .find(|identity| &identity.iam_id == iam_id)
        .ok_or_else(|| unknown("identity", iam_id))?;
    identity.scopes = scopes;
    let identity = identity.clone();
    let narrowed = registry
        .keys
        .iter()
        .filter(|key| &key.owner == iam_id)
        .filter(|key| {
            key.scopes
                .iter()
                .any(|scope| !identity.rights().any(|right| right == scope))
        })
        .map(|key| key.id.clone())
        .collect();
    Ok((identity, narrowed))
}
