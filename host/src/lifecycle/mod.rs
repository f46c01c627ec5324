//! The rules of an API key's life, as IBM Cloud IAM sets them. The CLI and
//! the HTTP management API both call these functions, so every caller meets
//! the same rules.
//!
//! - Only a key's owner creates, changes or deletes it; a service ID's keys
//!   belong to the user who owns the service ID.
//! - A locked key cannot be changed, disabled or deleted until unlocked.
//! - A user has at most one classic-infrastructure key at a time.
//! - An identity holds at most `max_keys_per_identity` keys.
//! - A key's scopes can only narrow its identity's.

use std::time::Duration;

use crate::fields::{self, BadField};
use crate::iam::{IamId, IdentityKind, KeyKind};
use crate::key_format::{self, Secret};
use crate::net::normalize_cidrs;
use crate::ratelimit::RateLimit;
use crate::registry::{
    CompactRegistry, Identity, KeyHash, KeyRecord, LeakAction, Lifetime, Registry, RetiredSecret,
    Rules, Unreadable,
};
use crate::time::Timestamp;

/// Why an operation did not happen. Nothing was written. The messages say
/// what is wrong in the domain's words; the CLI and the HTTP API each map
/// the kind to their own exit codes and statuses.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A rule refused it (ownership, a lock, a cap).
    #[error("{0}")]
    Refused(String),
    /// No key or identity has this id.
    #[error("unknown {what} {id}")]
    Unknown {
        /// `key id` or `identity`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A value is not acceptable (a field, a kind for this identity).
    #[error("{0}")]
    Invalid(String),
    /// The record is not the version the change asked for (`If-Match`).
    #[error("{}", stale_message(what, id, current.as_ref()))]
    Stale {
        /// `key` or `identity`.
        what: &'static str,
        /// Its id.
        id: String,
        /// Its tag now; none when it no longer exists.
        current: Option<EntityTag>,
    },
    /// The registry requires `If-Match` on every change through the API,
    /// and this one had none.
    #[error(
        "this registry takes a change to key {0} only with If-Match: read the key and send its entity_tag (or *). Nothing was written"
    )]
    PreconditionRequired(String),
    /// The registry in force cannot be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}

fn stale_message(what: &str, id: &str, current: Option<&EntityTag>) -> String {
    match current {
        Some(tag) => format!(
            "{what} {id} is not the version the change was asked for: its entity tag is now {tag}; read it again and change that version. Nothing was written"
        ),
        None => {
            format!("{what} {id} does not exist, so no version of it matches. Nothing was written")
        }
    }
}

impl From<BadField> for LifecycleError {
    fn from(bad: BadField) -> LifecycleError {
        LifecycleError::Invalid(bad.to_string())
    }
}

/// What the lifecycle functions return.
pub type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// Leaves the function with [`LifecycleError::Invalid`].
macro_rules! invalid {
    ($($message:tt)*) => {
        return Err(LifecycleError::Invalid(format!($($message)*)))
    };
}

/// A [`LifecycleError::Unknown`].
pub fn unknown(what: &'static str, id: impl ToString) -> LifecycleError {
    LifecycleError::Unknown {
        what,
        id: id.to_string(),
    }
}

mod entity_tag;
mod identity;

pub use entity_tag::{EntityTag, Precondition, on_identity, on_key};
pub use identity::{NewIdentity, add_identity, remove_identity, set_identity_scopes};

fn refuse<T>(message: impl Into<String>) -> Result<T> {
    Err(LifecycleError::Refused(message.into()))
}

/// A key to create.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    /// The identity the key is for; the actor's own when `None`.
    pub for_identity: Option<IamId>,
    /// The key's name.
    pub name: String,
    /// Its kind; the identity's usual kind when unset.
    pub kind: Option<KeyKind>,
    /// The service a service-specific key is bound to.
    pub service: Option<String>,
    /// Scopes that narrow the identity's; empty for all of them.
    pub scopes: Vec<String>,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// CIDRs it may be used from; empty for anywhere.
    pub allowed_ips: Vec<String>,
    /// A description.
    pub description: String,
    /// Create it locked.
    pub lock: bool,
    /// `COUNT/PERIOD`, enforced by `keyhost serve`.
    pub rate_limit: Option<String>,
}

