//! The key lifecycle with IBM Cloud IAM's ownership rules, through
//! the real binary. Every refusal exits 1 and leaves the registry unchanged.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::Sandbox;

fn alice_key(s: &Sandbox) -> (String, String) {
    s.create(&["--as", "user:alice", "--name", "laptop"])
}

#[test]
fn only_the_owner_changes_or_deletes_a_key() {
    let s = Sandbox::new().with_people();
    let (id, key) = alice_key(&s);
    let id = id.as_str();
    for args in [
        vec!["lock", id, "--as", "user:bob"],
        vec!["disable", id, "--as", "user:bob"],
        vec!["enable", id, "--as", "user:bob"],
        vec!["unlock", id, "--as", "user:bob"],
        vec!["rotate", id, "--as", "user:bob"],
        vec!["update", id, "--as", "user:bob", "--name", "mine"],
        vec!["delete", id, "--as", "user:bob"],
    ] {
        let run = s.refused(&args);
        assert!(
            run.stderr.contains("only the owner"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(s.decide(&key, &[]), "allow");
    // The owner may do each of them.
    s.ok(&["update", id, "--as", "user:alice", "--name", "renamed"]);
    s.ok(&["lock", id, "--as", "user:alice"]);
    s.ok(&["unlock", id, "--as", "user:alice"]);
    s.ok(&["disable", id, "--as", "user:alice"]);
    s.ok(&["enable", id, "--as", "user:alice"]);
    s.ok(&["rotate", id, "--as", "user:alice"]);
    s.ok(&["delete", id, "--as", "user:alice"]);
}

#[test]
fn a_service_ids_keys_belong_to_the_user_who_owns_it() {
    let s = Sandbox::new().with_people();
    let run = s.refused(&[
        "create",
        "--as",
        "user:bob",
        "--name",
        "x",
        "--for",
        "service-id:billing",
    ]);
    assert!(run.stderr.contains("user:alice"), "{}", run.stderr);
    let (id, _) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "app",
        "--for",
        "service-id:billing",
    ]);
    s.refused(&["disable", &id, "--as", "user:bob"]);
    s.ok(&["disable", &id, "--as", "user:alice"]);
    // Nobody creates keys for another user either.
    s.refused(&[
        "create",
        "--as",
        "user:bob",
        "--name",
        "x",
        "--for",
        "user:alice",
    ]);
    // A service ID does not act for itself.
    s.refused(&["create", "--as", "service-id:billing", "--name", "x"]);
}

#[test]
fn lock_blocks_delete_rotate_update_and_disable_until_unlock() {
    let s = Sandbox::new().with_people();
    let (id, key) = alice_key(&s);
    let id = id.as_str();
    s.ok(&["lock", id, "--as", "user:alice"]);
    for args in [
        vec!["delete", id, "--as", "user:alice"],
        vec!["rotate", id, "--as", "user:alice"],
        vec!["update", id, "--as", "user:alice", "--name", "new"],
        vec!["disable", id, "--as", "user:alice"],
    ] {
        let run = s.refused(&args);
        assert!(run.stderr.contains("locked"), "{args:?}: {}", run.stderr);
    }
    // A locked key still authenticates.
    assert_eq!(s.decide(&key, &[]), "allow");
    s.ok(&["unlock", id, "--as", "user:alice"]);
    s.ok(&["update", id, "--as", "user:alice", "--name", "new"]);
    s.ok(&["disable", id, "--as", "user:alice"]);
    s.ok(&["enable", id, "--as", "user:alice"]);
    s.ok(&["delete", id, "--as", "user:alice"]);
}

#[test]
fn lock_at_creation() {
    let s = Sandbox::new().with_people();
    let (id, _) = s.create(&["--as", "user:alice", "--name", "kept", "--lock"]);
    s.refused(&["delete", &id, "--as", "user:alice"]);
    assert_eq!(s.ok(&["show", &id])["key"]["locked"], true);
}

#[test]
fn a_disabled_key_fails_until_enabled() {
    let s = Sandbox::new().with_people();
    let (id, key) = alice_key(&s);
    s.ok(&["disable", &id, "--as", "user:alice"]);
    assert_eq!(s.decide(&key, &[]), "disabled");
    assert_eq!(s.ok(&["show", &id])["key"]["state"], "disabled");
    s.ok(&["enable", &id, "--as", "user:alice"]);
    assert_eq!(s.decide(&key, &[]), "allow");
}

#[test]
fn one_classic_infrastructure_key_per_user_at_a_time() {
    let s = Sandbox::new().with_people();
    let classic = [
        "--as",
        "user:alice",
        "--name",
        "sl",
        "--kind",
        "classic-infrastructure",
    ];
    let (id, _) = s.create(&classic);
    let mut second = vec!["create"];
    second.extend_from_slice(&classic);
    let run = s.refused(&second);
    assert!(run.stderr.contains("only one"), "{}", run.stderr);
    // Another user still may.
    s.create(&[
        "--as",
        "user:bob",
        "--name",
        "sl",
        "--kind",
        "classic-infrastructure",
    ]);
    s.ok(&["delete", &id, "--as", "user:alice"]);
    s.create(&classic);
}

#[test]
fn keys_per_identity_are_capped_at_20_by_default_and_the_registry_can_set_another() {
    let s = Sandbox::new().with_people();
    for n in 0..20 {
        s.create(&["--as", "user:alice", "--name", &format!("k{n}")]);
    }
    let run = s.refused(&["create", "--as", "user:alice", "--name", "k20"]);
    assert!(
        run.stderr.contains("max_keys_per_identity = 20"),
        "{}",
        run.stderr
    );
    // Other identities have their own count.
    s.create(&[
        "--as",
        "user:alice",
        "--name",
        "app",
        "--for",
        "service-id:billing",
    ]);

    let small = Sandbox::bare();
    small.ok(&["init", "--max-keys-per-identity", "2"]);
    let small = small.with_people();
    small.create(&["--as", "user:bob", "--name", "a"]);
    small.create(&["--as", "user:bob", "--name", "b"]);
    small.refused(&["create", "--as", "user:bob", "--name", "c"]);
}

#[test]
fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
    let s = Sandbox::new().with_people();
    let (id, old) = alice_key(&s);
    let rotated = s.ok(&["rotate", &id, "--as", "user:alice", "--grace", "3s"]);
    let new = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(rotated["id"], id.as_str());
    assert_ne!(new, old);
    for secret in [&old, &new] {
        let (verdict, code) = s.check(secret, &[]);
        assert_eq!((verdict["decision"].as_str(), code), (Some("allow"), 0));
        assert_eq!(
            verdict["key_id"],
            id.as_str(),
            "both secrets map to the same key"
        );
    }
    assert!(s.ok(&["show", &id])["key"]["rotation_grace_until"].is_string());
    std::thread::sleep(Duration::from_millis(4100));
    assert_eq!(s.decide(&old, &[]), "not_found");
    assert_eq!(s.decide(&new, &[]), "allow");
}

