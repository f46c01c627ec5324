//! The candidate shapes of keyhost:policy 0.2's `validate` call
//! (wit/candidates.wit), each making the default rules' decision, for
//! host/benches/contracts.rs. Built twice: here with the system allocator,
//! and as bench/contracts-bump with the `bump` feature, where an arena
//! (bump.rs) serves the canonical ABI's allocations.

mod views;
// Shared with the host's bench: the encoder is the host's half, and the
// rules read only some of the decoded fields.
#[allow(dead_code)]
mod wire;

#[cfg(all(feature = "bump", target_family = "wasm"))]
mod bump;
// Natively (the workspace's clippy and test builds) the arena is left out:
// the component is only ever measured as wasm.
#[cfg(all(feature = "bump", target_family = "wasm", target_feature = "atomics"))]
compile_error!("the bump arena assumes a single-threaded wasm target");

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use keyhost_policy_rules as rules;

wit_bindgen::generate!({
    path: "../contracts/wit",
    world: "candidates",
});

use exports::keyhost::candidates::{arena, buffer, floor, interned, lazy, records};
use keyhost::candidates::call_facts::Call;
use keyhost::candidates::types::{Decision, Deny, DenyCode, KeyKind};

struct Candidates;

/// Runs `make` so that what it allocates may outlive the call (outside the
/// arena, when there is one).
fn persistent<T>(make: impl FnOnce() -> T) -> T {
    #[cfg(all(feature = "bump", target_family = "wasm"))]
    return bump::persistent(make);
    #[cfg(not(all(feature = "bump", target_family = "wasm")))]
    make()
}

/// The default settings, made once: a `String` made per call would be an
/// allocation the host's side does not make.
fn settings() -> &'static rules::Settings {
    static SETTINGS: OnceLock<rules::Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| persistent(rules::Settings::default))
}

fn rules_kind(kind: KeyKind) -> rules::KeyKind {
    match kind {
        KeyKind::User => rules::KeyKind::User,
        KeyKind::ServiceId => rules::KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure => rules::KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific => rules::KeyKind::ServiceSpecific,
    }
}

/// The rules' answer as the contract's decision.
fn decision(decided: Result<(), rules::Deny>) -> Decision {
    let Err(denial) = decided else {
        return Decision::Allow(Vec::new());
    };
    Decision::Deny(Deny {
        code: match denial.code {
            rules::DenyCode::Disabled => DenyCode::Disabled,
            rules::DenyCode::Expired => DenyCode::Expired,
            rules::DenyCode::Leaked => DenyCode::Leaked,
            rules::DenyCode::WrongService => DenyCode::WrongService,
            rules::DenyCode::InsufficientScope => DenyCode::InsufficientScope,
            rules::DenyCode::IpNotAllowed => DenyCode::IpNotAllowed,
            rules::DenyCode::Denied => DenyCode::Denied,
        },
        message: denial.message,
    })
}

/// A refusal of input the guest cannot read: it fails closed.
fn refuse(why: &str) -> Decision {
    Decision::Deny(Deny {
        code: DenyCode::Denied,
        message: format!("unreadable call: {why}"),
    })
}

impl records::Guest for Candidates {
    /// As keyhost-policy-sdk's `default_decision`: `rules::decide` itself.
    fn validate(
        key: records::KeyRecord,
        identity: records::Identity,
        request: records::Request,
    ) -> Decision {
        let rules_key = rules::Key {
            kind: rules_kind(key.kind),
            service: key.service.as_deref(),
            scopes: &key.scopes,
            allowed_ips: &key.allowed_ips,
            expires_at: key.expires_at,
            disabled: key.disabled,
            leaked: key.leaked,
        };
        let rules_request = rules::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            now: request.now,
        };
        decision(rules::decide(
            settings(),
            &rules_key,
            &identity.scopes,
            &rules_request,
        ))
    }
}

impl buffer::Guest for Candidates {
    fn validate(call: Vec<u8>) -> Decision {
        match wire::decode(&call) {
            Ok(call) => decision(views::decide(settings(), &call)),
            Err(wire::Malformed(why)) => refuse(why),
        }
    }
}

/// The host's `call` resource, read through its getters as the rules go.
struct Lazy<'a>(&'a Call);

impl views::Facts for Lazy<'_> {
    fn disabled(&self) -> bool {
        self.0.disabled()
    }
    fn leaked(&self) -> bool {
        self.0.leaked()
    }
    fn expires_at(&self) -> Option<i64> {
        self.0.expires_at()
    }
    fn now(&self) -> i64 {
        self.0.now()
    }
    fn key_kind(&self) -> rules::KeyKind {
        rules_kind(self.0.key_kind())
    }
    fn key_service(&self) -> Option<Cow<'_, str>> {
        self.0.key_service().map(Cow::Owned)
    }
    fn key_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.0.key_scopes().into_iter().map(Cow::Owned)
    }
    fn allowed_ips(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.0.allowed_ips().into_iter().map(Cow::Owned)
    }
    fn identity_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.0.identity_scopes().into_iter().map(Cow::Owned)
    }
    fn request_service(&self) -> Option<Cow<'_, str>> {
        self.0.request_service().map(Cow::Owned)
    }
    fn request_scope(&self) -> Option<Cow<'_, str>> {
        self.0.request_scope().map(Cow::Owned)
    }
    fn source_ip(&self) -> Option<Cow<'_, str>> {
        self.0.source_ip().map(Cow::Owned)
    }
}

