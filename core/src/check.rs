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
use crate::text;
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
    check_hashed(lookup, decider, presented, None, request)
}

/// [`check`], given the SHA-256 of `presented` when the caller already
/// made it.
pub fn check_hashed(
    lookup: &(impl Lookup + ?Sized),
    decider: &mut impl Decider,
    presented: &str,
    hash: Option<&[u8; 32]>,
    request: &CheckRequest,
) -> Result<Verdict> {
    Ok(match find_hashed(lookup, presented, hash)? {
        Ok(found) => decide(found, decider, request),
        Err(malformed) => malformed,
    })
}

/// The first steps of [`check`]: the secret's format and checksum, then
/// the lookup. The key found (or none), or the verdict on a malformed
/// secret.
pub fn find<'l, L: Lookup + ?Sized>(
    lookup: &'l L,
    presented: &str,
) -> Result<Result<Option<Found<'l>>, Verdict>> {
    find_hashed(lookup, presented, None)
}

/// [`find`], given the SHA-256 of `presented` when the caller already
/// made it.
fn find_hashed<'l, L: Lookup + ?Sized>(
    lookup: &'l L,
    presented: &str,
    hash: Option<&[u8; 32]>,
) -> Result<Result<Option<Found<'l>>, Verdict>> {
    // The format and checksum come first, so a typo costs no lookup. A
    // secret made elsewhere and imported has neither: one of that shape is
    // looked up by its hash alone, and is malformed if nothing has it.
    if let Err(malformed) = key_format::parse(lookup.prefix(), presented) {
        let imported = match key_format::imported_shape(presented) {
            Ok(()) => match hash {
                Some(hash) => lookup.find(hash)?,
                None => lookup.find(&key_format::hash(presented))?,
            },
            Err(_) => None,
        };
        if imported.is_some() {
            return Ok(Ok(imported));
        }
        return Ok(Err(Verdict::deny(
            DenyCode::Malformed,
            malformed.to_string(),
            None,
        )));
    }
    debug_assert!(
        hash.is_none_or(|hash| *hash == key_format::hash(presented)),
        "the hash given is not the presented key's"
    );
    let found = match hash {
        Some(hash) => lookup.find(hash)?,
        None => lookup.find(&key_format::hash(presented))?,
    };
    Ok(Ok(found))
}

/// The verdict on a looked-up secret: the registry's own refusals (unknown,
/// rotated out, orphaned), then the decider's.
pub fn decide(
    found: Option<Found<'_>>,
    decider: &mut impl Decider,
    request: &CheckRequest,
) -> Verdict {
    match prepare(found.as_ref(), request) {
        Prepared::Decided(verdict) => verdict,
        Prepared::Ask(question) => {
            let answer = decider.decide(question.key, question.identity, request, question.now);
            question.conclude(answer)
        }
    }
}

/// A found key after the registry's own refusals: a verdict already, or a
/// question for the decider. A decider that has to be awaited (serve's
/// policy pool) asks it itself, between [`prepare`] and
/// [`Question::conclude`]; [`decide`] does both for any other.
pub enum Prepared<'a> {
    /// The registry refused the key: no decider is asked.
    Decided(Verdict),
    /// The decider's to answer.
    Ask(Question<'a>),
}

/// What the decider is asked about, and what the verdict names.
pub struct Question<'a> {
    /// The key found.
    pub key: &'a KeyRecord,
    /// Its identity.
    pub identity: &'a Identity,
    /// The time of the check.
    pub now: Timestamp,
    key_ref: KeyRef,
}

impl Question<'_> {
    /// The verdict on the decider's `answer`. What a policy returns is the
    /// decider's to sanitise, and so are the reasons of a fault.
    pub fn conclude<F: Display>(self, answer: Result<Decision, F>) -> Verdict {
        match answer {
            Ok(Decision::Allow(info)) => Verdict::Allow {
                key: self.key_ref,
                info,
            },
            Ok(Decision::Deny { code, message }) => {
                Verdict::deny(code, message, Some(self.key_ref))
            }
            Err(fault) => {
                Verdict::deny(DenyCode::PolicyError, fault.to_string(), Some(self.key_ref))
            }
        }
    }
}

