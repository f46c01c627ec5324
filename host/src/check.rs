//! The check pipeline, in this order: the secret's format and checksum, its
//! SHA-256, the lookup with a constant-time comparison, then the policy.

use serde::Serialize;

use crate::iam::{IdentityKind, KeyKind};
use crate::key_format;
use std::collections::HashMap;

use crate::policy::bindings::{self as wit, Decision, DenyCode};
use crate::policy::{PolicyFault, PolicySlot};
use crate::registry::{Identity, KeyIndex, KeyRecord, Registry};
use crate::time::Timestamp;

/// What the caller presents along with the key.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    pub service: Option<String>,
    pub scope: Option<String>,
    pub source_ip: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub now: Option<Timestamp>,
}

/// The key a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    /// Where the key sits in the checked registry's `keys`.
    #[serde(skip)]
    pub index: usize,
    pub key_id: String,
    pub owner: String,
    pub kind: KeyKind,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow {
        key: KeyRef,
        info: Vec<(String, String)>,
    },
    Deny {
        code: DenyCode,
        reason: String,
        key: Option<KeyRef>,
    },
}

impl Verdict {
    fn deny(code: DenyCode, reason: impl Into<String>, key: Option<KeyRef>) -> Verdict {
        Verdict::Deny {
            code,
            reason: reason.into(),
            key,
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Verdict::Allow { key, .. } => Some(key),
            Verdict::Deny { key, .. } => key.as_ref(),
        }
    }

    /// The stable code of a denial; `None` for an allow.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Verdict::Allow { .. } => None,
            Verdict::Deny { code, .. } => Some(code.as_str()),
        }
    }

    /// What the policy added to an allow; empty for a denial.
    pub fn info(&self) -> &[(String, String)] {
        match self {
            Verdict::Allow { info, .. } => info,
            Verdict::Deny { .. } => &[],
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Allow { .. } => None,
            Verdict::Deny { reason, .. } => Some(reason),
        }
    }
}

/// What decides on a key once it is found: a policy component, or, as the
/// benchmarks' baseline, the default rules compiled into the host.
pub trait Decider {
    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault>;
}

impl Decider for PolicySlot {
    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        with_wit_records(key, identity, request, now, |key, identity, request| {
            self.validate(key, identity, request)
        })
    }
}

/// A registry loaded for checking, with its hash index and an index of
/// identities by IAM id.
pub struct Checker {
    pub registry: Registry,
    index: KeyIndex,
    identities: HashMap<String, usize>,
}

impl Checker {
    pub fn new(registry: Registry) -> Checker {
        let index = KeyIndex::build(&registry);
        let identities = registry
            .identities
            .iter()
            .enumerate()
            .map(|(position, identity)| (identity.iam_id.to_string(), position))
            .collect();
        Checker {
            registry,
            index,
            identities,
        }
    }

    fn identity(&self, key: &KeyRecord) -> Option<&Identity> {
        let position = *self.identities.get(key.owner.as_str())?;
        self.registry.identities.get(position)
    }

    /// Checks `presented` for `request` through `policy`.
    pub fn check(
        &self,
        policy: &mut impl Decider,
        presented: &str,
        request: &CheckRequest,
    ) -> Verdict {
        let hash = match presented_hash(&self.registry.prefix, presented) {
            Ok(hash) => hash,
            Err(verdict) => return verdict,
        };
        let found = self.index.find(&hash).map(|found| {
            let key = &self.registry.keys[found.key];
            FoundKey {
                position: found.key,
                key,
                identity: self.identity(key),
                retired_until: found.retired_until,
            }
        });
        decide(found, policy, request)
    }
}

/// A key found by the hash of a presented secret.
pub struct FoundKey<'a> {
    /// Where the key sits in its registry's `keys`.
    pub position: usize,
    pub key: &'a KeyRecord,
    /// The key's identity; none if it no longer exists.
    pub identity: Option<&'a Identity>,
    /// Set when the secret is a rotated-out one, valid until then.
    pub retired_until: Option<Timestamp>,
}

/// The SHA-256 of a presented secret, or the verdict on a malformed one.
/// The format and checksum are checked first, so a typo costs no lookup.
pub fn presented_hash(prefix: &str, presented: &str) -> Result<[u8; 32], Verdict> {
    match key_format::parse(prefix, presented) {
        Ok(_) => Ok(key_format::hash(presented)),
        Err(malformed) => Err(Verdict::deny(
            DenyCode::Malformed,
            malformed.to_string(),
            None,
        )),
    }
}

/// The verdict on a looked-up secret: the registry's own refusals (unknown,
/// rotated out, orphaned), then the policy's decision.
pub fn decide(
    found: Option<FoundKey<'_>>,
    policy: &mut impl Decider,
    request: &CheckRequest,
) -> Verdict {
    let now = request.now.unwrap_or_else(Timestamp::now);
    let Some(found) = found else {
        return Verdict::deny(DenyCode::NotFound, "no key matches this secret", None);
    };
    let key = found.key;
    let key_ref = KeyRef {
        index: found.position,
        key_id: key.id.clone(),
        owner: key.owner.to_string(),
        kind: key.kind,
    };
    if found.retired_until.is_some_and(|until| now >= until) {
        return Verdict::deny(
            DenyCode::NotFound,
            "this secret was rotated out and its grace period is over",
            Some(key_ref),
        );
    }
    let Some(identity) = found.identity else {
        return Verdict::deny(
            DenyCode::NotFound,
            "the key's identity no longer exists",
            Some(key_ref),
        );
    };
    match policy.decide(key, identity, request, now) {
        // What a policy returns has been through the sanitiser already
        // (policy/answer.rs), and so have the reasons of a fault.
        Ok(Decision::Allow(info)) => Verdict::Allow { key: key_ref, info },
        Ok(Decision::Deny(deny)) => Verdict::deny(deny.code, deny.message, Some(key_ref)),
        Err(fault) => Verdict::deny(DenyCode::PolicyError, fault.to_string(), Some(key_ref)),
    }
}

/// Calls `call` with the contract's records of a key, its identity and a
/// request. They borrow from the registry: nothing is copied on the host
/// side but the slices of the string lists.
pub fn with_wit_records<R>(
    key: &KeyRecord,
    identity: &Identity,
    request: &CheckRequest,
    now: Timestamp,
    call: impl FnOnce(wit::KeyRecord<'_>, wit::Identity<'_>, wit::Request<'_>) -> R,
) -> R {
    fn strs(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }
    let (key_scopes, allowed_ips) = (strs(&key.scopes), strs(&key.allowed_ips));
    let identity_scopes: Vec<&str> = identity.rights().collect();
    let attributes: Vec<(&str, &str)> = request
        .attributes
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    call(
        wit::KeyRecord {
            id: &key.id,
            name: &key.name,
            kind: match key.kind {
                KeyKind::User => wit::KeyKind::User,
                KeyKind::ServiceId => wit::KeyKind::ServiceId,
                KeyKind::ClassicInfrastructure => wit::KeyKind::ClassicInfrastructure,
                KeyKind::ServiceSpecific => wit::KeyKind::ServiceSpecific,
            },
            owner: key.owner.as_str(),
            service: key.service.as_deref(),
            scopes: &key_scopes,
            allowed_ips: &allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        },
        wit::Identity {
            iam_id: identity.iam_id.as_str(),
            kind: match identity.kind() {
                IdentityKind::User => wit::IdentityKind::User,
                IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
            },
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &identity_scopes,
        },
        wit::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &attributes,
            now: now.0,
        },
    )
}
