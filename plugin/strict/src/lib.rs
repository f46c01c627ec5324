//! A stricter policy: the default rules, and every key must also have an
//! expiry and an IP allow-list. It shows that swapping the `.wasm` file swaps
//! the decision without rebuilding keyhost.

use std::cell::RefCell;

use keyhost_policy_sdk::{
    Decision, Guest, Identity, KeyRecord, Request, default_decision, deny, rules,
};

thread_local! {
    static SETTINGS: RefCell<rules::Settings> = RefCell::new(rules::Settings::default());
}

struct StrictPolicy;

impl Guest for StrictPolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let settings = rules::Settings::from_pairs(&config)?;
        SETTINGS.with(|cell| *cell.borrow_mut() = settings);
        Ok(())
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        if key.expires_at.is_none() {
            return deny(rules::Deny::new(
                rules::DenyCode::Denied,
                "the strict policy accepts only keys with an expiry",
            ));
        }
        if key.allowed_ips.is_empty() {
            return deny(rules::Deny::new(
                rules::DenyCode::Denied,
                "the strict policy accepts only keys limited to some IP addresses",
            ));
        }
        SETTINGS.with(|cell| default_decision(&cell.borrow(), &key, &identity, &request))
    }
}

keyhost_policy_sdk::export!(StrictPolicy with_types_in keyhost_policy_sdk::bindings);
