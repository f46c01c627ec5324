//! A misbehaving policy for keyhost's own tests. What it does is chosen by
//! the requested service, so one component covers every case:
//!
//! - `trap` panics; `loop` never returns; `grow` allocates without end;
//!   `recurse` recurses without end; `big-message` denies with a 100 MB
//!   message; `every-tenth` traps on every tenth call of an instance;
//! - `read-file`, `socket` and `env` try to reach a file, the network and
//!   the environment, and allow only if they got something: keyhost grants
//!   none of them, so those checks must be denied.
//!
//! - `info` allows with info pairs, one of them a name no header can carry
//!   and one a value with a terminal escape.
//!
//! Any other service is allowed.

use std::cell::Cell;

use keyhost_policy_sdk::{Decision, Guest, Identity, KeyRecord, Request, deny, rules};

struct HostilePolicy;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    // black_box keeps the recursion from being turned into a loop.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

/// Allows when the attempt reached something, so a breach shows as an allow.
fn reached(what: &str, outcome: Result<String, String>) -> Decision {
    match outcome {
        Ok(found) => Decision::Allow(vec![(what.to_string(), found)]),
        Err(error) => deny(rules::Deny::new(
            rules::DenyCode::Denied,
            format!("{what} was out of reach: {error}"),
        )),
    }
}

impl Guest for HostilePolicy {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn validate(_key: KeyRecord, _identity: Identity, request: Request) -> Decision {
        let calls = CALLS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
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
            Some("big-message") => deny(rules::Deny::new(
                rules::DenyCode::Denied,
                "x".repeat(100 << 20),
            )),
            Some("every-tenth") if calls.is_multiple_of(10) => {
                panic!("hostile policy: call {calls} traps")
            }
            Some("read-file") => reached(
                "a file",
                std::fs::read_to_string("/etc/hostname")
                    .or_else(|_| std::fs::read_to_string("/etc/passwd"))
                    .map_err(|e| e.to_string()),
            ),
            Some("socket") => reached(
                "the network",
                std::net::TcpStream::connect("127.0.0.1:22")
                    .map(|_| "connected".to_string())
                    .map_err(|e| e.to_string()),
            ),
            Some("env") => {
                let vars: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
                let cwd = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                if vars.is_empty() && (cwd.is_empty() || cwd == "/") {
                    reached("the environment", Err("empty".into()))
                } else {
                    reached(
                        "the environment",
                        Ok(format!("{} variables, cwd {cwd}", vars.len())),
                    )
                }
            }
            Some("info") => Decision::Allow(vec![
                ("tier".into(), "gold".into()),
                ("bad name".into(), "x".into()),
                ("note".into(), "\u{1b}[2Jwiped".into()),
            ]),
            _ => Decision::Allow(Vec::new()),
        }
    }
}

keyhost_policy_sdk::export!(HostilePolicy with_types_in keyhost_policy_sdk::bindings);
