//! The sandbox's holes. Each hostile policy is built in the
//! tests (plugin/hostile, or a component written in WAT in
//! tests/it/support/policy.wat) and each test asserts the fix: bounded time,
//! bounded memory, clean reasons, live key changes, no data across callers.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, Server, http, policy, wat_policy};
use serde_json::Value;

/// Generous bounds: the fixed host answers in milliseconds, the broken one
/// slept for an hour.
const BOUND: Duration = Duration::from_secs(20);

fn hostile() -> String {
    policy("keyhost_policy_hostile.wasm")
        .to_str()
        .unwrap()
        .to_string()
}

/// `/auth` for `key` and `service` at `path`: the status and the JSON body
/// of a denial (null for an allow).
fn ask(server: &Server, key: &str, service: &str, path: &str) -> (u16, Value) {
    let mut response = http()
        .get(&server.url(&format!("/auth{path}")))
        .header("x-api-key", key)
        .header("x-keyhost-service", service)
        .call()
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    (
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap_or_default(),
    )
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let mut response = http().get(&server.url(path)).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    (
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap_or_default(),
    )
}

/// Polls `probe` until it is true or `BOUND` passes.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < BOUND, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_config(s: &Sandbox, name: &str, value: &str) {
    s.ok(&["policy", "config", "set", name, value]);
}

#[test]
fn sleeps_in_validate_return_at_once_and_endless_ones_time_out_in_check() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let hostile = hostile();
    for (service, expected) in [
        ("sleep", "allow"),
        ("poll-sleep", "allow"),
        ("sleep-forever", "policy_error"),
    ] {
        let started = Instant::now();
        let decision = s.decide(&key, &["--policy", &hostile, "--service", service]);
        assert_eq!(decision, expected, "{service}");
        assert!(
            started.elapsed() < BOUND,
            "{service} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn sleeps_in_configure_are_bounded_in_check() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let hostile = hostile();
    for (how, expected) in [
        ("sleep", "allow"),
        ("poll-sleep", "allow"),
        ("sleep-forever", "policy_error"),
    ] {
        set_config(&s, "hostile", how);
        let started = Instant::now();
        assert_eq!(s.decide(&key, &["--policy", &hostile]), expected, "{how}");
        assert!(
            started.elapsed() < BOUND,
            "{how} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn sleeping_requests_do_not_outlive_their_bound_starve_healthz_or_block_shutdown() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&["--policy", &hostile()]);
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let askers: Vec<_> = (0..40)
            .map(|i| {
                let (server, key) = (&server, &key);
                let service = ["sleep", "poll-sleep", "sleep-forever"][i % 3];
                scope.spawn(move || ask(server, key, service, "").0)
            })
            .collect();
        let (health, _) = get_json(&server, "/healthz");
        assert_eq!(health, 200);
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    // sleep and poll-sleep allow; sleep-forever runs out of time.
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        27,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        13,
        "{statuses:?}"
    );
    let stopping = Instant::now();
    assert_eq!(server.stop(), 0);
    assert!(
        stopping.elapsed() < BOUND,
        "SIGTERM took {:?}",
        stopping.elapsed()
    );
}

/// The 99th percentile of `samples`.
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}

#[test]
fn looping_policy_calls_do_not_starve_healthz_or_other_checks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&["--policy", &hostile()]);
    let done = AtomicBool::new(false);
    let (health, checks, loops) = std::thread::scope(|scope| {
        // Twenty clients keep the policy looping until its time runs out.
        let loopers: Vec<_> = (0..20)
            .map(|_| {
                let (server, key, done) = (&server, &key, &done);
                scope.spawn(move || {
                    let mut calls = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        let since = Instant::now();
                        let (status, body) = ask(server, key, "loop", "");
                        calls.push((status, body, since.elapsed()));
                    }
                    calls
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let agent = http();
        let (mut health, mut checks) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let since = Instant::now();
            let status = agent.get(&server.url("/healthz")).call().unwrap().status();
            health.push(since.elapsed());
            assert_eq!(status.as_u16(), 200);
            let since = Instant::now();
            let status = agent
                .get(&server.url("/auth"))
                .header("x-api-key", &key)
                .header("x-keyhost-service", "databases")
                .call()
                .unwrap()
                .status();
            checks.push(since.elapsed());
            assert_eq!(status.as_u16(), 200, "a normal check under the loops");
            std::thread::sleep(Duration::from_millis(2));
        }
        done.store(true, Ordering::Relaxed);
        let loops: Vec<(u16, Value, Duration)> = loopers
            .into_iter()
            .flat_map(|looper| looper.join().unwrap())
            .collect();
        (health, checks, loops)
    });
    // Every loop failed closed when its 250 ms were up, in real time,
    // however many shared the server's threads.
    assert!(loops.len() >= 20, "{loops:?}");
    for (status, body, took) in &loops {
        assert_eq!(
            (*status, body["code"].as_str()),
            (403, Some("policy_error")),
            "{body}"
        );
        assert!(
            body["reason"]
                .as_str()
                .unwrap_or("")
                .contains("ran out of time"),
            "{body}"
        );
        assert!(
            *took < Duration::from_secs(1),
            "a looping call took {took:?}"
        );
    }
    let (health, checks) = (p99(health), p99(checks));
    eprintln!("p99 under 20 looping calls: /healthz {health:?}, a normal check {checks:?}");
    assert!(
        health <= Duration::from_millis(50),
        "/healthz p99 {health:?} under 20 looping calls"
    );
    assert!(
        checks <= Duration::from_millis(50),
        "a normal check's p99 {checks:?} under 20 looping calls"
    );
}

#[test]
fn key_changes_go_live_while_the_policy_sleeps_in_or_refuses_its_settings() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&["--policy", &hostile()]);
    assert_eq!(ask(&server, &key, "databases", "").0, 200);

    // A sleep in configure, swapped in by the reload, returns at once.
    set_config(&s, "hostile", "sleep");
    let revision = s.ok(&["list"])["revision"].as_u64().unwrap();
    eventually("the reload with a sleeping configure", || {
        get_json(&server, "/healthz").1["revision"] == revision
    });
    assert_eq!(ask(&server, &key, "databases", "").0, 200);

    // An endless one and a refusal: checks fail closed, /healthz says why,
    // and key changes still go live.
    for (how, why) in [
        ("sleep-forever", "ran out of time"),
        ("refuse", "settings refused"),
    ] {
        set_config(&s, "hostile", how);
        eventually("the refusal to show on /healthz", || {
            let (status, body) = get_json(&server, "/healthz");
            status == 503
                && body["status"] == "policy_error"
                && body["reason"].as_str().unwrap_or("").contains(why)
        });
        let (status, body) = ask(&server, &key, "databases", "");
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("policy_error")),
            "{how}"
        );
    }
    s.ok(&["delete", &id, "--as", "user:alice"]);
    eventually("the deletion to reach serve", || {
        ask(&server, &key, "databases", "").0 == 401
    });
    let revision = s.ok(&["list"])["revision"].as_u64().unwrap();
    assert_eq!(get_json(&server, "/healthz").1["revision"], revision);

    // Settings the policy takes again bring checks back.
    s.ok(&["policy", "config", "unset", "hostile"]);
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k2"]);
    eventually("the policy to take its settings again", || {
        get_json(&server, "/healthz").0 == 200 && ask(&server, &key, "databases", "").0 == 200
    });
}