#[test]
fn rotation_keeps_the_expiry_and_no_grace_outlives_the_key() {
    let s = Sandbox::new().with_people();
    let (id, old) = s.create(&["--as", "user:alice", "--name", "trial", "--expires", "2s"]);
    let expires_at = s.ok(&["show", &id])["key"]["expires_at"].clone();
    assert!(expires_at.is_string(), "{expires_at}");
    let rotated = s.ok(&["rotate", &id, "--as", "user:alice", "--grace", "1h"]);
    let new = rotated["key"].as_str().unwrap().to_string();
    let shown = &s.ok(&["show", &id])["key"];
    assert_eq!(
        shown["expires_at"], expires_at,
        "a rotation keeps the expiry"
    );
    assert_eq!(
        shown["rotation_grace_until"], expires_at,
        "the old secret's grace ends with the key"
    );
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(s.decide(&new, &[]), "expired");
    assert_eq!(s.decide(&old, &[]), "not_found");

    // An expiry set after the rotation ends the grace too.
    let (id, _) = s.create(&["--as", "user:alice", "--name", "later"]);
    s.ok(&["rotate", &id, "--as", "user:alice", "--grace", "1h"]);
    s.ok(&["update", &id, "--as", "user:alice", "--expires", "30m"]);
    let shown = &s.ok(&["show", &id])["key"];
    assert_eq!(
        shown["rotation_grace_until"], shown["expires_at"],
        "{shown}"
    );
}

