//! The policy contract from the outside: `keyhost policy inspect`, `keyhost
//! policy test` with the repo's vector files, and the configurable example
//! policy driven by the registry's `[policy.config]`.

use std::path::{Path, PathBuf};

use crate::support::{Sandbox, policy};
use serde_json::Value;

fn vectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(name)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `keyhost policy test --json` of a component against a vector file.
fn policy_test(component: &Path, vector_file: &Path) -> (Value, i32) {
    let s = Sandbox::bare();
    let run = s.run(&[
        "policy",
        "test",
        path_arg(component),
        path_arg(vector_file),
        "--json",
    ]);
    (run.json(), run.code)
}

#[test]
fn the_default_policy_passes_every_default_vector() {
    let (report, code) = policy_test(
        &policy("keyhost_policy_default.wasm"),
        &vectors("default-policy.json"),
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["failed"], 0);
    let results = report["results"].as_array().unwrap();
    assert!(results.len() >= 50, "{} cases", results.len());
    // Every case carries the decision the policy gave, in the shared form.
    assert!(results.iter().all(|r| r["passed"] == true));
    let denies = results
        .iter()
        .filter(|r| r["decision"]["decision"] == "deny")
        .count();
    assert!(denies > 20, "{denies} denies");
}

/// A policy built against contract 0.1 (world exports, no `validator`
/// interface): the kept 0.1 copy of the default policy still loads, says
/// which version it speaks, passes the same vectors, and checks keys.
#[test]
fn a_0_1_policy_still_loads_and_passes_the_default_vectors() {
    let legacy = policy("keyhost_policy_default_v0_1.wasm");
    let (report, code) = policy_test(&legacy, &vectors("default-policy.json"));
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["failed"], 0);
    let (current, _) = policy_test(
        &policy("keyhost_policy_default.wasm"),
        &vectors("default-policy.json"),
    );
    assert_eq!(
        report["results"], current["results"],
        "the 0.1 and 0.2 builds of the default policy decide alike"
    );

    let s = Sandbox::bare();
    let run = s.run(&["policy", "inspect", path_arg(&legacy), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let inspected = run.json();
    assert_eq!(inspected["contract"], "keyhost:policy@0.1.0");
    assert_eq!(inspected["loadable"], true);
    let exports: Vec<(&str, &str)> = inspected["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["name"].as_str().unwrap(),
                item["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(exports, [("configure", "func"), ("validate", "func")]);

    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let with_legacy = ["--policy", path_arg(&legacy)];
    assert_eq!(s.decide(&key, &with_legacy), "allow");
    s.ok(&["disable", "--as", "user:alice", &id]);
    assert_eq!(s.decide(&key, &with_legacy), "disabled");
}

#[test]
fn the_default_vectors_cover_every_rule_and_deny_code_of_the_default_policy() {
    let text = std::fs::read_to_string(vectors("default-policy.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let cases = file["cases"].as_array().unwrap();
    let codes: std::collections::BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| c["expect"]["code"].as_str())
        .collect();
    for code in [
        "disabled",
        "leaked",
        "expired",
        "wrong_service",
        "ip_not_allowed",
        "insufficient_scope",
    ] {
        assert!(codes.contains(code), "no vector expects {code}");
    }
    let kinds: std::collections::BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| c["key"]["kind"].as_str())
        .collect();
    for kind in ["service-id", "classic-infrastructure", "service-specific"] {
        assert!(kinds.contains(kind), "no vector uses a {kind} key");
    }
    assert!(
        cases
            .iter()
            .any(|c| c["expect"]["decision"] == "configure_error"),
        "no vector refuses a configuration"
    );
}

#[test]
fn policy_test_reports_each_failing_case_and_exits_1() {
    // The strict policy refuses keys without expiry, which most default
    // vectors use: each such case must be named with both decisions.
    let s = Sandbox::bare();
    let run = s.run(&[
        "policy",
        "test",
        path_arg(&policy("keyhost_policy_strict.wasm")),
        path_arg(&vectors("default-policy.json")),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("FAIL  a plain user key is allowed [state]: expected allow, got deny denied"),
        "{}",
        run.stdout
    );
    // A case the strict policy decides as the default one does passes.
    assert!(
        run.stdout
            .contains("ok    an empty classic service is refused at configure"),
        "{}",
        run.stdout
    );
    let summary = run.stdout.lines().last().unwrap();
    assert!(summary.contains("failed"), "{summary}");
    assert!(!summary.contains(" 0 failed"), "{summary}");
}

#[test]
fn a_bad_vector_file_is_an_error_that_names_the_case_and_field() {
    let s = Sandbox::bare();
    let text = std::fs::read_to_string(vectors("default-policy.json"))
        .unwrap()
        .replacen("\"disabled\": true", "\"disabld\": true", 1);
    let bad = s.dir.path().join("bad.json");
    std::fs::write(&bad, text).unwrap();
    let run = s.run(&[
        "policy",
        "test",
        path_arg(&policy("keyhost_policy_default.wasm")),
        path_arg(&bad),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("case 2"), "{}", run.stderr);
    assert!(run.stderr.contains("disabld"), "{}", run.stderr);
}

#[test]
fn inspect_prints_the_contract_exports_and_imports() {
    let s = Sandbox::bare();
    let file = policy("keyhost_policy_default.wasm");
    let run = s.run(&["policy", "inspect", path_arg(&file), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["contract"], report["host_contract"]);
    assert!(
        report["contract"]
            .as_str()
            .unwrap()
            .starts_with("keyhost:policy@"),
        "{report}"
    );
    assert_eq!(report["loadable"], true);
    let names = |list: &str| -> Vec<String> {
        report[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Contract 0.2 names its functions in an interface, which `wac plug`
    // and `wasm-tools compose` can wire into another component.
    assert_eq!(names("exports"), ["keyhost:policy/validator@0.2.0"]);
    assert_eq!(report["exports"][0]["kind"], "instance");
    let members = report["exports"][0]["members"].as_array().unwrap();
    for function in ["configure", "validate", "key-record", "decision"] {
        assert!(members.contains(&Value::from(function)), "{members:?}");
    }
    let imports = names("imports");
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("keyhost:policy/types@")),
        "{imports:?}"
    );
    assert!(
        imports.iter().any(|n| n.starts_with("wasi:cli/")),
        "{imports:?}"
    );

    let text = s.run(&["policy", "inspect", path_arg(&file)]);
    assert!(
        text.stdout
            .contains("keyhost:policy/validator@0.2.0: identity, key-record, request, decision, configure, validate"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("contract: keyhost:policy@0.2.0 "),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("loads: yes"), "{}", text.stdout);
}

#[test]
fn inspect_says_why_a_component_would_not_load() {
    let s = Sandbox::bare();
    let path = s.dir.path().join("other-world.wasm");
    std::fs::write(&path, wat::parse_str("(component)").unwrap()).unwrap();
    let run = s.run(&["policy", "inspect", path_arg(&path), "--json"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["loadable"], false);
    assert!(
        report["refusal"]
            .as_str()
            .unwrap()
            .contains("does not export the keyhost:policy world"),
        "{report}"
    );
}

#[test]
fn the_example_policy_passes_its_vectors() {
    let (report, code) = policy_test(
        &policy("keyhost_policy_example.wasm"),
        &vectors("example-policy.json"),
    );
    assert_eq!(code, 0, "{report}");
    assert!(report["passed"].as_u64().unwrap() >= 20, "{report}");
}

/// Sets the registry's `[policy.config]` by editing the file, as an operator
/// would; the registry keeps everything else.
fn set_policy_config(s: &Sandbox, config: &str) {
    let mut registry: toml::Table = s.registry_text().parse().unwrap();
    let config: toml::Table = config.parse().unwrap();
    let mut policy = toml::Table::new();
    policy.insert("config".into(), toml::Value::Table(config));
    registry.insert("policy".into(), toml::Value::Table(policy));
    std::fs::write(s.registry(), registry.to_string()).unwrap();
}

#[test]
fn changing_the_example_policys_configuration_flips_a_decision_without_a_rebuild() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let example = policy("keyhost_policy_example.wasm");
    let before = std::fs::read(&example).unwrap();
    let check = |service: &str| {
        s.decide(
            &key,
            &["--policy", path_arg(&example), "--service", service],
        )
    };
    assert_eq!(check("legacy-billing"), "allow");

    set_policy_config(&s, "denied_services = [\"legacy-billing\"]");
    assert_eq!(check("legacy-billing"), "denied");
    assert_eq!(check("billing"), "allow");
    // The registry stays a registry keyhost reads and writes.
    s.create(&["--as", "user:bob", "--name", "after the edit"]);

    set_policy_config(&s, "max_key_age_days = 30");
    assert_eq!(check("legacy-billing"), "allow");

    // The same component file throughout: only the registry changed.
    assert_eq!(std::fs::read(&example).unwrap(), before);
}

#[test]
fn a_configuration_the_example_refuses_fails_closed_with_its_reason() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    set_policy_config(&s, "max_key_age_days = \"ninety\"");
    let example = policy("keyhost_policy_example.wasm");
    let (verdict, code) = s.check(&key, &["--policy", path_arg(&example)]);
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["code"], "policy_error");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("policy.config.max_key_age_days"),
        "{verdict}"
    );
}