#[test]
fn memory_is_bounded_for_all_of_an_instances_memories_together() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let grow = |memories: usize| -> String {
        (1..=memories)
            .map(|m| format!("(drop (memory.grow {m} (i32.const 128)))\n"))
            .collect()
    };
    // 15 more memories of 8 MiB each: 120 MiB in all, over the 64 MiB.
    let many = s.dir.path().join("many-memories.wasm");
    wat_policy(&many, 15, &grow(15), "");
    let (verdict, code) = s.check(&key, &["--policy", many.to_str().unwrap()]);
    assert_eq!((verdict["code"].as_str(), code), (Some("policy_error"), 1));
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("64 MiB in all"),
        "{verdict}"
    );
    // Three of them, 24 MiB in all, fit.
    let few = s.dir.path().join("few-memories.wasm");
    wat_policy(&few, 3, &grow(3), "");
    assert_eq!(
        s.decide(&key, &["--policy", few.to_str().unwrap()]),
        "allow"
    );
}

/// The text a terminal must never get from a policy.
fn assert_clean(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || ('\u{202A}'..='\u{202E}').contains(&c)),
        "unclean: {text:?}"
    );
}

#[test]
fn a_trap_in_a_function_with_a_long_hostile_name_gives_a_short_clean_reason() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let name = "\\1b]0;pwned\\07\\1b[2J\\0afake line\\u{202e}gnp.exe".repeat(4000);
    let evil = format!("(func $evil (@name \"{name}\") (call $exit (i32.const 1)))");
    let path = s.dir.path().join("long-name.wasm");
    wat_policy(&path, 0, "(call $evil)", &evil);
    let args = ["check", "--policy", path.to_str().unwrap()];
    let json = s.run_with(&[&args[..], &["--json"]].concat(), &format!("{key}\n"), &[]);
    let verdict = json.json();
    assert_eq!(verdict["code"], "policy_error", "{verdict}");
    let reason = verdict["reason"].as_str().unwrap();
    assert!(reason.len() < 1200, "{} bytes", reason.len());
    assert_clean(reason);
    // The cause comes before the backtrace, which is cut.
    assert!(reason.contains("exit status 1"), "{reason}");
    assert!(
        reason.contains("pwned") && reason.ends_with("..."),
        "{reason}"
    );
    let text = s.run_with(&args, &format!("{key}\n"), &[]);
    assert_eq!(text.code, 1);
    assert!(
        text.stderr.len() < 2048,
        "{} bytes on stderr",
        text.stderr.len()
    );
    assert_clean(&text.stderr);
}