#[test]
fn rotation_without_grace_stops_the_old_secret_at_once() {
    let s = Sandbox::new().with_people();
    let (id, old) = alice_key(&s);
    let new = s.ok(&["rotate", &id, "--as", "user:alice"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.decide(&old, &[]), "not_found");
    assert_eq!(s.decide(&new, &[]), "allow");
}

#[test]
fn update_changes_fields_and_never_widens_scopes() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "laptop", "--scope", "read"]);
    assert_eq!(s.decide(&key, &["--scope", "write"]), "insufficient_scope");
    let updated = s.ok(&[
        "update",
        &id,
        "--as",
        "user:alice",
        "--name",
        "desk",
        "--description",
        "office desk",
        "--scope",
        "write",
        "--allow-ip",
        "10.0.0.0/8",
        "--expires",
        "30d",
    ]);
    let view = &updated["key"];
    assert_eq!(view["name"], "desk");
    assert_eq!(view["description"], "office desk");
    assert_eq!(view["scopes"], serde_json::json!(["write"]));
    assert_eq!(view["allowed_ips"], serde_json::json!(["10.0.0.0/8"]));
    assert!(view["expires_at"].is_string());
    assert_eq!(
        s.decide(&key, &["--scope", "write", "--ip", "10.0.0.1"]),
        "allow"
    );
    let run = s.refused(&["update", &id, "--as", "user:alice", "--scope", "admin"]);
    assert!(run.stderr.contains("cannot gain a scope"), "{}", run.stderr);
}

#[test]
fn removing_a_service_id_removes_its_keys() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "app",
        "--for",
        "service-id:billing",
    ]);
    assert_eq!(s.decide(&key, &[]), "allow");
    // Its owner cannot be removed while it exists.
    s.refused(&["identity", "remove", "user:alice"]);
    let removed = s.ok(&["identity", "remove", "service-id:billing"]);
    assert_eq!(removed["deleted_keys"].as_array().unwrap().len(), 1);
    assert_eq!(s.decide(&key, &[]), "not_found");
}

#[test]
fn a_removed_users_keys_stay_invalid_when_the_name_returns() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:bob", "--name", "laptop"]);
    s.ok(&["identity", "remove", "user:bob"]);
    assert_eq!(s.decide(&key, &[]), "not_found");
    s.ok(&["identity", "add", "user:bob", "--scope", "read"]);
    assert_eq!(s.decide(&key, &[]), "not_found");
}

#[test]
fn scan_reports_exactly_the_valid_key_and_mark_leaked_applies_the_action() {
    for (action, expected) in [
        ("none", "leaked"),
        ("disable", "disabled"),
        ("delete", "not_found"),
    ] {
        let s = Sandbox::bare();
        s.ok(&["init", "--action-when-leaked", action]);
        let s = s.with_people();
        let (id, key) = alice_key(&s);
        let mut bad = key.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        let file = s.dir.path().join("config.env");
        std::fs::write(
            &file,
            format!("# settings\nNAME=demo\nAPI_KEY={key}\nOLD_KEY={bad}\nthe end\n"),
        )
        .unwrap();

        let scan = s.ok(&["scan", file.to_str().unwrap()]);
        let findings = scan["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{scan}");
        assert_eq!(findings[0]["key_id"], id.as_str());
        assert_eq!(findings[0]["line"], 3);
        let text = s.run(&["scan", file.to_str().unwrap()]);
        assert!(!text.stdout.contains(&key), "scan printed the secret");
        assert!(
            text.stdout.contains(&format!(":3: key {id}")),
            "{}",
            text.stdout
        );
        assert_eq!(
            s.decide(&key, &[]),
            "allow",
            "scanning alone changes nothing"
        );

        s.ok(&["scan", "--mark-leaked", file.to_str().unwrap()]);
        assert_eq!(
            s.decide(&key, &[]),
            expected,
            "action_when_leaked = {action}"
        );
    }
}

