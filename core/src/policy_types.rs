//! The conversion between keyhost's records and the policy contract's
//! types, written once for every place that calls a policy in-process (the
//! gate, the proxy filters). Each has its own wit-bindgen types, so the
//! conversion is a macro over their path rather than functions over one set.

/// Defines `mod from_core` over the contract's generated `types` module at
/// `$types` (an absolute path, `crate::...`): `key_record`, `identity` and
/// `request` into the contract, `decision` back, made safe.
#[macro_export]
macro_rules! policy_conversions {
    ($($types:tt)+) => {
        /// keyhost's records as the contract's types, and a policy's answer
        /// back (made safe: codes keyhost keeps for itself become `denied`,
        /// texts are cut and cleaned).
        pub mod from_core {
            use $($types)+ as wit;

            /// A key's record as a policy sees it.
            pub fn key_record(key: &$crate::record::KeyRecord) -> wit::KeyRecord {
                wit::KeyRecord {
                    id: key.id.clone(),
                    name: key.name.clone(),
                    kind: match key.kind {
                        $crate::iam::KeyKind::User => wit::KeyKind::User,
                        $crate::iam::KeyKind::ServiceId => wit::KeyKind::ServiceId,
                        $crate::iam::KeyKind::ClassicInfrastructure => wit::KeyKind::ClassicInfrastructure,
                        $crate::iam::KeyKind::ServiceSpecific => wit::KeyKind::ServiceSpecific,
                    },
                    owner: key.owner.to_string(),
                    service: key.service.clone(),
                    scopes: key.scopes.clone(),
                    allowed_ips: key.allowed_ips.clone(),
                    created_at: key.created_at.0,
                    expires_at: key.expires_at.map(|t| t.0),
                    disabled: key.disabled,
                    leaked: key.leaked,
                    locked: key.locked,
                }
            }

            /// An identity as a policy sees it.
            pub fn identity(identity: &$crate::record::Identity) -> wit::Identity {
                wit::Identity {
                    iam_id: identity.iam_id.to_string(),
                    kind: match identity.kind() {
                        $crate::iam::IdentityKind::User => wit::IdentityKind::User,
                        $crate::iam::IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
                    },
                    owner: identity.owner.as_ref().map(ToString::to_string),
                    scopes: identity.rights().map(str::to_string).collect(),
                }
            }

            /// A request as a policy sees it, at `now`.
            pub fn request(request: &$crate::check::CheckRequest, now: $crate::time::Timestamp) -> wit::Request {
                wit::Request {
                    service: request.service.clone(),
                    scope: request.scope.clone(),
                    source_ip: request.source_ip.clone(),
                    method: request.method.clone(),
                    path: request.path.clone(),
                    attributes: request.attributes.clone(),
                    now: now.0,
                }
            }

            /// A policy's answer as keyhost acts on it: made safe (codes keyhost keeps
            /// for itself become `denied`, texts are cut and cleaned).
            pub fn decision(decision: wit::Decision) -> $crate::verdict::Decision {
                $crate::answer::safe_decision(match decision {
                    wit::Decision::Allow(info) => $crate::verdict::Decision::Allow(info),
                    wit::Decision::Deny(wit::Deny { code, message }) => $crate::verdict::Decision::Deny {
                        code: deny_code(code),
                        message,
                    },
                })
            }

            fn deny_code(code: wit::DenyCode) -> $crate::verdict::DenyCode {
                match code {
                    wit::DenyCode::NotFound => $crate::verdict::DenyCode::NotFound,
                    wit::DenyCode::Malformed => $crate::verdict::DenyCode::Malformed,
                    wit::DenyCode::Disabled => $crate::verdict::DenyCode::Disabled,
                    wit::DenyCode::Expired => $crate::verdict::DenyCode::Expired,
                    wit::DenyCode::Leaked => $crate::verdict::DenyCode::Leaked,
                    wit::DenyCode::WrongService => $crate::verdict::DenyCode::WrongService,
                    wit::DenyCode::InsufficientScope => $crate::verdict::DenyCode::InsufficientScope,
                    wit::DenyCode::IpNotAllowed => $crate::verdict::DenyCode::IpNotAllowed,
                    wit::DenyCode::RateLimited => $crate::verdict::DenyCode::RateLimited,
                    wit::DenyCode::PolicyError => $crate::verdict::DenyCode::PolicyError,
                    wit::DenyCode::Denied => $crate::verdict::DenyCode::Denied,
                }
            }
        }
    };
}
