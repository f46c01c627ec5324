//! The default rules compiled into the host, behind the same [`Decider`]
//! interface as a policy component. It is the baseline of the benchmarks:
//! the rules are the very code the default component wraps (plugin/rules),
//! so the difference between the two measures only the WebAssembly boundary.

use keyhost_policy_rules as rules;

use crate::check::{CheckRequest, Decider};
use crate::iam::KeyKind;
use crate::policy::PolicyFault;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::{Decision, DenyCode};

/// The default rules with their settings, decided natively.
pub struct NativeRules {
    settings: rules::Settings,
}

impl NativeRules {
    /// The rules with the settings of `[policy.config]`.
    pub fn new(config: &[(String, String)]) -> Result<NativeRules, String> {
        Ok(NativeRules {
            settings: rules::Settings::from_pairs(config)?,
        })
    }
}

impl Decider for NativeRules {
    type Fault = PolicyFault;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
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
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
        };
        let rules_request = rules::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            now: now.0,
        };
        Ok(
            match rules::decide(&self.settings, &rules_key, &identity.scopes, &rules_request) {
                Ok(()) => Decision::Allow(Vec::new()),
                Err(denial) => Decision::Deny {
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
                },
            },
        )
    }
}
