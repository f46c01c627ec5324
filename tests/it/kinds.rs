//! Key kinds, scopes, denials, policy swap, sandbox faults,
//! registry errors, secret storage and the compiled-policy cache, all
//! through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, policy};

#[test]
fn user_keys_reach_every_service_including_classic_infrastructure() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    assert_eq!(
        s.decide(&key, &["--service", "classic-infrastructure"]),
        "allow"
    );
    assert_eq!(s.decide(&key, &["--service", "databases"]), "allow");
}

#[test]
fn service_id_keys_do_not_reach_classic_infrastructure() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "app",
        "--for",
        "service-id:billing",
    ]);
    assert_eq!(s.decide(&key, &["--service", "databases"]), "allow");
    assert_eq!(
        s.decide(&key, &["--service", "classic-infrastructure"]),
        "wrong_service"
    );
}

#[test]
fn classic_infrastructure_keys_reach_only_classic_infrastructure() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "softlayer",
        "--kind",
        "classic-infrastructure",
    ]);
    assert_eq!(
        s.decide(&key, &["--service", "classic-infrastructure"]),
        "allow"
    );
    assert_eq!(s.decide(&key, &["--service", "databases"]), "wrong_service");
}

#[test]
fn service_specific_keys_reach_their_service_only() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "cos",
        "--kind",
        "service-specific",
        "--service",
        "object-storage",
    ]);
    assert_eq!(s.decide(&key, &["--service", "object-storage"]), "allow");
    assert_eq!(s.decide(&key, &["--service", "databases"]), "wrong_service");
    assert_eq!(
        s.decide(&key, &["--service", "classic-infrastructure"]),
        "wrong_service"
    );
    // A service ID can hold a service-specific key too.
    let (_, sid_key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "cos2",
        "--for",
        "service-id:billing",
        "--kind",
        "service-specific",
        "--service",
        "object-storage",
    ]);
    assert_eq!(
        s.decide(&sid_key, &["--service", "object-storage"]),
        "allow"
    );
    assert_eq!(
        s.decide(&sid_key, &["--service", "queues"]),
        "wrong_service"
    );
}

#[test]
fn a_key_cannot_gain_a_scope_its_identity_lacks() {
    let s = Sandbox::new().with_people();
    let run = s.refused(&[
        "create",
        "--as",
        "user:alice",
        "--name",
        "x",
        "--scope",
        "admin",
    ]);
    assert!(run.stderr.contains("cannot gain a scope"), "{}", run.stderr);
    // service-id:billing has only `read`.
    s.refused(&[
        "create",
        "--as",
        "user:alice",
        "--name",
        "x",
        "--for",
        "service-id:billing",
        "--scope",
        "write",
    ]);
}

#[test]
fn a_request_for_a_scope_the_key_lacks_is_insufficient_scope() {
    let s = Sandbox::new().with_people();
    let (_, narrow) = s.create(&["--as", "user:alice", "--name", "ro", "--scope", "read"]);
    assert_eq!(s.decide(&narrow, &["--scope", "read"]), "allow");
    assert_eq!(
        s.decide(&narrow, &["--scope", "write"]),
        "insufficient_scope"
    );
    let (_, wide) = s.create(&["--as", "user:alice", "--name", "rw"]);
    assert_eq!(s.decide(&wide, &["--scope", "write"]), "allow");
    assert_eq!(s.decide(&wide, &["--scope", "admin"]), "insufficient_scope");
}

#[test]
fn an_expired_key_is_expired() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "brief", "--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(s.decide(&key, &[]), "expired");
    let (_, lasting) = s.create(&["--as", "user:alice", "--name", "long", "--expires", "90d"]);
    assert_eq!(s.decide(&lasting, &[]), "allow");
}

#[test]
fn a_key_disabled_by_hand_in_the_toml_is_disabled() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    assert_eq!(s.decide(&key, &[]), "allow");
    let text = s.registry_text();
    let start = text
        .find(&format!("id = \"{id}\""))
        .expect("key in registry");
    let offset = text[start..]
        .find("disabled = false")
        .expect("disabled field")
        + start;
    let edited = format!(
        "{}disabled = true{}",
        &text[..offset],
        &text[offset + "disabled = false".len()..]
    );
    std::fs::write(s.registry(), edited).unwrap();
    assert_eq!(s.decide(&key, &[]), "disabled");
}

