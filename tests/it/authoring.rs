//! Issue #12: a policy author's first hour. `keyhost policy new` writes a
//! crate that builds outside this repository and passes `policy test` as
//! written; `keyhost policy config` edits `[policy.config]`.

use std::path::Path;
use std::process::Command;

use crate::support::{Sandbox, policy};

#[test]
fn policy_config_sets_shows_and_unsets_settings_through_registry_writes() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let before = s.ok(&["list"])["revision"].as_u64().unwrap();
    let set = s.ok(&[
        "policy",
        "config",
        "set",
        "denied_services",
        "[\"legacy-billing\"]",
    ]);
    assert_eq!(set["revision"].as_u64(), Some(before + 1), "{set}");
    s.ok(&["policy", "config", "set", "max_key_age_days", "90"]);
    s.ok(&["policy", "config", "set", "note", "90", "--string"]);
    let shown = s.ok(&["policy", "config", "show"]);
    assert_eq!(
        shown["config"]["denied_services"][0], "legacy-billing",
        "{shown}"
    );
    assert_eq!(shown["config"]["max_key_age_days"], 90, "{shown}");
    assert_eq!(shown["config"]["note"], "90", "{shown}");

    // The example policy reads them.
    let example = policy("keyhost_policy_example.wasm");
    let example = example.to_str().unwrap();
    let check = |service: &str| s.decide(&key, &["--policy", example, "--service", service]);
    assert_eq!(check("legacy-billing"), "denied");
    assert_eq!(check("billing"), "allow");

    // Other writes keep them; unsetting the last one drops the table.
    s.create(&["--as", "user:bob", "--name", "later"]);
    for name in ["denied_services", "max_key_age_days", "note"] {
        s.ok(&["policy", "config", "unset", name]);
    }
    assert_eq!(check("legacy-billing"), "allow");
    assert!(
        !s.registry_text().contains("[policy"),
        "{}",
        s.registry_text()
    );
    assert_eq!(
        s.ok(&["policy", "config", "show"])["config"],
        serde_json::json!({})
    );

    let missing = s.run(&["policy", "config", "unset", "nothing"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let bad = s.run(&["policy", "config", "set", "a b", "1"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// The workspace's target folder, for the new crate's build: its
/// dependencies (wit-bindgen) are compiled once for every run of the test.
fn shared_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/policy-new")
        .to_path_buf()
}

#[test]
fn a_new_policy_crate_builds_outside_the_repository_and_passes_its_vectors() {
    let outside = tempfile::tempdir().unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(
        !outside
            .path()
            .starts_with(workspace.canonicalize().unwrap()),
        "the temporary folder must be outside the repository"
    );
    let s = Sandbox::bare();
    let dir = outside.path().join("my-policy");
    let created = s.ok(&["policy", "new", dir.to_str().unwrap()]);
    assert_eq!(created["crate"], "my-policy", "{created}");
    assert!(s.run(&["policy", "new", dir.to_str().unwrap()]).code == 2);

    let mut cargo = Command::new("cargo");
    cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(shared_target())
        .current_dir(&dir);
    // What the test run sets for the host build must not reach this one.
    for name in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(name);
    }
    let output = cargo.output().expect("run cargo");
    assert!(
        output.status.success(),
        "the new crate does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = shared_target().join("wasm32-wasip2/release/my_policy.wasm");
    let vectors = dir.join("vectors/default-policy.json");
    let run = s.run(&[
        "policy",
        "test",
        wasm.to_str().unwrap(),
        vectors.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["passed"].as_u64().unwrap() >= 50, "{report}");
}
