//! `keyhost demo`: a walkthrough on a throwaway registry. It creates
//! identities and keys, checks them through the built-in default policy (a
//! WebAssembly component, loaded like any other) and shows each decision.

use anyhow::{Context, Result};
use serde_json::json;

use crate::check::{CheckRequest, check};
use crate::cli::Report;
use crate::iam::{IamId, KeyKind};
use crate::key_format::Secret;
use crate::lifecycle::{self, NewIdentity, NewKey};
use crate::policy::{CompiledCache, PolicyEngine, PolicySlot, SandboxLimits};
use crate::registry::{LoadedRegistry, Registry, RegistryFile};
use crate::time::Timestamp;
use crate::verdict::Verdict;

struct Step {
    what: &'static str,
    secret: String,
    request: CheckRequest,
}

fn id(text: &str) -> IamId {
    text.parse().expect("the demo's ids are valid")
}

/// Runs the walk-through on a throwaway registry.
pub fn run() -> Result<Report> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder for the demo")?;
    let file = RegistryFile::new(dir.path().join("keys.toml"));
    file.create(&Registry::new("demo"))?;
    let now = Timestamp::now();
    let alice = id("user:alice");

    let (secrets, _) = file.update(|registry| {
        let identities = [
            ("user:alice", None, vec!["read", "write"]),
            ("service-id:billing", Some(id("user:alice")), vec!["read"]),
        ];
        for (iam_id, owner, scopes) in identities {
            let scopes = scopes.into_iter().map(String::from).collect();
            lifecycle::add_identity(
                registry,
                NewIdentity {
                    iam_id: id(iam_id),
                    owner,
                    scopes,
                },
                now,
            )?;
        }
        let mut create = |name: &str, new: NewKey| -> Result<Secret> {
            let new = NewKey {
                name: name.into(),
                ..new
            };
            Ok(lifecycle::create_key(registry, &alice, new, now)?.1)
        };
        Ok([
            create("laptop", NewKey::default())?,
            create(
                "billing-app",
                NewKey {
                    for_identity: Some(id("service-id:billing")),
                    ..NewKey::default()
                },
            )?,
            create(
                "storage-only",
                NewKey {
                    kind: Some(KeyKind::ServiceSpecific),
                    service: Some("object-storage".into()),
                    ..NewKey::default()
                },
            )?,
            create(
                "office",
                NewKey {
                    allowed_ips: vec!["10.0.0.0/8".into()],
                    ..NewKey::default()
                },
            )?,
        ])
    })?;
    let [user_key, service_id_key, storage_key, office_key] =
        secrets.map(|s| s.expose().to_string());

    let request = |service: &str, scope: Option<&str>, ip: Option<&str>| CheckRequest {
        service: Some(service.into()),
        scope: scope.map(String::from),
        source_ip: ip.map(String::from),
        ..CheckRequest::default()
    };
    let mut tampered = user_key.clone();
    let last = tampered.pop().expect("keys are not empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let steps = [
        Step {
            what: "user key -> classic-infrastructure",
            secret: user_key.clone(),
            request: request("classic-infrastructure", None, None),
        },
        Step {
            what: "service ID key -> classic-infrastructure",
            secret: service_id_key.clone(),
            request: request("classic-infrastructure", None, None),
        },
        Step {
            what: "service ID key -> databases, scope read",
            secret: service_id_key.clone(),
            request: request("databases", Some("read"), None),
        },
        Step {
            what: "service ID key -> databases, scope write",
            secret: service_id_key,
            request: request("databases", Some("write"), None),
        },
        Step {
            what: "service-specific key -> object-storage",
            secret: storage_key.clone(),
            request: request("object-storage", None, None),
        },
        Step {
            what: "service-specific key -> databases",
            secret: storage_key,
            request: request("databases", None, None),
        },
        Step {
            what: "office key from 10.1.2.3",
            secret: office_key.clone(),
            request: request("databases", None, Some("10.1.2.3")),
        },
        Step {
            what: "office key from 192.0.2.7",
            secret: office_key,
            request: request("databases", None, Some("192.0.2.7")),
        },
        Step {
            what: "user key with one character changed",
            secret: tampered,
            request: request("databases", None, None),
        },
    ];

    let engine = PolicyEngine::new(CompiledCache::from_env(), SandboxLimits::default())?;
    let policy = engine.load_default()?;
    let registry = file.load()?;
    let mut slot = PolicySlot::new(policy, registry.policy.config_pairs());
    let registry = LoadedRegistry::new(registry);

    let mut lines = vec![
        format!("registry {} (throwaway)", file.path().display()),
        "identities: user:alice (read, write); service-id:billing, owned by alice (read)"
            .to_string(),
        "policy: the built-in default, a WebAssembly component run by wasmtime".to_string(),
        String::new(),
    ];
    let mut results = Vec::new();
    for step in &steps {
        let verdict = check(&registry, &mut slot, &step.secret, &step.request)?;
        let outcome = match &verdict {
            Verdict::Allow { key, .. } => format!("allow  ({} of {})", key.key_id, key.owner),
            Verdict::Deny { code, reason, .. } => format!("deny {}  ({reason})", code.as_str()),
        };
        lines.push(format!("{:<44} {outcome}", step.what));
        let mut result = serde_json::to_value(verdict.view()).expect("a verdict serializes");
        result["step"] = step.what.into();
        results.push(result);
    }
    Ok(Report::new(json!({ "steps": results }), lines.join("\n")))
}
