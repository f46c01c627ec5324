//! The policy the gate was composed with, as the core crate's `Decider`:
//! configured once per instance with the registry's `[policy.config]`, then
//! asked about each key. Its answer is made safe (`keyhost_core::answer`)
//! before the gate acts on it.

use keyhost_core::answer::safe_decision;
use keyhost_core::check::{CheckRequest, Decider};
use keyhost_core::iam::{IdentityKind, KeyKind};
use keyhost_core::record::{Identity, KeyRecord};
use keyhost_core::text::policy_text;
use keyhost_core::time::Timestamp;
use keyhost_core::verdict::{Decision, DenyCode};

use crate::keyhost::policy::types as wit;

/// The composed policy.
pub struct Policy;

/// Configures the policy, once per instance; a refusal is remembered and
/// fails every check closed.
pub fn configured(config: impl FnOnce() -> Vec<(String, String)>) -> Result<(), String> {
    static CONFIGURED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CONFIGURED
        .get_or_init(|| {
            crate::configure(&config()).map_err(|refused| {
                format!("the policy refused its settings: {}", policy_text(&refused))
            })
        })
        .clone()
}

impl Decider for Policy {
    type Fault = String;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, String> {
        // A rate limit needs counts shared between requests, which a gate
        // (often an instance per request) does not keep: such a key is
        // refused rather than let through unlimited.
        if let Some(limit) = key.rate_limit {
            return Ok(Decision::Deny {
                code: DenyCode::Denied,
                message: format!(
                    "this key has a rate limit ({limit}), which a gate cannot keep; keyhost serve can"
                ),
            });
        }
        let key = wit::KeyRecord {
            id: key.id.clone(),
            name: key.name.clone(),
            kind: key_kind(key.kind),
            owner: key.owner.to_string(),
            service: key.service.clone(),
            scopes: key.scopes.clone(),
            allowed_ips: key.allowed_ips.clone(),
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        };
        let identity = wit::Identity {
            iam_id: identity.iam_id.to_string(),
            kind: match identity.kind() {
                IdentityKind::User => wit::IdentityKind::User,
                IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
            },
            owner: identity.owner.as_ref().map(ToString::to_string),
            scopes: identity.rights().map(str::to_string).collect(),
        };
        let request = wit::Request {
            service: request.service.clone(),
            scope: request.scope.clone(),
            source_ip: request.source_ip.clone(),
            method: request.method.clone(),
            path: request.path.clone(),
            attributes: request.attributes.clone(),
            now: now.0,
        };
        let decision = match crate::validate(&key, &identity, &request) {
            wit::Decision::Allow(info) => Decision::Allow(info),
            wit::Decision::Deny(deny) => Decision::Deny {
                code: deny_code(deny.code),
                message: deny.message,
            },
        };
        Ok(safe_decision(decision))
    }
}

fn key_kind(kind: KeyKind) -> wit::KeyKind {
    match kind {
        KeyKind::User => wit::KeyKind::User,
        KeyKind::ServiceId => wit::KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure => wit::KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific => wit::KeyKind::ServiceSpecific,
    }
}

fn deny_code(code: wit::DenyCode) -> DenyCode {
    match code {
        wit::DenyCode::NotFound => DenyCode::NotFound,
        wit::DenyCode::Malformed => DenyCode::Malformed,
        wit::DenyCode::Disabled => DenyCode::Disabled,
        wit::DenyCode::Expired => DenyCode::Expired,
        wit::DenyCode::Leaked => DenyCode::Leaked,
        wit::DenyCode::WrongService => DenyCode::WrongService,
        wit::DenyCode::InsufficientScope => DenyCode::InsufficientScope,
        wit::DenyCode::IpNotAllowed => DenyCode::IpNotAllowed,
        wit::DenyCode::RateLimited => DenyCode::RateLimited,
        wit::DenyCode::PolicyError => DenyCode::PolicyError,
        wit::DenyCode::Denied => DenyCode::Denied,
    }
}