/// Creates a key as `actor`; returns the record and the secret, which is
/// shown once and never stored.
pub fn create_key(
    registry: &mut Registry,
    actor: &IamId,
    new: NewKey,
    now: Timestamp,
) -> Result<(KeyRecord, Secret)> {
    add_key(registry, actor, new, now, |prefix, kind| {
        let secret = key_format::generate(prefix, kind);
        (KeyHash::of(secret.expose()), secret)
    })
}

/// Adds a key whose secret was made elsewhere and is known here by its
/// SHA-256 alone (`keyhost import`), under the rules [`create_key`] meets.
/// A hash the registry already holds, for a key or a rotated-out secret,
/// is refused: one secret names one key.
pub fn import_key(
    registry: &mut Registry,
    actor: &IamId,
    new: NewKey,
    hash: KeyHash,
    enabled: bool,
    now: Timestamp,
) -> Result<KeyRecord> {
    // The rules every new key meets come first, so that only someone who
    // may add this key learns that its secret is already taken.
    let (mut record, ()) = add_key(registry, actor, new, now, |_, _| (hash, ()))?;
    let (added, others) = registry.keys.split_last_mut().expect("the key just added");
    let taken = others.iter().find(|key| {
        key.hash.same_as(&hash) || key.retired.iter().any(|old| old.hash.same_as(&hash))
    });
    if let Some(key) = taken {
        let message = format!(
            "this secret is already {}'s (key {}): one secret names one key",
            key.owner, key.id
        );
        registry.keys.pop();
        return Err(LifecycleError::Invalid(message));
    }
    if !enabled {
        record.disabled = true;
        added.disabled = true;
    }
    Ok(record)
}

/// The rules every new key meets, then the key, added with the hash
/// `secret` gives for its kind (and whatever else `secret` makes).
fn add_key<T>(
    registry: &mut Registry,
    actor: &IamId,
    new: NewKey,
    now: Timestamp,
    secret: impl FnOnce(&str, KeyKind) -> (KeyHash, T),
) -> Result<(KeyRecord, T)> {
    require_user(registry, actor)?;
    registry
        .rules
        .check_creator(actor)
        .map_err(LifecycleError::Refused)?;
    let target = new.for_identity.clone().unwrap_or_else(|| actor.clone());
    let identity = registry
        .identity(&target)
        .ok_or_else(|| unknown("identity", &target))?;
    require_manager(identity, actor, "create keys for")?;
    let kind = new
        .kind
        .unwrap_or_else(|| KeyKind::default_for(identity.kind()));
    if !kind.fits(identity.kind()) {
        invalid!(
            "a {kind} key cannot belong to a {} ({target}); its kind must be {} or service-specific",
            identity.kind().as_str(),
            KeyKind::default_for(identity.kind())
        );
    }
    let service = match (kind, new.service) {
        (KeyKind::ServiceSpecific, Some(service)) => Some(fields::service(&service)?),
        (KeyKind::ServiceSpecific, None) => invalid!("a service-specific key needs a service"),
        (_, Some(_)) => {
            invalid!("only a service-specific key is bound to a service; this is a {kind} key")
        }
        (_, None) => None,
    };
    let scopes = narrowed_scopes(identity, new.scopes)?;
    let count = registry
        .keys
        .iter()
        .filter(|key| key.owner == target)
        .count();
    if count >= registry.max_keys_per_identity as usize {
        return refuse(format!(
            "{target} already has {count} keys, the most this registry allows (max_keys_per_identity = {})",
            registry.max_keys_per_identity
        ));
    }
    if kind == KeyKind::ClassicInfrastructure
        && let Some(existing) = registry
            .keys
            .iter()
            .find(|key| key.owner == target && key.kind == KeyKind::ClassicInfrastructure)
    {
        return refuse(format!(
            "{target} already has a classic-infrastructure key ({}); a user may hold only one at a time",
            existing.id
        ));
    }
    let expires_at = check_expiry(new.expires_at, now)?;
    registry
        .rules
        .check_expiry(expires_at, now)
        .map_err(LifecycleError::Refused)?;
    let allowed_ips = registry
        .rules
        .narrow(allow_list(&new.allowed_ips)?)
        .map_err(LifecycleError::Refused)?;
    let (hash, made) = secret(&registry.prefix, kind);
    let record = KeyRecord {
        id: new_key_id(),
        name: fields::name(&new.name)?,
        kind,
        owner: target,
        service,
        description: fields::description(&new.description)?,
        scopes,
        allowed_ips,
        hash,
        created_at: now,
        updated_at: now,
        expires_at,
        locked: new.lock,
        disabled: false,
        leaked: false,
        rate_limit: check_rate_limit(new.rate_limit)?,
        retired: Vec::new(),
    };
    registry.keys.push(record.clone());
    Ok((record, made))
}