#[test]
fn check_reads_a_private_index_that_follows_even_a_same_size_edit() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    assert_eq!(s.decide(&key, &[]), "allow");
    let indexes: Vec<_> = std::fs::read_dir(s.cache_dir().join("registries"))
        .expect("check keeps a registry index in the cache folder")
        .map(|entry| entry.unwrap().path())
        .collect();
    // The snapshot, the stamp of its version last checked whole, and the
    // lock its writers take.
    assert_eq!(indexes.len(), 3, "{indexes:?}");
    for file in &indexes {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    // In place, same length: only the file's times tell the index it is stale.
    let text = s.registry_text();
    let edited = text.replacen("disabled = false", "disabled = true ", 1);
    assert_eq!(edited.len(), text.len());
    std::fs::write(s.registry(), edited).unwrap();
    assert_eq!(s.decide(&key, &[]), "disabled");
}

#[test]
fn a_source_ip_outside_the_keys_cidrs_is_ip_not_allowed() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "office",
        "--allow-ip",
        "10.0.0.0/8",
        "--allow-ip",
        "2001:db8::/32",
    ]);
    assert_eq!(s.decide(&key, &["--ip", "10.20.30.40"]), "allow");
    assert_eq!(s.decide(&key, &["--ip", "2001:db8::7"]), "allow");
    assert_eq!(s.decide(&key, &["--ip", "192.0.2.7"]), "ip_not_allowed");
    assert_eq!(s.decide(&key, &[]), "ip_not_allowed");
}

#[test]
fn a_changed_character_is_malformed_and_an_unknown_key_is_not_found() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let mut changed: Vec<char> = key.chars().collect();
    let middle = changed.len() - 10;
    changed[middle] = if changed[middle] == 'x' { 'y' } else { 'x' };
    let changed: String = changed.into_iter().collect();
    assert_eq!(s.decide(&changed, &[]), "malformed");
    assert_eq!(s.decide("not a key at all", &[]), "malformed");

    // A well-formed key of another registry with the same prefix.
    let other = Sandbox::new().with_people();
    let (_, foreign) = other.create(&["--as", "user:alice", "--name", "elsewhere"]);
    assert_eq!(s.decide(&foreign, &[]), "not_found");
}

#[test]
fn the_key_can_come_from_keyhost_key_and_never_from_argv() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let run = s.run_with(&["check"], "", &[("KEYHOST_KEY", &key)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("allow kid_"), "{}", run.stdout);
    assert!(run.stdout.contains("user:alice"), "{}", run.stdout);
    // There is no argument that takes a key.
    let run = s.run(&["check", &key]);
    assert_eq!(run.code, 2);
    assert!(
        !run.stderr.contains(&key),
        "the secret was echoed in an error"
    );
    // No key at all is an error, not a denial.
    let run = s.run_with(&["check"], "\n", &[]);
    assert_eq!(run.code, 2);
}

#[test]
fn check_text_output_is_allow_or_deny_code() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let run = s.run_with(&["check", "--service", "classic-infrastructure"], &key, &[]);
    assert_eq!(run.stdout.trim(), format!("allow {id} user:alice"));
    let run = s.run_with(&["check", "--scope", "admin"], &key, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout.trim(), "deny insufficient_scope");
}

#[test]
fn swapping_the_policy_file_swaps_the_decision() {
    let s = Sandbox::new().with_people();
    let strict = policy("keyhost_policy_strict.wasm");
    let strict = strict.to_str().unwrap();
    let (_, plain) = s.create(&["--as", "user:alice", "--name", "plain"]);
    assert_eq!(s.decide(&plain, &[]), "allow");
    assert_eq!(s.decide(&plain, &["--policy", strict]), "denied");
    let (_, fenced) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "fenced",
        "--expires",
        "30d",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    assert_eq!(
        s.decide(&fenced, &["--policy", strict, "--ip", "10.0.0.1"]),
        "allow"
    );
}

