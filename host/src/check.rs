//! The check pipeline, in one place and in this order: the secret's format
//! and checksum, its SHA-256, the lookup (constant-time, in any
//! [`Lookup`]), the registry's own refusals, then the policy.

use anyhow::Result;

use crate::key_format;
use crate::policy::PolicyFault;
use crate::registry::{Found, Identity, KeyRecord, LoadedRegistry, Lookup};
use crate::time::Timestamp;
use crate::token::{self, TokenError, TokenVerifier};
use crate::verdict::{Decision, DenyCode, KeyRef, Verdict};

/// What the caller presents along with the key.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    /// The service the caller wants to reach.
    pub service: Option<String>,
    /// The scope the request needs.
    pub scope: Option<String>,
    /// The caller's address, when known.
    pub source_ip: Option<String>,
    /// The HTTP method of the original request.
    pub method: Option<String>,
    /// The path of the original request.
    pub path: Option<String>,
    /// Extra name/value pairs for the policy.
    pub attributes: Vec<(String, String)>,
    /// The time of the check; now when unset.
    pub now: Option<Timestamp>,
}

/// What decides on a key once it is found: a policy component, or, as the
/// benchmarks' baseline, the default rules compiled into the host.
pub trait Decider {
    /// The decision on `key` of `identity` making `request` at `now`.
    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault>;
}

/// The verdict on `presented` for `request`: found in `lookup`, decided by
/// `decider`. An `Err` is a registry that cannot be read, not a verdict.
pub fn check(
    lookup: &(impl Lookup + ?Sized),
    decider: &mut impl Decider,
    presented: &str,
    request: &CheckRequest,
) -> Result<Verdict> {
    // The format and checksum come first, so a typo costs no lookup.
    if let Err(malformed) = key_format::parse(lookup.prefix(), presented) {
        return Ok(Verdict::deny(
            DenyCode::Malformed,
            malformed.to_string(),
            None,
        ));
    }
    let found = lookup.find(&key_format::hash(presented))?;
    Ok(decide(found, decider, request))
}

/// The verdict on `presented`, an access token, for `request`: its
/// signature and expiry (with `verifier`; none means this registry never
/// issued a token), then the token's own limits (`token::admit`: the key by
/// id in `registry`, its state, the secret it was exchanged for, the
/// token's service and scopes), then `decider`, as for the key itself.
pub fn check_token(
    registry: &LoadedRegistry,
    verifier: Option<&TokenVerifier>,
    decider: &mut impl Decider,
    presented: &str,
    request: &CheckRequest,
) -> Verdict {
    let now = request.now.unwrap_or_else(Timestamp::now);
    let claims = match verifier
        .ok_or(TokenError::NoKeys)
        .and_then(|v| v.verify(presented, now))
    {
        Ok(claims) => claims,
        Err(refused) => return Verdict::deny(DenyCode::NotFound, refused.to_string(), None),
    };
    match token::admit(&claims, registry, request, now) {
        Ok(found) => decide(Some(found), decider, request),
        Err(refused) => refused,
    }
}

/// The verdict on a looked-up secret: the registry's own refusals (unknown,
/// rotated out, orphaned), then the decider's.
fn decide(found: Option<Found<'_>>, decider: &mut impl Decider, request: &CheckRequest) -> Verdict {
    let now = request.now.unwrap_or_else(Timestamp::now);
    let Some(found) = found else {
        return Verdict::deny(DenyCode::NotFound, "no key matches this secret", None);
    };
    let key = &*found.key;
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
    let Some(identity) = found.identity.as_deref() else {
        return Verdict::deny(
            DenyCode::NotFound,
            "the key's identity no longer exists",
            Some(key_ref),
        );
    };
    match decider.decide(key, identity, request, now) {
        // What a policy returns has been through the sanitiser already
        // (policy/answer.rs), and so have the reasons of a fault.
        Ok(Decision::Allow(info)) => Verdict::Allow { key: key_ref, info },
        Ok(Decision::Deny { code, message }) => Verdict::deny(code, message, Some(key_ref)),
        Err(fault) => Verdict::deny(DenyCode::PolicyError, fault.to_string(), Some(key_ref)),
    }
}
