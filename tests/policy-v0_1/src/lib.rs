//! keyhost's default policy against `keyhost:policy@0.1.0` (wit/v0_1),
//! where `configure` and `validate` are world exports. It is kept as a 0.1
//! policy author wrote it, with its own bindings (the SDK speaks 0.2), so
//! the tests can prove that keyhost still loads 0.1 policies and that they
//! still pass the conformance vectors.

wit_bindgen::generate!({ path: "../../wit/v0_1", world: "policy" });

use keyhost::policy::types::{Deny, DenyCode, KeyKind};
use keyhost_policy_rules as rules;

struct DefaultPolicy;

thread_local! {
    // An instance runs one call at a time, and `configure` comes first.
    static SETTINGS: std::cell::RefCell<rules::Settings> =
        std::cell::RefCell::new(rules::Settings::default());
}

impl Guest for DefaultPolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let settings = rules::Settings::from_pairs(&config)?;
        SETTINGS.with(|cell| *cell.borrow_mut() = settings);
        Ok(())
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        let rules_key = rules::Key {
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
        };
        let rules_request = rules::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            now: request.now,
        };
        let decided = SETTINGS.with(|settings| {
            rules::decide(
                &settings.borrow(),
                &rules_key,
                &identity.scopes,
                &rules_request,
            )
        });
        match decided {
            Ok(()) => Decision::Allow(Vec::new()),
            Err(denial) => Decision::Deny(Deny {
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
            }),
        }
    }
}

export!(DefaultPolicy);