#[test]
fn a_policys_static_state_never_reaches_another_caller() {
    let s = Sandbox::new().with_people();
    let (alice_id, alice) = s.create(&["--as", "user:alice", "--name", "alice-key"]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "bob-key"]);
    let server = s.serve(&["--policy", &hostile()]);
    for _ in 0..3 {
        let (status, _) = ask(&server, &alice, "echo", "/private?token=alpha");
        assert_eq!(status, 403);
        let (_, body) = ask(&server, &bob, "echo", "");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            !reason.contains(&alice_id)
                && !reason.contains("token=alpha")
                && !reason.contains("alice"),
            "bob saw alice's request: {reason}"
        );
        assert!(reason.contains("previous caller: []"), "{reason}");
    }
    // The same caller may meet its own earlier request.
    ask(&server, &alice, "echo", "/again");
    let (_, body) = ask(&server, &alice, "echo", "");
    assert!(
        body["reason"].as_str().unwrap().contains("/again"),
        "{body}"
    );
}

#[test]
fn codes_reserved_for_keyhost_become_denied() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let hostile = hostile();
    let services = [
        "reserved-not-found",
        "reserved-rate-limited",
        "reserved-policy-error",
    ];
    for service in services {
        assert_eq!(
            s.decide(&key, &["--policy", &hostile, "--service", service]),
            "denied",
            "{service}"
        );
    }
    let server = s.serve(&["--policy", &hostile]);
    for service in services {
        let (status, body) = ask(&server, &key, service, "");
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("denied")),
            "{service}"
        );
    }
    let (_, metrics) = {
        let mut response = http().get(&server.url("/metrics")).call().unwrap();
        (0, response.body_mut().read_to_string().unwrap())
    };
    assert!(
        metrics.contains("keyhost_policy_errors_total 0"),
        "{metrics}"
    );
}

#[test]
fn the_instance_pool_is_capped_and_counted_after_a_burst() {
    let s = Sandbox::new().with_people();
    let keys: Vec<String> = (0..6)
        .map(|i| {
            s.create(&["--as", "user:alice", "--name", &format!("k{i}")])
                .1
        })
        .collect();
    let server = s.serve(&[]);
    std::thread::scope(|scope| {
        for i in 0..60 {
            let (server, key) = (&server, &keys[i % keys.len()]);
            scope.spawn(move || assert_eq!(ask(server, key, "databases", "").0, 200));
        }
    });
    let mut response = http().get(&server.url("/metrics")).call().unwrap();
    let metrics = response.body_mut().read_to_string().unwrap();
    let gauge = |state: &str| -> i64 {
        let line = format!("keyhost_policy_instances{{state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("busy"), 0, "{metrics}");
    let idle = gauge("idle");
    assert!((1..=4).contains(&idle), "{idle} idle instances kept");
}

#[test]
fn a_cache_folder_others_can_write_is_not_used() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    assert_eq!(s.decide(&key, &[]), "allow");
    let folder = s.cache_dir().join("policies");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = s.run_with(&["check"], &format!("{key}\n"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("writable by its group or by others"),
        "{}",
        run.stderr
    );
}

#[test]
fn inspect_exits_2_for_a_refused_component_and_names_a_file_that_is_not_wasm() {
    let s = Sandbox::bare();
    let text = s.dir.path().join("policy.wasm");
    std::fs::write(&text, "#!/bin/sh\necho allow\n").unwrap();
    let run = s.run(&["policy", "inspect", text.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not WebAssembly"), "{}", run.stderr);
    assert!(!run.stderr.contains("0x61"), "{}", run.stderr);
    let module = s.dir.path().join("module.wasm");
    std::fs::write(&module, wat::parse_str("(module)").unwrap()).unwrap();
    let run = s.run(&["policy", "inspect", module.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("core WebAssembly module"),
        "{}",
        run.stderr
    );
}
