//! keyhost's default policy: the key-kind table of DESIGN.md, disabled,
//! leaked and expired keys, scopes narrowed by the key, and IP allow-lists.

use std::cell::RefCell;

use keyhost_policy_sdk::{Decision, Guest, Identity, KeyRecord, Request, default_decision, rules};

thread_local! {
    // A component instance is single-threaded; `configure` runs before any
    // `validate` on a new instance.
    static SETTINGS: RefCell<rules::Settings> = RefCell::new(rules::Settings::default());
}

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let settings = rules::Settings::from_pairs(&config)?;
        SETTINGS.with(|cell| *cell.borrow_mut() = settings);
        Ok(())
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        SETTINGS.with(|cell| default_decision(&cell.borrow(), &key, &identity, &request))
    }
}

keyhost_policy_sdk::export!(DefaultPolicy with_types_in keyhost_policy_sdk::bindings);