/// The changes `update` may make; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KeyChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Timestamp>>,
    /// New allowed CIDRs; empty for anywhere.
    pub allowed_ips: Option<Vec<String>>,
    /// `Some(None)` removes the rate limit.
    pub rate_limit: Option<Option<String>>,
}

/// A change of a key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// Protect against change and deletion.
    Lock,
    /// Lift the protection.
    Unlock,
    /// Stop the key authenticating.
    Disable,
    /// Let it authenticate again.
    Enable,
}

impl StateChange {
    fn verb(self) -> &'static str {
        match self {
            StateChange::Lock => "lock",
            StateChange::Unlock => "unlock",
            StateChange::Disable => "disable",
            StateChange::Enable => "enable",
        }
    }
}

/// The key `id`, if `actor` may change it, for an operation named `verb`.
fn owned_key<'r>(
    registry: &'r mut Registry,
    id: &str,
    actor: &IamId,
    verb: &str,
) -> Result<&'r mut KeyRecord> {
    require_user(registry, actor)?;
    let key = registry.key(id).ok_or_else(|| unknown("key id", id))?;
    let identity = registry.identity(&key.owner).ok_or_else(|| {
        LifecycleError::Invalid(format!(
            "key {id} belongs to {}, which no longer exists",
            key.owner
        ))
    })?;
    require_manager(identity, actor, verb)?;
    Ok(registry.key_mut(id).expect("found above"))
}

fn refuse_if_locked(key: &KeyRecord, verb: &str) -> Result<()> {
    if key.locked {
        return refuse(format!(
            "key {} is locked: unlock it before you {verb} it",
            key.id
        ));
    }
    Ok(())
}

/// Locks, unlocks, disables or enables key `id`, as its owner `actor`.
pub fn change_state(
    registry: &mut Registry,
    id: &str,
    actor: &IamId,
    change: StateChange,
    now: Timestamp,
) -> Result<KeyRecord> {
    let key = owned_key(registry, id, actor, change.verb())?;
    match change {
        StateChange::Lock => key.locked = true,
        StateChange::Unlock => key.locked = false,
        StateChange::Disable => {
            refuse_if_locked(key, "disable")?;
            key.disabled = true;
        }
        StateChange::Enable => {
            if key.leaked {
                return refuse(format!(
                    "key {} is leaked: its secret is known to others: rotate it for a new secret, then enable it",
                    key.id
                ));
            }
            key.disabled = false;
        }
    }
    key.updated_at = now;
    Ok(key.clone())
}

/// Deletes key `id`, as its owner `actor`; a locked key is refused.
pub fn delete_key(registry: &mut Registry, id: &str, actor: &IamId) -> Result<KeyRecord> {
    let key = owned_key(registry, id, actor, "delete")?;
    refuse_if_locked(key, "delete")?;
    let removed = key.clone();
    registry.keys.retain(|key| key.id != id);
    Ok(removed)
}

