//! The check pipeline, in one place and in this order: the secret's format
//! and checksum, its SHA-256, the lookup (constant-time, in any
//! [`Lookup`]), the registry's own refusals, then the decider (the policy).
//! The host and the gate both run this; only the decider differs.

use std::fmt::Display;

use anyhow::Result;

use crate::http;
use crate::key_format;
use crate::lookup::{Found, Lookup};
use crate::record::{Identity, KeyRecord};
use crate::time::Timestamp;
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
    /// Why a decision could not be had; the check fails closed with it.
    type Fault: Display;

    /// The decision on `key` of `identity` making `request` at `now`.
    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, Self::Fault>;
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

/// The verdict on a looked-up secret: the registry's own refusals (unknown,
/// rotated out, orphaned), then the decider's.
pub fn decide(
    found: Option<Found<'_>>,
    decider: &mut impl Decider,
    request: &CheckRequest,
) -> Verdict {
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
    // A path that climbs would let a policy's path rules judge one place
    // and the upstream serve another, whichever way the request came.
    if request.path.as_deref().is_some_and(http::climbs) {
        return Verdict::deny(DenyCode::Denied, http::NOT_PLAIN_PATH, Some(key_ref));
    }
    let Some(identity) = found.identity.as_deref() else {
        return Verdict::deny(
            DenyCode::NotFound,
            "the key's identity no longer exists",
            Some(key_ref),
        );
    };
    match decider.decide(key, identity, request, now) {
        // What a policy returns is the decider's to sanitise, and so are
        // the reasons of a fault.
        Ok(Decision::Allow(info)) => Verdict::Allow { key: key_ref, info },
        Ok(Decision::Deny { code, message }) => Verdict::deny(code, message, Some(key_ref)),
        Err(fault) => Verdict::deny(DenyCode::PolicyError, fault.to_string(), Some(key_ref)),
    }
}
