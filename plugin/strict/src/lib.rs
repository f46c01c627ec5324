//! A stricter policy: the default rules, and every key must also have an
//! expiry and an IP allow-list. It shows that swapping the `.wasm` file swaps
//! the decision without rebuilding keyhost.

use keyhost_policy_sdk::{
    Decision, Guest, Identity, KeyRecord, Request, configure_default_rules, default_decision, deny,
    rules,
};

struct StrictPolicy;

impl Guest for StrictPolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        configure_default_rules(&config)
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        let missing = if key.expires_at.is_none() {
            Some("the strict policy accepts only keys with an expiry")
        } else if key.allowed_ips.is_empty() {
            Some("the strict policy accepts only keys limited to some IP addresses")
        } else {
            None
        };
        match missing {
            Some(reason) => deny(rules::Deny::new(rules::DenyCode::Denied, reason)),
            None => default_decision(&key, &identity, &request),
        }
    }
}

keyhost_policy_sdk::export!(StrictPolicy with_types_in keyhost_policy_sdk::bindings);
