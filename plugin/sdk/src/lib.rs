//! Bindings for writing a keyhost policy in Rust, generated from `wit/`.
//!
//! A policy crate implements [`Guest`] and exports it with
//! `keyhost_policy_sdk::export!(MyPolicy with_types_in keyhost_policy_sdk::bindings);`.
//! The conversions below let it reuse the default rules.
//!
//! The same source builds as a filter for hosts that load core modules, not
//! components: with the `proxy-wasm` feature (Envoy) or the `http-wasm`
//! feature (Traefik), `export!` starts keyhost's filter around the policy
//! instead of exporting the contract (see `filter`).

/// The code generated from the WIT package.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
        pub_export_macro: true,
        default_bindings_module: "keyhost_policy_sdk::bindings",
    });
}

pub use bindings::exports::keyhost::policy::validator::Guest;
pub use bindings::keyhost::policy::types::{
    Decision, Deny, DenyCode, Identity, IdentityKind, KeyKind, KeyRecord, Request,
};

#[cfg(not(any(feature = "proxy-wasm", feature = "http-wasm")))]
pub use bindings::export;

#[cfg(any(feature = "proxy-wasm", feature = "http-wasm"))]
pub mod filter;

keyhost_core::policy_conversions!(crate::bindings::keyhost::policy::types);
pub use keyhost_policy_rules as rules;

/// The record's fields the default rules read, borrowed.
pub fn rules_key(key: &KeyRecord) -> rules::Key<'_> {
    rules::Key {
        kind: match key.kind {
            KeyKind::User => rules::KeyKind::User,
            KeyKind::ServiceId => rules::KeyKind::ServiceId,
            KeyKind::ClassicInfrastructure => rules::KeyKind::ClassicInfrastructure,
            KeyKind::ServiceSpecific => rules::KeyKind::ServiceSpecific,
        },
        service: key.service.as_deref(),
        scopes: &key.scopes,
        allowed_ips: &key.allowed_ips,
        expires_at: key.expires_at,
        disabled: key.disabled,
        leaked: key.leaked,
    }
}

/// The request's fields the default rules read, borrowed.
pub fn rules_request(request: &Request) -> rules::Request<'_> {
    rules::Request {
        service: request.service.as_deref(),
        scope: request.scope.as_deref(),
        source_ip: request.source_ip.as_deref(),
        now: request.now,
    }
}

/// A refusal of the rules, as a decision of the contract.
pub fn deny(denial: rules::Deny) -> Decision {
    let code = match denial.code {
        rules::DenyCode::Disabled => DenyCode::Disabled,
        rules::DenyCode::Expired => DenyCode::Expired,
        rules::DenyCode::Leaked => DenyCode::Leaked,
        rules::DenyCode::WrongService => DenyCode::WrongService,
        rules::DenyCode::InsufficientScope => DenyCode::InsufficientScope,
        rules::DenyCode::IpNotAllowed => DenyCode::IpNotAllowed,
        rules::DenyCode::Denied => DenyCode::Denied,
    };
    Decision::Deny(Deny {
        code,
        message: denial.message,
    })
}

thread_local! {
    // A component instance is single-threaded; `configure` runs before any
    // `validate` on a new instance.
    static SETTINGS: std::cell::RefCell<rules::Settings> =
        std::cell::RefCell::new(rules::Settings::default());
}

/// Keeps the default rules' settings from the registry's `[policy.config]`.
pub fn configure_default_rules(config: &[(String, String)]) -> Result<(), String> {
    let settings = rules::Settings::from_pairs(config)?;
    SETTINGS.with(|cell| *cell.borrow_mut() = settings);
    Ok(())
}

/// The default rules' decision for a key, its identity and a request, with
/// the settings `configure_default_rules` kept.
pub fn default_decision(key: &KeyRecord, identity: &Identity, request: &Request) -> Decision {
    SETTINGS.with(|settings| {
        let settings = settings.borrow();
        match rules::decide(
            &settings,
            &rules_key(key),
            &identity.scopes,
            &rules_request(request),
        ) {
            Ok(()) => Decision::Allow(Vec::new()),
            Err(denial) => deny(denial),
        }
    })
}