/// Runs a check through the hostile policy; returns the verdict and how long
/// the process took.
fn hostile_check(s: &Sandbox, key: &str, behaviour: &str) -> (serde_json::Value, i32, Duration) {
    let hostile = policy("keyhost_policy_hostile.wasm");
    let started = Instant::now();
    let (verdict, code) = s.check(
        key,
        &[
            "--policy",
            hostile.to_str().unwrap(),
            "--service",
            behaviour,
        ],
    );
    (verdict, code, started.elapsed())
}

#[test]
fn a_trapping_or_looping_or_hoarding_policy_fails_closed_with_policy_error() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    for behaviour in ["trap", "loop", "grow", "recurse"] {
        let (verdict, code, took) = hostile_check(&s, &key, behaviour);
        assert_eq!(verdict["decision"], "deny", "{behaviour}: {verdict}");
        assert_eq!(verdict["code"], "policy_error", "{behaviour}: {verdict}");
        assert_eq!(code, 1, "{behaviour}");
        // The bound is the sandbox's call timeout (250 ms) plus process
        // start-up; a generous margin keeps a loaded machine from failing it.
        assert!(took < Duration::from_secs(20), "{behaviour} took {took:?}");
    }
    // The same policy decides normally when it behaves.
    let (verdict, code, _) = hostile_check(&s, &key, "databases");
    assert_eq!((verdict["decision"].as_str(), code), (Some("allow"), 0));
}

#[test]
fn a_malformed_registry_is_an_error_with_its_line_and_is_left_unchanged() {
    let s = Sandbox::new().with_people();
    let mut text = s.registry_text();
    text.push_str("\n[[identity]]\niam_id = \"user:carol\"\nscopes = [\"read\"\ncreated_at = 2026-01-01T00:00:00Z\n");
    std::fs::write(s.registry(), &text).unwrap();
    let broken_line = text
        .lines()
        .position(|l| l == "scopes = [\"read\"")
        .unwrap()
        + 1;
    for args in [
        vec!["list"],
        vec!["create", "--as", "user:alice", "--name", "x"],
        vec!["identity", "add", "user:dave"],
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&s.registry().display().to_string()),
            "{}",
            run.stderr
        );
        let line = format!("line {}", broken_line + 1);
        let line_before = format!("line {broken_line}");
        assert!(
            run.stderr.contains(&line) || run.stderr.contains(&line_before),
            "no line number in: {}",
            run.stderr
        );
        assert_eq!(
            s.registry_text(),
            text,
            "{args:?} changed a malformed registry"
        );
    }
    let run_check = s.run_with(&["check"], "kh_usr_x\n", &[]);
    assert_eq!(run_check.code, 2);
}

#[test]
fn a_registry_with_an_unknown_field_names_it() {
    let s = Sandbox::new().with_people();
    let text = s
        .registry_text()
        .replacen("prefix =", "colour = \"blue\"\nprefix =", 1);
    std::fs::write(s.registry(), &text).unwrap();
    let run = s.run(&["list"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
    assert!(run.stderr.contains("line"), "{}", run.stderr);
}

#[test]
fn the_secret_is_never_stored_and_the_registry_is_mode_0600() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let text = s.registry_text();
    assert!(text.contains(&id));
    assert!(!text.contains(&key), "the secret is in the registry");
    let random_part = &key[key.len() - 36..];
    assert!(
        !text.contains(random_part),
        "part of the secret is in the registry"
    );
    let mode = std::fs::metadata(s.registry())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // list and show never print a secret or a hash.
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("hash = \""))
        .map(|h| h.trim_end_matches('"').to_string())
        .expect("hash line");
    for args in [
        vec!["list"],
        vec!["show", id.as_str()],
        vec!["list", "--json"],
        vec!["show", id.as_str(), "--json"],
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 0);
        assert!(
            !run.stdout.contains(&key) && !run.stdout.contains(&hash),
            "{args:?} leaked: {}",
            run.stdout
        );
    }
}