#[test]
fn scan_reads_stdin_when_given_no_paths() {
    let s = Sandbox::new().with_people();
    let (id, key) = alice_key(&s);
    let run = s.run_with(
        &["scan", "--json"],
        &format!("log line\ncurl -H 'X-API-Key: {key}'\n"),
        &[],
    );
    assert_eq!(run.code, 0);
    let findings = run.json()["findings"].as_array().unwrap().clone();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["key_id"], id.as_str());
    assert_eq!(findings[0]["file"], "<stdin>");
}

#[test]
fn every_change_bumps_the_revision_in_the_json() {
    let s = Sandbox::new();
    let mut seen = vec![s.ok(&["identity", "list"])["revision"].as_u64().unwrap()];
    seen.push(
        s.ok(&["identity", "add", "user:alice", "--scope", "read"])["revision"]
            .as_u64()
            .unwrap(),
    );
    let created = s.ok(&["create", "--as", "user:alice", "--name", "k"]);
    seen.push(created["revision"].as_u64().unwrap());
    let id = created["id"].as_str().unwrap();
    seen.push(
        s.ok(&["lock", id, "--as", "user:alice"])["revision"]
            .as_u64()
            .unwrap(),
    );
    seen.push(
        s.ok(&["unlock", id, "--as", "user:alice"])["revision"]
            .as_u64()
            .unwrap(),
    );
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    assert_eq!(s.ok(&["list"])["revision"], 4);
    assert_eq!(s.ok(&["show", id])["revision"], 4);
}

