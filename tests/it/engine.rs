//! The policy engine through the library: an instance that fails is
//! replaced and the next check works, and components that do not fit the
//! contract are refused at load.

use crate::support::{Sandbox, policy};
use keyhost::check::{CheckRequest, check};
use keyhost::iam::IamId;
use keyhost::lifecycle::{self, NewIdentity, NewKey};
use keyhost::policy::{CompiledCache, PolicyEngine, PolicySlot, SandboxLimits};
use keyhost::registry::LoadedRegistry;
use keyhost::registry::Registry;
use keyhost::time::Timestamp;
use keyhost::verdict::Verdict;

/// A registry with one user key; returns it with the secret.
fn registry_with_key() -> (Registry, String) {
    let mut registry = Registry::new("kh");
    let alice: IamId = "user:alice".parse().unwrap();
    let now = Timestamp::now();
    let identity = NewIdentity {
        iam_id: alice.clone(),
        owner: None,
        scopes: vec!["read".into()],
    };
    lifecycle::add_identity(&mut registry, identity, now).unwrap();
    let new = NewKey {
        name: "k".into(),
        ..NewKey::default()
    };
    let (_, secret) = lifecycle::create_key(&mut registry, &alice, new, now).unwrap();
    (registry, secret.expose().to_string())
}

fn code(verdict: &Verdict) -> &'static str {
    verdict.code().unwrap_or("allow")
}

#[test]
fn a_failed_instance_is_replaced_and_the_next_check_works() {
    let engine = PolicyEngine::new(CompiledCache::disabled(), SandboxLimits::default()).unwrap();
    let hostile = engine
        .load_file(&policy("keyhost_policy_hostile.wasm"))
        .unwrap();
    let (registry, secret) = registry_with_key();
    let checker = LoadedRegistry::new(registry);
    let mut slot = PolicySlot::new(hostile, Vec::new());
    let request = |service: &str| CheckRequest {
        service: Some(service.into()),
        ..CheckRequest::default()
    };
    // Fail in every way, each followed by a good call on the same slot.
    for behaviour in ["trap", "loop", "grow", "recurse", "trap", "trap"] {
        assert_eq!(
            code(&check(&checker, &mut slot, &secret, &request(behaviour)).unwrap()),
            "policy_error",
            "{behaviour}"
        );
        assert_eq!(
            code(&check(&checker, &mut slot, &secret, &request("db")).unwrap()),
            "allow",
            "after {behaviour}"
        );
    }
}

#[test]
fn the_default_policy_instance_is_reused_across_checks() {
    let engine = PolicyEngine::new(CompiledCache::disabled(), SandboxLimits::default()).unwrap();
    let policy = engine.load_default().unwrap();
    let (registry, secret) = registry_with_key();
    let checker = LoadedRegistry::new(registry);
    let mut slot = PolicySlot::new(policy, Vec::new());
    for _ in 0..1000 {
        let verdict = check(&checker, &mut slot, &secret, &CheckRequest::default()).unwrap();
        assert!(verdict.is_allow(), "{verdict:?}");
    }
    let scoped = CheckRequest {
        scope: Some("write".into()),
        ..CheckRequest::default()
    };
    assert_eq!(
        code(&check(&checker, &mut slot, &secret, &scoped).unwrap()),
        "insufficient_scope"
    );
}

#[test]
fn a_configuration_the_policy_refuses_fails_closed() {
    let engine = PolicyEngine::new(CompiledCache::disabled(), SandboxLimits::default()).unwrap();
    let policy = engine.load_default().unwrap();
    let (registry, secret) = registry_with_key();
    let checker = LoadedRegistry::new(registry);
    let mut slot = PolicySlot::new(policy, vec![("classic_service".into(), " ".into())]);
    let verdict = check(&checker, &mut slot, &secret, &CheckRequest::default()).unwrap();
    assert_eq!(code(&verdict), "policy_error");
    assert!(
        verdict.reason().unwrap().contains("classic_service"),
        "{verdict:?}"
    );
}

/// Writes a component given in WAT to a file and checks a key with it.
fn check_with_wat(wat: &str) -> crate::support::Run {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let path = s.dir.path().join("odd.wasm");
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    s.run_with(&["check", "--policy", path.to_str().unwrap()], &key, &[])
}

#[test]
fn a_component_importing_what_the_host_does_not_provide_is_refused_at_load() {
    let run = check_with_wat(
        r#"(component
             (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
           )"#,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("import"), "{}", run.stderr);
    assert!(
        run.stderr.contains("wasi:http/outgoing-handler"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_component_exporting_another_world_is_refused_at_load() {
    let run = check_with_wat("(component)");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("does not export the keyhost:policy world"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_at_load() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let path = s.dir.path().join("text.wasm");
    std::fs::write(&path, "hello").unwrap();
    let run = s.run_with(&["check", "--policy", path.to_str().unwrap()], &key, &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is not WebAssembly"), "{}", run.stderr);
    let missing = s.run_with(&["check", "--policy", "/nonexistent/p.wasm"], &key, &[]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("/nonexistent/p.wasm"),
        "{}",
        missing.stderr
    );
}
