//! A policy's answer, made safe before keyhost acts on it: its texts go
//! through the sanitiser, and the deny codes only keyhost may give
//! (`not_found`, `malformed`, `rate_limited`, `policy_error`) become
//! `denied`. Those codes steer HTTP statuses (401, 429 with `Retry-After`)
//! and the policy-error metric, which a policy must not fake.

use super::bindings::{Decision, Deny, DenyCode};
use super::text::{policy_pairs, policy_text};

/// `decision` with cleaned texts and no code reserved for keyhost.
pub fn safe_decision(decision: Decision) -> Decision {
    match decision {
        Decision::Allow(info) => Decision::Allow(policy_pairs(info)),
        Decision::Deny(deny) => Decision::Deny(Deny {
            code: policy_code(deny.code),
            message: policy_text(&deny.message),
        }),
    }
}

/// The code as keyhost reports it: a code reserved for keyhost is `denied`.
fn policy_code(code: DenyCode) -> DenyCode {
    match code {
        DenyCode::NotFound
        | DenyCode::Malformed
        | DenyCode::RateLimited
        | DenyCode::PolicyError => DenyCode::Denied,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(code: DenyCode) -> Decision {
        Decision::Deny(Deny {
            code,
            message: "m\u{1b}[2J".into(),
        })
    }

    #[test]
    fn reserved_codes_become_denied_and_messages_are_cleaned() {
        for code in [
            DenyCode::NotFound,
            DenyCode::Malformed,
            DenyCode::RateLimited,
            DenyCode::PolicyError,
        ] {
            match safe_decision(deny(code)) {
                Decision::Deny(deny) => {
                    assert_eq!(deny.code, DenyCode::Denied);
                    assert_eq!(deny.message, "m [2J");
                }
                Decision::Allow(_) => unreachable!(),
            }
        }
        match safe_decision(deny(DenyCode::Expired)) {
            Decision::Deny(deny) => assert_eq!(deny.code, DenyCode::Expired),
            Decision::Allow(_) => unreachable!(),
        }
    }
}