#[test]
fn init_refuses_to_overwrite_a_registry() {
    let s = Sandbox::new();
    let before = s.registry_text();
    let run = s.run(&["init"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(s.registry_text(), before);
}

#[test]
fn the_compiled_policy_cache_is_used_and_a_corrupt_entry_is_recompiled() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let debug = [("KEYHOST_LOG", "debug")];
    let first = s.run_with(&["check"], &key, &debug);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains("stored in cache"), "{}", first.stderr);
    // The artifact, and its digest beside it.
    let mut entries: Vec<_> = std::fs::read_dir(s.cache_dir().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].to_string_lossy().ends_with(".cwasm"));
    assert_eq!(
        entries[1].as_os_str().to_string_lossy(),
        format!("{}.sha256", entries[0].display())
    );

    let second = s.run_with(&["check"], &key, &debug);
    assert_eq!(second.code, 0);
    assert!(
        second.stderr.contains("loaded from cache"),
        "{}",
        second.stderr
    );

    // Flip bytes in the middle of the compiled code.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0xff;
    }
    std::fs::write(&entries[0], &bytes).unwrap();
    let third = s.run_with(&["check"], &key, &debug);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(third.stderr.contains("corrupt"), "{}", third.stderr);
    assert!(
        !third.stderr.contains("loaded from cache"),
        "{}",
        third.stderr
    );
    assert!(third.stderr.contains("stored in cache"), "{}", third.stderr);
    let fourth = s.run_with(&["check"], &key, &debug);
    assert!(
        fourth.stderr.contains("loaded from cache"),
        "{}",
        fourth.stderr
    );

    // An artifact whose digest is gone is compiled again, not trusted; and
    // an entry of the first layout (its digest inside) is removed then.
    let first_layout = entries[0].to_string_lossy().replace("-2.cwasm", ".cwasm");
    std::fs::write(&first_layout, b"KHPOLC01 an entry of the first layout").unwrap();
    std::fs::remove_file(&entries[1]).unwrap();
    let fifth = s.run_with(&["check"], &key, &debug);
    assert_eq!(fifth.code, 0, "{}", fifth.stderr);
    assert!(
        !fifth.stderr.contains("loaded from cache"),
        "{}",
        fifth.stderr
    );
    assert!(fifth.stderr.contains("stored in cache"), "{}", fifth.stderr);
    assert!(entries[1].exists());
    assert!(!std::path::Path::new(&first_layout).exists());
}

/// The commands a `--help` page lists under "Commands:", but `help`.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_and_subcommand_has_help() {
    let s = Sandbox::bare();
    let top = s.run(&["--help"]);
    let mut pending: Vec<Vec<String>> = listed_commands(&top.stdout)
        .into_iter()
        .map(|name| vec![name])
        .collect();
    assert!(pending.len() >= 20, "{}", top.stdout);
    let mut seen = 0;
    while let Some(command) = pending.pop() {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let run = s.run(&args);
        assert_eq!(run.code, 0, "{command:?} --help: {}", run.stderr);
        assert!(run.stdout.contains("Usage"), "{command:?}: {}", run.stdout);
        for sub in listed_commands(&run.stdout) {
            let mut deeper = command.clone();
            deeper.push(sub);
            pending.push(deeper);
        }
        seen += 1;
    }
    assert!(seen >= 30, "only {seen} commands have help");
}

#[test]
fn the_demo_shows_allows_and_denials_with_their_codes() {
    let s = Sandbox::bare();
    let run = s.run(&["demo", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let steps = run.json()["steps"].as_array().unwrap().clone();
    let codes: Vec<String> = steps
        .iter()
        .map(|step| step["code"].as_str().unwrap_or("allow").to_string())
        .collect();
    assert_eq!(
        codes,
        [
            "allow",
            "wrong_service",
            "allow",
            "insufficient_scope",
            "allow",
            "wrong_service",
            "allow",
            "ip_not_allowed",
            "malformed"
        ]
    );
}
