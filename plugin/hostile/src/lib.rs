//! A misbehaving policy for keyhost's own tests. What it does is chosen by
//! the requested service, so one component covers every case:
//!
//! - `trap` panics; `loop` never returns; `grow` allocates without end;
//!   `recurse` recurses without end; `big-message` denies with a 100 MB
//!   message; `every-tenth` traps on every tenth call of an instance;
//! - `read-file`, `socket` and `env` try to reach a file, the network and
//!   the environment, and allow only if they got something: keyhost grants
//!   none of them, so those checks must be denied;
//! - `sleep` sleeps an hour through a clock's pollable and `block`,
//!   `poll-sleep` an hour through `wasi:io/poll` (libc's `poll`), then both
//!   allow; `sleep-forever` sleeps in a loop;
//! - `echo` denies with the previous caller's key id, name, owner, address
//!   and path, which it keeps in a static;
//! - `reserved-not-found`, `reserved-rate-limited` and
//!   `reserved-policy-error` deny with a code only keyhost may give;
//! - `exit` calls `exit`;
//! - `info` allows with info pairs, one of them a name no header can carry
//!   and one a value with a terminal escape.
//!
//! Any other service is allowed. `configure` does as the `hostile` setting
//! of `[policy.config]` says: `sleep`, `poll-sleep` or `sleep-forever` as
//! above (then it takes the settings), or `refuse`.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use keyhost_policy_sdk::{
    Decision, Deny, DenyCode, Guest, Identity, KeyRecord, Request, deny, rules,
};

struct HostilePolicy;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static PREVIOUS_CALLER: RefCell<String> = const { RefCell::new(String::new()) };
}

unsafe extern "C" {
    /// wasi-libc's `poll`, which waits through `wasi:io/poll`.
    fn poll(fds: *mut std::ffi::c_void, count: usize, timeout_ms: i32) -> i32;
}

const AN_HOUR: Duration = Duration::from_secs(3600);

/// Sleeps as `how` says; false if `how` is no way of sleeping.
fn sleep(how: &str) -> bool {
    match how {
        "sleep" => std::thread::sleep(AN_HOUR),
        // SAFETY: no descriptors are passed, so `poll` only waits.
        "poll-sleep" => unsafe {
            poll(std::ptr::null_mut(), 0, AN_HOUR.as_millis() as i32);
        },
        "sleep-forever" => loop {
            std::thread::sleep(AN_HOUR);
        },
        _ => return false,
    }
    true
}

/// Denies with what the previous call was about, and keeps this call's.
fn echo(key: &KeyRecord, request: &Request) -> Decision {
    let this_call = format!(
        "{} {} {} {} {}",
        key.id,
        key.name,
        key.owner,
        request.source_ip.as_deref().unwrap_or("-"),
        request.path.as_deref().unwrap_or("-")
    );
    let previous = PREVIOUS_CALLER.with(|cell| cell.replace(this_call));
    Decision::Deny(Deny {
        code: DenyCode::Denied,
        message: format!("previous caller: [{previous}]"),
    })
}

fn reserved(code: DenyCode) -> Decision {
    Decision::Deny(Deny {
        code,
        message: "a code only keyhost may give".into(),
    })
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
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let Some((_, how)) = config.iter().find(|(name, _)| name == "hostile") else {
            return Ok(());
        };
        if how == "refuse" {
            return Err("hostile policy: settings refused".into());
        }
        if sleep(how) {
            Ok(())
        } else {
            Err(format!("hostile = {how:?} is not known"))
        }
    }

    fn validate(key: KeyRecord, _identity: Identity, request: Request) -> Decision {
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
            Some(how @ ("sleep" | "poll-sleep" | "sleep-forever")) => {
                sleep(how);
                Decision::Allow(Vec::new())
            }
            Some("echo") => echo(&key, &request),
            Some("reserved-not-found") => reserved(DenyCode::NotFound),
            Some("reserved-rate-limited") => reserved(DenyCode::RateLimited),
            Some("reserved-policy-error") => reserved(DenyCode::PolicyError),
            Some("exit") => std::process::exit(3),
            _ => Decision::Allow(Vec::new()),
        }
    }
}

keyhost_policy_sdk::export!(HostilePolicy with_types_in keyhost_policy_sdk::bindings);