/// Changes key `id`'s name, description, scopes, expiry, allowed IPs or rate limit, as its owner `actor`.
pub fn update_key(
    registry: &mut Registry,
    id: &str,
    actor: &IamId,
    changes: KeyChanges,
    now: Timestamp,
) -> Result<KeyRecord> {
    let owner = owned_key(registry, id, actor, "update")?.owner.clone();
    let identity = registry
        .identity(&owner)
        .expect("checked by owned_key")
        .clone();
    let rules = registry.rules.clone();
    let key = registry.key_mut(id).expect("checked by owned_key");
    refuse_if_locked(key, "update")?;
    if let Some(name) = changes.name {
        key.name = fields::name(&name)?;
    }
    if let Some(description) = changes.description {
        key.description = fields::description(&description)?;
    }
    if let Some(scopes) = changes.scopes {
        key.scopes = narrowed_scopes(&identity, scopes)?;
    }
    if let Some(expires_at) = changes.expires_at {
        let expires_at = check_expiry(expires_at, now)?;
        rules
            .check_expiry(expires_at, now)
            .map_err(LifecycleError::Refused)?;
        key.expires_at = expires_at;
        end_grace_by_expiry(key);
    }
    if let Some(allowed_ips) = changes.allowed_ips {
        key.allowed_ips = rules
            .narrow(allow_list(&allowed_ips)?)
            .map_err(LifecycleError::Refused)?;
    }
    if let Some(rate_limit) = changes.rate_limit {
        key.rate_limit = check_rate_limit(rate_limit)?;
    }
    key.updated_at = now;
    Ok(key.clone())
}

/// Gives the key a new secret. The secret it replaces keeps working for
/// `grace`, or stops at once when there is none; a rotation also ends every
/// earlier grace period, so at most one old secret works at a time.
///
/// Rotating a leaked key is how a leak is cleared, as in IBM Cloud, where
/// the answer to a leak is a new secret: the leaked secret dies at once (no
/// grace is allowed), and the key is no longer flagged. A key that the leak
/// disabled stays disabled until its owner enables it.
pub fn rotate_key(
    registry: &mut Registry,
    id: &str,
    actor: &IamId,
    grace: Option<Duration>,
    now: Timestamp,
) -> Result<(KeyRecord, Secret)> {
    let prefix = registry.prefix.clone();
    let key = owned_key(registry, id, actor, "rotate")?;
    refuse_if_locked(key, "rotate")?;
    let grace = grace.filter(|grace| !grace.is_zero());
    if grace.is_some_and(|grace| now.checked_plus(grace).is_none()) {
        invalid!(
            "grace: it would end after {}, the latest time keyhost can write",
            Timestamp::LATEST
        );
    }
    if key.leaked && grace.is_some() {
        return refuse(format!(
            "key {} is leaked: its secret gets no grace period, it stops working when the key is rotated",
            key.id
        ));
    }
    let secret = key_format::generate(&prefix, key.kind);
    let old_hash = std::mem::replace(&mut key.hash, KeyHash::of(secret.expose()));
    key.retired.clear();
    if let Some(grace) = grace {
        key.retired.push(RetiredSecret {
            hash: old_hash,
            valid_until: now.plus(grace),
        });
    }
    end_grace_by_expiry(key);
    key.leaked = false;
    key.updated_at = now;
    Ok((key.clone(), secret))
}

/// A rotated-out secret works no longer than its key: its grace ends at the
/// key's expiry when that comes first. The key keeps its expiry through a
/// rotation, so a rotated trial key stays a trial key.
fn end_grace_by_expiry(key: &mut KeyRecord) {
    if let Some(expires_at) = key.expires_at {
        for retired in &mut key.retired {
            retired.valid_until = retired.valid_until.min(expires_at);
        }
    }
}

/// Ends the grace period of a rotated-out secret now: only the current
/// secret works afterwards.
pub fn end_grace(
    registry: &mut Registry,
    id: &str,
    actor: &IamId,
    now: Timestamp,
) -> Result<KeyRecord> {
    let key = owned_key(registry, id, actor, "end the grace period of")?;
    refuse_if_locked(key, "end the grace period of")?;
    key.retired.clear();
    key.updated_at = now;
    Ok(key.clone())
}

