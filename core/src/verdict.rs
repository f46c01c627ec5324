//! The host's own decision types. A policy's answer, whatever contract
//! version it speaks, is converted to these at the contract's edge
//! (`policy::v0_1`), so no generated binding type travels further.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::iam::KeyKind;

/// Why a key is refused. The stable codes are shared with the contract's
/// `deny-code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// No key matches the secret (or it was rotated out, or its identity
    /// is gone). keyhost's own.
    NotFound,
    /// The secret is not a keyhost key: wrong format or checksum.
    /// keyhost's own.
    Malformed,
    /// The key is disabled.
    Disabled,
    /// The key is past its expiry.
    Expired,
    /// The key was found exposed.
    Leaked,
    /// The key's kind or binding does not reach the service.
    WrongService,
    /// The request needs a scope the key does not carry.
    InsufficientScope,
    /// The source address is outside the key's CIDRs.
    IpNotAllowed,
    /// The key's rate limit is used up. keyhost's own.
    RateLimited,
    /// The policy failed (trapped, timed out, refused its settings); the
    /// check fails closed. keyhost's own.
    PolicyError,
    /// Any other refusal of the policy's.
    Denied,
}

impl DenyCode {
    /// Every code, in the contract's order.
    pub const ALL: [DenyCode; 11] = [
        DenyCode::NotFound,
        DenyCode::Malformed,
        DenyCode::Disabled,
        DenyCode::Expired,
        DenyCode::Leaked,
        DenyCode::WrongService,
        DenyCode::InsufficientScope,
        DenyCode::IpNotAllowed,
        DenyCode::RateLimited,
        DenyCode::PolicyError,
        DenyCode::Denied,
    ];

    /// The code a stable name (`as_str`) names.
    pub fn from_name(name: &str) -> Option<DenyCode> {
        DenyCode::ALL.into_iter().find(|code| code.as_str() == name)
    }

    /// The stable code, as the CLI, JSON and HTTP print it.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::NotFound => "not_found",
            DenyCode::Malformed => "malformed",
            DenyCode::Disabled => "disabled",
            DenyCode::Expired => "expired",
            DenyCode::Leaked => "leaked",
            DenyCode::WrongService => "wrong_service",
            DenyCode::InsufficientScope => "insufficient_scope",
            DenyCode::IpNotAllowed => "ip_not_allowed",
            DenyCode::RateLimited => "rate_limited",
            DenyCode::PolicyError => "policy_error",
            DenyCode::Denied => "denied",
        }
    }

    /// Codes only keyhost may give: they steer HTTP statuses (401, 429 with
    /// `Retry-After`) and the policy-error metric, which a policy must not
    /// fake.
    pub fn is_keyhosts_own(self) -> bool {
        matches!(
            self,
            DenyCode::NotFound
                | DenyCode::Malformed
                | DenyCode::RateLimited
                | DenyCode::PolicyError
        )
    }
}

/// A policy's answer about one key and request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with name/value pairs for the caller (`X-Keyhost-Info-*`).
    Allow(Vec<(String, String)>),
    /// Refused, with a code and a message for the caller.
    Deny {
        /// The stable code.
        code: DenyCode,
        /// Why, in the policy's words.
        message: String,
    },
}

/// The key a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    /// Where the key sits in the looked-up registry's `keys`.
    #[serde(skip)]
    pub index: usize,
    /// The key's id.
    pub key_id: String,
    /// The IAM id of its identity.
    pub owner: String,
    /// Its kind.
    pub kind: KeyKind,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key may make the request.
    Allow {
        /// The key.
        key: KeyRef,
        /// What the policy added, sanitised.
        info: Vec<(String, String)>,
    },
    /// The key may not.
    Deny {
        /// The stable code.
        code: DenyCode,
        /// Why, for the caller.
        reason: String,
        /// The key, when one was found.
        key: Option<KeyRef>,
    },
}

impl Verdict {
    /// A denial.
    pub fn deny(code: DenyCode, reason: impl Into<String>, key: Option<KeyRef>) -> Verdict {
        Verdict::Deny {
            code,
            reason: reason.into(),
            key,
        }
    }

    /// Whether the key may make the request.
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    /// The key the verdict is about, if one was found.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Verdict::Allow { key, .. } => Some(key),
            Verdict::Deny { key, .. } => key.as_ref(),
        }
    }

    /// The stable code of a denial; `None` for an allow.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Verdict::Allow { .. } => None,
            Verdict::Deny { code, .. } => Some(code.as_str()),
        }
    }

    /// What the policy added to an allow; empty for a denial.
    pub fn info(&self) -> &[(String, String)] {
        match self {
            Verdict::Allow { info, .. } => info,
            Verdict::Deny { .. } => &[],
        }
    }

    /// Why a denial; `None` for an allow.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Allow { .. } => None,
            Verdict::Deny { reason, .. } => Some(reason),
        }
    }

    /// The verdict as every JSON answer shows it (the CLI, `/v1/keys/verify`,
    /// the demo, `/auth`'s denials).
    pub fn view(&self) -> VerdictView<'_> {
        let key = self.key();
        VerdictView {
            decision: if self.is_allow() { "allow" } else { "deny" },
            code: self.code(),
            reason: self.reason(),
            key_id: key.map(|k| k.key_id.as_str()),
            owner: key.map(|k| k.owner.as_str()),
            kind: key.map(|k| k.kind),
            info: self
                .info()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect(),
        }
    }
}

/// The one JSON shape of a verdict.
#[derive(Debug, Serialize)]
pub struct VerdictView<'a> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The denial's code.
    pub code: Option<&'static str>,
    /// The denial's reason.
    pub reason: Option<&'a str>,
    /// The key's id, when one was found.
    pub key_id: Option<&'a str>,
    /// The key's identity.
    pub owner: Option<&'a str>,
    /// The key's kind.
    pub kind: Option<KeyKind>,
    /// The policy's allow info.
    pub info: BTreeMap<&'a str, &'a str>,
}
