//! A misbehaving policy for keyhost's own tests. What it does is chosen by
//! the requested service, so one component covers every failure:
//! `trap` panics, `loop` never returns, `grow` allocates without end and
//! `recurse` recurses without end. Any other service is allowed.

use keyhost_policy_sdk::{Decision, Guest, Identity, KeyRecord, Request};

struct HostilePolicy;

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    // black_box keeps the recursion from being turned into a loop.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

impl Guest for HostilePolicy {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn validate(_key: KeyRecord, _identity: Identity, request: Request) -> Decision {
        match request.service.as_deref() {
            Some("trap") => panic!("hostile policy: trap on purpose"),
            Some("loop") => loop {
                std::hint::black_box(0u8);
            },
            Some("grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("recurse") => {
                recurse(std::hint::black_box(0));
                Decision::Allow(Vec::new())
            }
            _ => Decision::Allow(Vec::new()),
        }
    }
}

keyhost_policy_sdk::export!(HostilePolicy with_types_in keyhost_policy_sdk::bindings);