/// The registry's own refusals of what was `found` (nothing, a secret
/// rotated out, a path that climbs, a field with an unsafe character, an
/// orphaned key), or the question for the decider.
pub fn prepare<'a>(found: Option<&'a Found<'_>>, request: &CheckRequest) -> Prepared<'a> {
    let now = request.now.unwrap_or_else(Timestamp::now);
    let Some(found) = found else {
        return Prepared::Decided(Verdict::deny(
            DenyCode::NotFound,
            "no key matches this secret",
            None,
        ));
    };
    let key = &*found.key;
    let key_ref = KeyRef {
        index: found.position,
        key_id: key.id.clone(),
        owner: key.owner.to_string(),
        kind: key.kind,
    };
    if found.retired_until.is_some_and(|until| now >= until) {
        return Prepared::Decided(Verdict::deny(
            DenyCode::NotFound,
            "this secret was rotated out and its grace period is over",
            Some(key_ref),
        ));
    }
    // A path that climbs would let a policy's path rules judge one place
    // and the upstream serve another, whichever way the request came.
    if request.path.as_deref().is_some_and(http::climbs) {
        return Prepared::Decided(Verdict::deny(
            DenyCode::Denied,
            http::NOT_PLAIN_PATH,
            Some(key_ref),
        ));
    }
    // Language runtimes decode text differently (one drops a leading
    // byte-order mark, another keeps it), so a field the policy could read
    // as something the caller did not send never reaches it.
    if let Some(problem) = unsafe_field(request) {
        return Prepared::Decided(Verdict::deny(DenyCode::Denied, problem, Some(key_ref)));
    }
    let Some(identity) = found.identity.as_deref() else {
        return Prepared::Decided(Verdict::deny(
            DenyCode::NotFound,
            "the key's identity no longer exists",
            Some(key_ref),
        ));
    };
    Prepared::Ask(Question {
        key,
        identity,
        now,
        key_ref,
    })
}

/// The first field of `request` that holds an unsafe character
/// ([`text::first_unsafe_char`]), named with what is wrong with it. The
/// caller's address is among them: serve and the filters hand it on in
/// canonical form, but `keyhost check --ip` passes it as it was typed.
fn unsafe_field(request: &CheckRequest) -> Option<String> {
    let named = [
        ("service", &request.service),
        ("scope", &request.scope),
        ("source address", &request.source_ip),
        ("method", &request.method),
        ("path", &request.path),
    ];
    let fields = named
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
        .chain(request.attributes.iter().flat_map(|(name, value)| {
            [
                ("attribute name", name.as_str()),
                ("attribute value", value.as_str()),
            ]
        }));
    for (name, value) in fields {
        if let Some(problem) = text::unsafe_request_char_problem(value) {
            return Some(format!("the request's {name}: {problem}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry with no keys that notes every hash it is asked for.
    struct Asked(std::cell::RefCell<Vec<[u8; 32]>>);

    impl Lookup for Asked {
        fn prefix(&self) -> &str {
            "kh"
        }
        fn revision(&self) -> u64 {
            1
        }
        fn policy_config(&self) -> Vec<(String, String)> {
            Vec::new()
        }
        fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
            self.0.borrow_mut().push(*hash);
            Ok(None)
        }
        fn find_by_id(&self, _: &str) -> Result<Option<Found<'_>>> {
            Ok(None)
        }
    }

    #[test]
    fn a_secret_made_elsewhere_is_looked_up_by_hash_and_junk_is_not() {
        let imported = "AKIAexample-first-secret-0001";
        for (presented, looked_up) in [
            (imported, true),
            ("short", false),
            ("with a space in it, long enough", false),
            (&*"x".repeat(300), false),
        ] {
            let asked = Asked(Default::default());
            let found = find(&asked, presented).unwrap();
            let Err(Verdict::Deny { code, .. }) = found else {
                panic!("{presented:?} was found in an empty registry");
            };
            assert_eq!(code, DenyCode::Malformed, "{presented:?}");
            let hashes = asked.0.into_inner();
            assert_eq!(!hashes.is_empty(), looked_up, "{presented:?}");
            if looked_up {
                assert_eq!(hashes, [key_format::hash(presented)]);
            }
        }
    }

    #[test]
    fn every_request_field_is_checked_for_unsafe_characters() {
        let plain = CheckRequest {
            service: Some("billing".into()),
            scope: Some("read".into()),
            source_ip: Some("192.0.2.7".into()),
            method: Some("GET".into()),
            path: Some("/v1/x".into()),
            attributes: vec![("tenant".into(), "acme".into())],
            now: None,
        };
        assert_eq!(unsafe_field(&plain), None);
        type Edit = fn(&mut CheckRequest);
        let marked = |edit: Edit| {
            let mut request = plain.clone();
            edit(&mut request);
            unsafe_field(&request).expect("a marked field is refused")
        };
        let cases: [(Edit, &str); 7] = [
            (|r| r.service = Some("\u{FEFF}billing".into()), "service"),
            (|r| r.scope = Some("re\u{202E}ad".into()), "scope"),
            (
                |r| r.source_ip = Some("192.0.2.7\u{0}".into()),
                "source address",
            ),
            (|r| r.method = Some("G\u{2066}ET".into()), "method"),
            (|r| r.path = Some("/v1/\u{FEFF}x".into()), "path"),
            (
                |r| r.attributes[0].0 = "ten\u{1b}ant".into(),
                "attribute name",
            ),
            (
                |r| r.attributes[0].1 = "acme\u{200F}".into(),
                "attribute value",
            ),
        ];
        for (edit, field) in cases {
            let problem = marked(edit);
            assert!(
                problem.starts_with(&format!("the request's {field}: character")),
                "{problem}"
            );
        }
    }
}