impl lazy::Guest for Candidates {
    fn validate(call: &Call) -> Decision {
        decision(views::decide(settings(), &Lazy(call)))
    }
}

thread_local! {
    // A component instance is single-threaded; `configure` comes first.
    static VOCABULARY: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// An `interned` call with its indices checked against the vocabulary.
struct Interned<'a> {
    vocabulary: &'a [String],
    key: &'a interned::KeyRecord,
    identity: &'a interned::Identity,
    request: &'a interned::Request,
}

impl<'a> Interned<'a> {
    /// None when an index is past the vocabulary.
    fn new(
        vocabulary: &'a [String],
        key: &'a interned::KeyRecord,
        identity: &'a interned::Identity,
        request: &'a interned::Request,
    ) -> Option<Interned<'a>> {
        let known = |index: &u32| (*index as usize) < vocabulary.len();
        let term_known = |term: &Option<interned::Term>| match term {
            Some(interned::Term::Known(index)) => known(index),
            _ => true,
        };
        let fine = key.service.iter().all(known)
            && key.scopes.iter().all(known)
            && key.allowed_ips.iter().all(known)
            && identity.scopes.iter().all(known)
            && term_known(&request.service)
            && term_known(&request.scope);
        fine.then_some(Interned {
            vocabulary,
            key,
            identity,
            request,
        })
    }

    /// The word at a checked index (empty should it not be there after all).
    fn word(&self, index: u32) -> Cow<'a, str> {
        let word = self.vocabulary.get(index as usize);
        Cow::Borrowed(word.map_or("", String::as_str))
    }

    fn term(&self, term: &'a Option<interned::Term>) -> Option<Cow<'a, str>> {
        Some(match term.as_ref()? {
            interned::Term::Known(index) => self.word(*index),
            interned::Term::Unknown(text) => Cow::Borrowed(text),
        })
    }
}

impl views::Facts for Interned<'_> {
    fn disabled(&self) -> bool {
        self.key.disabled
    }
    fn leaked(&self) -> bool {
        self.key.leaked
    }
    fn expires_at(&self) -> Option<i64> {
        self.key.expires_at
    }
    fn now(&self) -> i64 {
        self.request.now
    }
    fn key_kind(&self) -> rules::KeyKind {
        rules_kind(self.key.kind)
    }
    fn key_service(&self) -> Option<Cow<'_, str>> {
        self.key.service.map(|index| self.word(index))
    }
    fn key_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.key.scopes.iter().map(|&index| self.word(index))
    }
    fn allowed_ips(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.key.allowed_ips.iter().map(|&index| self.word(index))
    }
    fn identity_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.identity.scopes.iter().map(|&index| self.word(index))
    }
    fn request_service(&self) -> Option<Cow<'_, str>> {
        self.term(&self.request.service)
    }
    fn request_scope(&self) -> Option<Cow<'_, str>> {
        self.term(&self.request.scope)
    }
    fn source_ip(&self) -> Option<Cow<'_, str>> {
        self.request.source_ip.as_deref().map(Cow::Borrowed)
    }
}

impl interned::Guest for Candidates {
    fn configure(vocabulary: Vec<String>) {
        // Kept for the instance's life, so not in the arena.
        #[cfg(all(feature = "bump", target_family = "wasm"))]
        let vocabulary = persistent(|| vocabulary.clone());
        VOCABULARY.with(|kept| *kept.borrow_mut() = vocabulary);
    }

    fn validate(
        key: interned::KeyRecord,
        identity: interned::Identity,
        request: interned::Request,
    ) -> Decision {
        VOCABULARY.with(|vocabulary| {
            let vocabulary = vocabulary.borrow();
            match Interned::new(&vocabulary, &key, &identity, &request) {
                Some(call) => decision(views::decide(settings(), &call)),
                None => refuse("an index past the vocabulary"),
            }
        })
    }
}

impl floor::Guest for Candidates {
    fn validate() -> Decision {
        Decision::Allow(Vec::new())
    }
}

impl arena::Guest for Candidates {
    fn stats() -> Option<arena::ArenaStats> {
        #[cfg(all(feature = "bump", target_family = "wasm"))]
        {
            let stats = bump::stats();
            Some(arena::ArenaStats {
                arena: stats.served,
                fallback: stats.fallback,
                resets: stats.resets,
                live: stats.live,
                high_water: stats.high_water as u32,
            })
        }
        #[cfg(not(all(feature = "bump", target_family = "wasm")))]
        None
    }
}

export!(Candidates);