/// A rotated-out secret of key `id`, found exposed, stops now; the key's
/// current secret is not the one that was seen, so the key is not marked.
/// Whether that secret was still in its grace period.
pub fn end_leaked_retired_secret(
    registry: &mut Registry,
    id: &str,
    hash: &KeyHash,
    now: Timestamp,
) -> Result<bool> {
    let key = registry.key_mut(id).ok_or_else(|| unknown("key id", id))?;
    let before = key.retired.len();
    // One past its grace already works no more: it is left as it is.
    key.retired
        .retain(|old| !(old.hash.same_as(hash) && old.valid_until > now));
    let ended = key.retired.len() != before;
    if ended {
        key.updated_at = now;
    }
    Ok(ended)
}

/// The owner of key `id` reports it leaked by hand: it is marked as
/// `scan --mark-leaked` would mark it. A locked key can be reported too: a
/// lock guards against mistakes, not against the secret being out.
pub fn report_leak(
    registry: &mut Registry,
    id: &str,
    actor: &IamId,
    now: Timestamp,
) -> Result<LeakAction> {
    owned_key(registry, id, actor, "report as leaked")?;
    mark_leaked(registry, id, now)
}

/// A change of the registry's `[rules]`.
pub enum RuleChange {
    /// Who may create keys; anyone with `None`.
    CreateKeys(Option<Vec<IamId>>),
    /// The longest a key may live; no bound with `None`.
    MaxKeyLifetime(Option<Lifetime>),
    /// Whether every key must expire.
    RequireExpiry(bool),
    /// The addresses every key is used from; anywhere when empty.
    AllowedIps(Vec<String>),
    /// Whether API changes must send `If-Match`.
    RequireIfMatch(bool),
}

/// Changes a rule (the registry's owner's: the CLI). Returns the ids of
/// the keys it gave addresses to. Users named by `create_keys` must exist;
/// `allowed_ips` is refused while a key's own addresses reach outside it
/// (naming such keys), and gives itself to every key with none.
pub fn set_rule(
    registry: &mut Registry,
    change: RuleChange,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut given = Vec::new();
    match change {
        RuleChange::CreateKeys(users) => {
            for user in users.iter().flatten() {
                require_user(registry, user)?;
            }
            registry.rules.create_keys = users;
        }
        RuleChange::MaxKeyLifetime(max) => registry.rules.max_key_lifetime = max,
        RuleChange::RequireExpiry(on) => registry.rules.require_expiry = on,
        RuleChange::RequireIfMatch(on) => registry.rules.require_if_match = on,
        RuleChange::AllowedIps(entries) => {
            fields::bounded_list("allowed IPs", entries.len())?;
            let entries = normalize_cidrs(&entries)
                .map_err(|e| LifecycleError::Invalid(format!("allowed_ips: {e}")))?;
            let rules = Rules {
                allowed_ips: entries.clone(),
                ..Rules::default()
            };
            let outside: Vec<&str> = registry
                .keys
                .iter()
                .filter(|key| {
                    !key.allowed_ips.is_empty() && rules.narrow(key.allowed_ips.clone()).is_err()
                })
                .map(|key| key.id.as_str())
                .collect();
            if !outside.is_empty() {
                let shown: Vec<&str> = outside.iter().take(10).copied().collect();
                return refuse(format!(
                    "{} keys may be used from addresses outside {}, so the rule would not hold for them: narrow their addresses first ({}{})",
                    outside.len(),
                    entries.join(", "),
                    shown.join(", "),
                    if outside.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    }
                ));
            }
            if !entries.is_empty() {
                for key in registry
                    .keys
                    .iter_mut()
                    .filter(|key| key.allowed_ips.is_empty())
                {
                    key.allowed_ips = entries.clone();
                    key.updated_at = now;
                    given.push(key.id.clone());
                }
            }
            registry.rules.allowed_ips = entries;
        }
    }
    Ok(given)
}

