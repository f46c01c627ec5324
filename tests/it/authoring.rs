//! A policy author's first hour. `keyhost policy new` writes a
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
    let outside = outside_the_repository();
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
    passes_its_default_vectors(&s, &wasm, &dir);
}

/// `keyhost policy test` of the project's component against the default
/// vectors the project was given: every case passes.
fn passes_its_default_vectors(s: &Sandbox, wasm: &Path, dir: &Path) {
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

/// A temporary folder outside the repository, so a project's build cannot
/// lean on the checkout.
fn outside_the_repository() -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(
        !outside
            .path()
            .starts_with(workspace.canonicalize().unwrap()),
        "the temporary folder must be outside the repository"
    );
    outside
}

/// `policy new --lang LANG`, then the project's rules extended by `extend`
/// (a rule that denies the service `legacy`), then its own `build.sh`, run
/// from elsewhere: the component passes the default vectors as written and
/// the new rule decides in `keyhost check`.
fn a_new_project_builds_with_its_own_script(lang: &str, source: &str, extend: fn(&str) -> String) {
    // The tools' packages are then in npm's and pip's caches.
    crate::support::foreign::tools();
    let outside = outside_the_repository();
    let s = Sandbox::new().with_people();
    let dir = outside.path().join("my-policy");
    let created = s.ok(&["policy", "new", "--lang", lang, dir.to_str().unwrap()]);
    assert_eq!(created["language"], lang, "{created}");
    let wasm = dir.join("policy.wasm");
    assert_eq!(created["component"], wasm.to_str().unwrap(), "{created}");

    let policy = dir.join(source);
    let rules = std::fs::read_to_string(&policy).unwrap();
    let extended = extend(&rules);
    assert_ne!(extended, rules, "the test's edit must change {source}");
    std::fs::write(&policy, extended).unwrap();

    let build = Command::new(dir.join("build.sh"))
        .current_dir(outside.path())
        .output()
        .expect("run build.sh");
    assert!(
        build.status.success(),
        "the new project does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    passes_its_default_vectors(&s, &wasm, &dir);

    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let check = |service: &str| {
        s.decide(
            &key,
            &["--policy", wasm.to_str().unwrap(), "--service", service],
        )
    };
    assert_eq!(check("legacy"), "denied");
    assert_eq!(check("billing"), "allow");
}

#[test]
fn a_new_javascript_policy_project_builds_with_its_own_script_and_extends() {
    a_new_project_builds_with_its_own_script("js", "policy.js", |rules| {
        rules.replace(
            "export const validator = { configure, validate };",
            "const closed = { code: \"denied\", message: \"legacy is closed\" };\n\
             export const validator = {\n  configure,\n  validate: (key, identity, request) =>\n    \
             request.service === \"legacy\" ? { tag: \"deny\", val: closed } : validate(key, identity, request),\n};",
        )
    });
}

#[test]
fn a_new_python_policy_project_builds_with_its_own_script_and_extends() {
    a_new_project_builds_with_its_own_script("python", "policy.py", |rules| {
        rules.replace(
            "        # State first, then where the key may be used, then what it may do.\n",
            "        if request.service == \"legacy\":\n            \
             return Decision_Deny(Deny(DenyCode.DENIED, \"legacy is closed\"))\n        \
             # State first, then where the key may be used, then what it may do.\n",
        )
    });
}

/// A vector file of two cases for the example policy, which denies the
/// services its `denied_services` setting names.
const NARROWED_VECTORS: &str = r#"{
  "contract": "keyhost:policy@0.2.0",
  "defaults": {
    "key": {"id": "k", "name": "n", "kind": "user", "owner": "user:alice", "service": null,
            "scopes": [], "allowed_ips": [], "created_at": 1700000000, "expires_at": null,
            "disabled": false, "leaked": false, "locked": false},
    "identity": {"iam_id": "user:alice", "kind": "user", "owner": null, "scopes": ["read"]},
    "request": {"service": null, "scope": null, "source_ip": null, "method": null,
                "path": null, "attributes": [], "now": 1800000000}
  },
  "cases": [
    {"name": "the policy's own service is refused", "expect": {"decision": "deny", "code": "denied"}},
    {"name": "a case's own service wins", "request": {"service": "databases"},
     "expect": {"decision": "allow"}}
  ]
}"#;

#[test]
fn policy_test_runs_vectors_under_a_policys_own_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("vectors.json");
    std::fs::write(&vectors, NARROWED_VECTORS).unwrap();
    let own = dir.path().join("own.json");
    std::fs::write(
        &own,
        r#"{"defaults": {"config": {"denied_services": "[\"legacy\"]"},
                         "request": {"service": "legacy"}}}"#,
    )
    .unwrap();
    let example = policy("keyhost_policy_example.wasm");
    let s = Sandbox::bare();
    let test = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "test",
            example.to_str().unwrap(),
            vectors.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        s.run(&args)
    };

    // Without the policy's defaults, the first case names no service.
    let plain = test(&[]);
    assert_eq!(plain.code, 1, "{}{}", plain.stdout, plain.stderr);
    assert_eq!(plain.json()["failed"], 1, "{}", plain.stdout);

    let under = test(&["--defaults", own.to_str().unwrap()]);
    assert_eq!(under.code, 0, "{}{}", under.stdout, under.stderr);
    assert_eq!(under.json()["passed"], 2, "{}", under.stdout);

    // A misspelt object is named, with the file.
    std::fs::write(&own, r#"{"defaults": {"requests": {"service": "legacy"}}}"#).unwrap();
    let typo = test(&["--defaults", own.to_str().unwrap()]);
    assert_eq!(typo.code, 2, "{}", typo.stderr);
    assert!(typo.stderr.contains("own.json"), "{}", typo.stderr);
    assert!(typo.stderr.contains("requests"), "{}", typo.stderr);
}

#[test]
fn a_vector_with_the_wits_spelling_of_a_code_is_refused_naming_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("vectors.json");
    std::fs::write(
        &vectors,
        NARROWED_VECTORS.replace("\"code\": \"denied\"", "\"code\": \"wrong-service\""),
    )
    .unwrap();
    let example = policy("keyhost_policy_example.wasm");
    let run = Sandbox::bare().run(&[
        "policy",
        "test",
        example.to_str().unwrap(),
        vectors.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("vectors.json"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("\"wrong-service\" is the WIT's spelling"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\"wrong_service\""), "{}", run.stderr);
}