#[test]
fn list_and_show_give_state_times_scopes_and_ips() {
    let s = Sandbox::new().with_people();
    let (id, _) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "laptop",
        "--scope",
        "read",
        "--allow-ip",
        "10.0.0.0/8",
        "--expires",
        "1d",
    ]);
    s.create(&["--as", "user:bob", "--name", "bobs"]);
    let listed = s.ok(&["list", "--owner", "user:alice"]);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["id"], id.as_str());
    assert_eq!(key["state"], "active");
    for field in ["created_at", "updated_at", "expires_at"] {
        assert!(key[field].is_string(), "{field}: {key}");
    }
    assert_eq!(key["scopes"], serde_json::json!(["read"]));
    assert_eq!(key["allowed_ips"], serde_json::json!(["10.0.0.0/8"]));
    assert!(key.get("hash").is_none());
    assert_eq!(s.ok(&["list"])["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn unknown_ids_are_errors_not_refusals() {
    let s = Sandbox::new().with_people();
    assert_eq!(s.run(&["show", "kid_nope"]).code, 2);
    assert_eq!(s.run(&["delete", "kid_nope", "--as", "user:alice"]).code, 2);
    assert_eq!(
        s.run(&["create", "--as", "user:nobody", "--name", "x"])
            .code,
        2
    );
}

#[test]
fn eight_concurrent_writers_each_creating_50_keys_lose_nothing() {
    let s = Sandbox::bare();
    s.ok(&["init", "--max-keys-per-identity", "50"]);
    let users: Vec<String> = (0..8).map(|n| format!("user:writer{n}")).collect();
    for user in &users {
        s.ok(&["identity", "add", user]);
    }
    let registry = s.registry();
    let cache = s.cache_dir();
    let writers: Vec<_> = users
        .iter()
        .map(|user| {
            let (user, registry, cache) = (user.clone(), registry.clone(), cache.clone());
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| {
                        let output = std::process::Command::new(crate::support::KEYHOST)
                            .args([
                                "create",
                                "--as",
                                &user,
                                "--name",
                                &format!("k{n}"),
                                "--json",
                            ])
                            .env("KEYHOST_REGISTRY", &registry)
                            .env("KEYHOST_CACHE_DIR", &cache)
                            .output()
                            .unwrap();
                        assert!(
                            output.status.success(),
                            "{}",
                            String::from_utf8_lossy(&output.stderr)
                        );
                        let value: serde_json::Value =
                            serde_json::from_slice(&output.stdout).unwrap();
                        value["key"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let secrets: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(secrets.len(), 400);
    assert_eq!(s.ok(&["list"])["keys"].as_array().unwrap().len(), 400);
    assert_eq!(s.ok(&["list"])["revision"], 8 + 400);
    let mut ids = HashSet::new();
    for secret in &secrets {
        let (verdict, code) = s.check(secret, &[]);
        assert_eq!(code, 0, "{verdict}");
        ids.insert(verdict["key_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 400);
}

#[test]
fn identity_update_changes_scopes_and_a_key_loses_what_its_identity_lost() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "w", "--scope", "write"]);
    assert_eq!(s.decide(&key, &["--scope", "write"]), "allow");

    let out = s.ok(&[
        "identity",
        "update",
        "user:alice",
        "--remove-scope",
        "write",
    ]);
    assert_eq!(out["identity"]["scopes"], serde_json::json!(["read"]));
    assert_eq!(out["keys_narrowed"], serde_json::json!([id]));
    // The key still names `write`, but its identity no longer has it.
    assert_eq!(s.decide(&key, &["--scope", "write"]), "insufficient_scope");

    let out = s.ok(&["identity", "update", "user:alice", "--add-scope", "write"]);
    assert_eq!(
        out["identity"]["scopes"],
        serde_json::json!(["read", "write"])
    );
    assert_eq!(s.decide(&key, &["--scope", "write"]), "allow");

    let out = s.ok(&["identity", "update", "user:alice", "--scope", "admin"]);
    assert_eq!(out["identity"]["scopes"], serde_json::json!(["admin"]));
    let out = s.ok(&["identity", "update", "user:alice", "--no-scopes"]);
    assert_eq!(out["identity"]["scopes"], serde_json::json!([]));
}

#[test]
fn identity_update_refuses_what_would_not_read_back_and_unknown_identities() {
    let s = Sandbox::new().with_people();
    let before = s.registry_text();
    let run = s.run(&[
        "identity",
        "update",
        "user:alice",
        "--add-scope",
        "bad\u{7}scope",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("scope"), "{}", run.stderr);
    let run = s.run(&["identity", "update", "user:nobody", "--add-scope", "x"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown identity user:nobody"),
        "{}",
        run.stderr
    );
    let run = s.run(&["identity", "update", "user:alice"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nothing to change"), "{}", run.stderr);
    assert_eq!(s.registry_text(), before, "a refused update wrote");
}

#[test]
fn leak_marks_a_key_by_hand_and_only_its_owner_may() {
    let s = Sandbox::new().with_people();
    let (id, key) = alice_key(&s);
    s.ok(&["lock", &id, "--as", "user:alice"]);
    let run = s.refused(&["leak", &id, "--as", "user:bob"]);
    assert!(run.stderr.contains("only the owner"), "{}", run.stderr);
    assert_eq!(s.decide(&key, &[]), "allow");

    // A lock does not stop the owner from reporting the secret as out.
    let out = s.ok(&["leak", &id, "--as", "user:alice"]);
    assert_eq!(out["leaked"], id.as_str());
    assert_eq!(out["action_when_leaked"], "none");
    assert_eq!(s.decide(&key, &[]), "leaked");
    assert_eq!(s.ok(&["show", &id])["key"]["state"], "leaked");
}

#[test]
fn leak_follows_the_registrys_action_when_leaked() {
    let s = Sandbox::bare();
    s.ok(&["init", "--action-when-leaked", "delete"]);
    s.ok(&["identity", "add", "user:alice"]);
    let (id, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    assert_eq!(
        s.ok(&["leak", &id, "--as", "user:alice"])["action_when_leaked"],
        "delete"
    );
    assert_eq!(s.decide(&key, &[]), "not_found");
    assert_eq!(s.run(&["show", &id]).code, 2);
}