/// Marks a key as leaked and applies the registry's `action_when_leaked`.
/// Returns the action taken.
pub fn mark_leaked(registry: &mut Registry, id: &str, now: Timestamp) -> Result<LeakAction> {
    let action = registry.action_when_leaked;
    let key = registry.key_mut(id).ok_or_else(|| unknown("key id", id))?;
    // Marked before and the action already taken: a second report (a
    // replayed alert, a second scan) changes nothing, its tag included.
    if key.leaked && (action == LeakAction::None || (action == LeakAction::Disable && key.disabled))
    {
        return Ok(action);
    }
    key.leaked = true;
    key.disabled |= action == LeakAction::Disable;
    key.updated_at = now;
    if action == LeakAction::Delete {
        registry.keys.retain(|key| key.id != id);
    }
    Ok(action)
}

fn require_user(registry: &Registry, actor: &IamId) -> Result<()> {
    require_user_known(actor, registry.identity(actor).is_some())
}

/// That `actor` is a user, and `known` to the registry.
fn require_user_known(actor: &IamId, known: bool) -> Result<()> {
    if actor.kind() != IdentityKind::User {
        return refuse(format!(
            "{actor} cannot manage keys: only users act on keys"
        ));
    }
    if !known {
        return Err(unknown("identity", actor));
    }
    Ok(())
}

fn require_manager(identity: &Identity, actor: &IamId, verb: &str) -> Result<()> {
    let manager = identity.manager();
    if manager != actor {
        let whose = match identity.kind() {
            IdentityKind::User => format!("{manager}"),
            IdentityKind::ServiceId => format!("{manager}, the owner of {}", identity.iam_id),
        };
        return refuse(format!(
            "only the owner of a key may {verb} it: keys of {} belong to {whose}, not {actor}",
            identity.iam_id
        ));
    }
    Ok(())
}

/// The key's scopes, which must all be the identity's own.
fn narrowed_scopes(identity: &Identity, scopes: Vec<String>) -> Result<Vec<String>> {
    let scopes = fields::scopes(scopes)?;
    if let Some(extra) = scopes
        .iter()
        .find(|scope| !identity.rights().any(|right| right == scope.as_str()))
    {
        return refuse(format!(
            "a key cannot gain a scope its identity lacks: {} has no scope {extra:?} (it has: {})",
            identity.iam_id,
            identity.rights().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(scopes)
}

/// An IP allow-list in canonical form, at most `fields::MAX_LIST_ENTRIES` long.
fn allow_list(entries: &[String]) -> Result<Vec<String>> {
    fields::bounded_list("allowed IPs", entries.len())?;
    normalize_cidrs(entries).map_err(|e| LifecycleError::Invalid(format!("allowed IPs: {e}")))
}

fn check_expiry(expires_at: Option<Timestamp>, now: Timestamp) -> Result<Option<Timestamp>> {
    match expires_at {
        Some(when) if when <= now => invalid!("the expiry {when} is not in the future"),
        other => Ok(other),
    }
}

fn check_rate_limit(limit: Option<String>) -> Result<Option<RateLimit>> {
    limit
        .map(|text| {
            text.parse()
                .map_err(|e| LifecycleError::Invalid(format!("rate limit: {e}")))
        })
        .transpose()
}

/// The key `id` in the registry in force, if `actor` may see it: its
/// owner, as for changes.
pub fn readable_key(registry: &CompactRegistry, id: &str, actor: &IamId) -> Result<KeyRecord> {
    require_user_known(actor, registry.identity(actor)?.is_some())?;
    let found = registry.key(id)?.ok_or_else(|| unknown("key id", id))?;
    let identity = found
        .identity
        .ok_or_else(|| unknown("identity", &found.key.owner))?;
    require_manager(&identity, actor, "see")?;
    Ok(found.key.into_owned())
}

fn new_key_id() -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    format!("kid_{}", hex::encode(bytes))
}
