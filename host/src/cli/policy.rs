//! `keyhost policy inspect` and `keyhost policy test`: what a component
//! declares, and whether it gives the decisions a vector file expects.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::args::PolicyCommand;
use super::{EXIT_DENIED, EXIT_ERROR, Report};
use crate::conformance::{self, Defaults, Expected, Outcome, VectorFile};
use crate::gate::{self, GateLabel};
use crate::policy::contract::{CONTRACT, Item};
use crate::policy::{CompiledCache, PolicyEngine, SandboxLimits};
use crate::registry::RegistryFile;

/// The engine every CLI command loads policies with: the user's cache, and a
/// word on stderr when a large component is compiled.
pub fn engine() -> Result<PolicyEngine> {
    PolicyEngine::new(
        CompiledCache::from_env().with_progress(),
        SandboxLimits::default(),
    )
}

pub fn run(command: PolicyCommand, registry: &RegistryFile) -> Result<Report> {
    match command {
        PolicyCommand::Inspect { file } => inspect(&file),
        PolicyCommand::Test {
            file,
            vectors,
            defaults,
        } => test(&file, &vectors, defaults.as_deref()),
        PolicyCommand::Config(command) => super::policy_config::run(command, registry),
        PolicyCommand::New { dir, lang } => super::policy_new::run(&dir, lang),
    }
}

fn inspect(file: &Path) -> Result<Report> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if let Some(label) = gate::label_of(&wasm)? {
        return inspect_gate(file, &wasm, &label);
    }
    let (summary, refusal) = engine()?.inspect_file(file)?;
    let json = json!({
        "file": file,
        "contract": summary.contract_version.as_ref().map(|v| format!("keyhost:policy@{v}")),
        "host_contract": CONTRACT,
        "loadable": refusal.is_none(),
        "refusal": refusal,
        "exports": summary.exports,
        "imports": summary.imports,
    });
    let mut text = format!("component: {}\n", file.display());
    let contract = summary
        .contract_version
        .as_ref()
        .map_or("none named".to_string(), |v| format!("keyhost:policy@{v}"));
    let _ = writeln!(
        text,
        "contract: {contract} (this keyhost speaks {CONTRACT}, and loads 0.1)"
    );
    write_items(&mut text, "exports", &summary.exports);
    write_items(&mut text, "imports", &summary.imports);
    match &refusal {
        None => text.push_str("loads: yes"),
        Some(reason) => {
            let _ = write!(text, "loads: no: {reason}");
        }
    }
    let report = Report::new(json, text);
    // A component keyhost would not load is a bad policy file: exit 2.
    Ok(if refusal.is_some() {
        report.with_exit(EXIT_ERROR)
    } else {
        report
    })
}

/// A gate built by `keyhost gate build`: what it was built with, and its
/// outside as a proxy host sees it.
fn inspect_gate(file: &Path, wasm: &[u8], label: &GateLabel) -> Result<Report> {
    let (imports, exports) = gate::outside_of(wasm)?;
    let json = json!({
        "file": file,
        "gate": label,
        "contract": label.contract,
        "mode": label.mode,
        "revision": label.revision,
        "keys": label.keys,
        "imports": imports,
        "exports": exports,
    });
    let mut text = format!("component: {}\n", file.display());
    let _ = writeln!(text, "a keyhost gate, built by `keyhost gate build`");
    let _ = writeln!(text, "contract: {}", label.contract);
    let _ = writeln!(
        text,
        "mode: {}{}",
        label.mode,
        label
            .upstream
            .as_ref()
            .map(|url| format!(" to {url}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        text,
        "snapshot: registry revision {}, {} keys, {} bytes",
        label.revision, label.keys, label.snapshot_bytes
    );
    let _ = writeln!(
        text,
        "service: {}; scope: {}; client address from: {}",
        label
            .settings
            .checking
            .service
            .as_deref()
            .unwrap_or("(none)"),
        label.settings.checking.scope.as_deref().unwrap_or("(none)"),
        label
            .settings
            .checking
            .client_ip_header
            .as_deref()
            .unwrap_or("(nowhere: keys with an IP allow-list are refused)")
    );
    let _ = writeln!(text, "imports:");
    for name in &imports {
        let _ = writeln!(text, "  {name}");
    }
    let _ = writeln!(text, "exports:");
    for name in &exports {
        let _ = writeln!(text, "  {name}");
    }
    Ok(Report::new(json, text.trim_end().to_string()))
}

fn write_items(text: &mut String, heading: &str, items: &[Item]) {
    let _ = writeln!(text, "{heading}:");
    if items.is_empty() {
        text.push_str("  (none)\n");
    }
    for item in items {
        let _ = match item.kind {
            "func" => writeln!(text, "  {}: func({})", item.name, item.members.join(", ")),
            "instance" => writeln!(text, "  {}: {}", item.name, item.members.join(", ")),
            kind => writeln!(text, "  {} ({kind})", item.name),
        };
    }
}

fn test(file: &Path, vectors: &Path, defaults: Option<&Path>) -> Result<Report> {
    let vector_file = VectorFile::load(vectors)?;
    let own = defaults
        .map(Defaults::load)
        .transpose()?
        .unwrap_or_default();
    let cases = vector_file
        .cases_over(&own)
        .with_context(|| format!("vectors {}", vectors.display()))?;
    let policy = engine()?.load_file(file)?;
    let results = conformance::run(&policy, &cases);
    let failed = results.iter().filter(|r| !r.passed).count();
    let passed = results.len() - failed;

    let mut text = String::new();
    for result in &results {
        if result.passed {
            let _ = writeln!(text, "ok    {}", result.name);
        } else {
            let _ = writeln!(
                text,
                "FAIL  {} [{}]: expected {}, got {}",
                result.name,
                result.rule,
                expected_text(&result.expected),
                outcome_text(&result.decision)
            );
        }
    }
    let _ = write!(
        text,
        "{} cases: {passed} passed, {failed} failed ({} against {})",
        results.len(),
        file.display(),
        vectors.display()
    );
    let json = json!({
        "policy": file,
        "vectors": vectors,
        "defaults": defaults,
        "contract": vector_file.contract,
        "passed": passed,
        "failed": failed,
        "results": results,
    });
    let report = Report::new(json, text);
    Ok(if failed > 0 {
        report.with_exit(EXIT_DENIED)
    } else {
        report
    })
}

fn expected_text(expected: &Expected) -> String {
    match expected {
        Expected::Allow { info: None } => "allow".into(),
        Expected::Allow { info: Some(info) } => format!("allow with info {info:?}"),
        Expected::Deny {
            code,
            message_contains: None,
        } => format!("deny {code}"),
        Expected::Deny {
            code,
            message_contains: Some(part),
        } => format!("deny {code} with a message containing {part:?}"),
        Expected::ConfigureError {
            message_contains: None,
        } => "a configure error".into(),
        Expected::ConfigureError {
            message_contains: Some(part),
        } => format!("a configure error containing {part:?}"),
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allow { info } if info.is_empty() => "allow".into(),
        Outcome::Allow { info } => format!("allow with info {info:?}"),
        Outcome::Deny { code, message } => {
            format!("deny {code} ({message})")
        }
        Outcome::ConfigureError { message } => {
            format!("a configure error ({message})")
        }
    }
}
