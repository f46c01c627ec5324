//! A keyhost policy: keyhost's default rules, ready to change.
//!
//! keyhost has already checked the key's format, hashed it and found its
//! record; `validate` decides whether that key may make this request. The
//! contract is `wit/policy.wit` (every type is commented there). Build and
//! check the policy with:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! keyhost policy test target/wasm32-wasip2/release/{{file}}.wasm vectors/default-policy.json
//! ```
//!
//! then use it with `keyhost check --policy ...` or `keyhost serve --policy ...`.

wit_bindgen::generate!({ path: "wit", world: "policy" });

/// keyhost's default rules (its `plugin/rules`), copied when this crate was
/// made; change them here, or add rules in `validate`.
pub mod rules;

use exports::keyhost::policy::validator::Guest;
use keyhost::policy::types::{Decision, Deny, DenyCode, Identity, KeyKind, KeyRecord, Request};

struct Policy;

thread_local! {
    // An instance runs one call at a time, and `configure` comes first.
    static SETTINGS: std::cell::RefCell<rules::Settings> =
        std::cell::RefCell::new(rules::Settings::default());
}

impl Guest for Policy {
    /// Takes the registry's `[policy.config]` (`keyhost policy config set`).
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let settings = rules::Settings::from_pairs(&config)?;
        SETTINGS.with(|cell| *cell.borrow_mut() = settings);
        Ok(())
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        // Your own rules go here: return a `Decision::Deny` with the code
        // `DenyCode::Denied` and a message, or fall through to the defaults.
        let decided = SETTINGS.with(|settings| {
            rules::decide(
                &settings.borrow(),
                &rules_key(&key),
                &identity.scopes,
                &rules_request(&request),
            )
        });
        match decided {
            Ok(()) => Decision::Allow(Vec::new()),
            Err(denial) => Decision::Deny(Deny {
                code: deny_code(denial.code),
                message: denial.message,
            }),
        }
    }
}

fn rules_key(key: &KeyRecord) -> rules::Key<'_> {
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

fn rules_request(request: &Request) -> rules::Request<'_> {
    rules::Request {
        service: request.service.as_deref(),
        scope: request.scope.as_deref(),
        source_ip: request.source_ip.as_deref(),
        now: request.now,
    }
}

fn deny_code(code: rules::DenyCode) -> DenyCode {
    match code {
        rules::DenyCode::Disabled => DenyCode::Disabled,
        rules::DenyCode::Expired => DenyCode::Expired,
        rules::DenyCode::Leaked => DenyCode::Leaked,
        rules::DenyCode::WrongService => DenyCode::WrongService,
        rules::DenyCode::InsufficientScope => DenyCode::InsufficientScope,
        rules::DenyCode::IpNotAllowed => DenyCode::IpNotAllowed,
        rules::DenyCode::Denied => DenyCode::Denied,
    }
}

export!(Policy);
