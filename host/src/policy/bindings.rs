//! Host types generated from `wit/`. They are never written by hand.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::keyhost::policy::types::{Deny, DenyCode, IdentityKind, KeyKind};

impl DenyCode {
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
}
