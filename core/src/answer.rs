//! A policy's answer, made safe before keyhost acts on it: its texts go
//! through the sanitiser, and the deny codes only keyhost may give
//! (`DenyCode::is_keyhosts_own`) become `denied`.

use crate::text::{policy_pairs, policy_text};
use crate::verdict::{Decision, DenyCode};

/// `decision` with cleaned texts and no code reserved for keyhost.
pub fn safe_decision(decision: Decision) -> Decision {
    match decision {
        Decision::Allow(info) => Decision::Allow(policy_pairs(info)),
        Decision::Deny { code, message } => Decision::Deny {
            code: if code.is_keyhosts_own() {
                DenyCode::Denied
            } else {
                code
            },
            message: policy_text(&message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(code: DenyCode) -> Decision {
        Decision::Deny {
            code,
            message: "m\u{1b}[2J".into(),
        }
    }

    #[test]
    fn reserved_codes_become_denied_and_messages_are_cleaned() {
        for code in [
            DenyCode::NotFound,
            DenyCode::Malformed,
            DenyCode::RateLimited,
            DenyCode::PolicyError,
        ] {
            assert_eq!(
                safe_decision(deny(code)),
                Decision::Deny {
                    code: DenyCode::Denied,
                    message: "m [2J".into()
                }
            );
        }
        assert!(matches!(
            safe_decision(deny(DenyCode::Expired)),
            Decision::Deny {
                code: DenyCode::Expired,
                ..
            }
        ));
    }
}
