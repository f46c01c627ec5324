//! keyhost's default policy: the key-kind table of docs/src/design.md, disabled,
//! leaked and expired keys, scopes narrowed by the key, and IP allow-lists.

use keyhost_policy_sdk::{
    Decision, Guest, Identity, KeyRecord, Request, configure_default_rules, default_decision,
};

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        configure_default_rules(&config)
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        default_decision(&key, &identity, &request)
    }
}

keyhost_policy_sdk::export!(DefaultPolicy with_types_in keyhost_policy_sdk::bindings);
