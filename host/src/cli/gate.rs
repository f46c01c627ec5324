//! `keyhost gate build`.

use std::time::Instant;

use anyhow::{Context, Result};
use keyhost_core::gate::{GateMode, GateSettings, Upstream};
use serde_json::json;

use super::Report;
use super::args::{GateBuildArgs, GateCommand};
use crate::durable;
use crate::gate::{self, Behind};
use crate::policy::DEFAULT_POLICY;
use crate::registry::{self, RegistryFile};
use crate::side_files;

pub fn run(command: GateCommand, file: &RegistryFile) -> Result<Report> {
    match command {
        GateCommand::Build(args) => build(file, args),
    }
}

fn build(file: &RegistryFile, args: GateBuildArgs) -> Result<Report> {
    let started = Instant::now();
    let mode = match &args.upstream {
        Some(url) => GateMode::ReverseProxy(
            Upstream::parse(url).map_err(|e| anyhow::anyhow!("--upstream: {e}"))?,
        ),
        None => GateMode::Middleware,
    };
    let app = match &args.app {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("--app: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let policy = match &args.policy {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("--policy: cannot read {}", path.display()))?,
        None => DEFAULT_POLICY.to_vec(),
    };
    // The snapshot in the cache when it is current: a rebuild after no
    // change parses no TOML.
    let snapshot = registry::snapshot_bytes(file, side_files::cache_root().as_deref())?;
    if snapshot.len() >= 32 << 20 {
        eprintln!(
            "keyhost: composing a gate around a registry snapshot of {} MiB",
            snapshot.len() >> 20
        );
    }
    let checking = args.checking.into_checking()?;
    let settings = GateSettings { mode, checking };
    let behind = match &app {
        Some(app) => Behind::App(app),
        None => Behind::Upstream,
    };
    let built = gate::build(snapshot, &policy, settings, behind).with_context(|| {
        let policy = args
            .policy
            .as_ref()
            .map_or("the default policy".to_string(), |p| {
                p.display().to_string()
            });
        match &args.app {
            Some(app) => format!(
                "cannot build a gate with {policy} in front of {}",
                app.display()
            ),
            None => format!("cannot build a gate with {policy}"),
        }
    })?;
    if let Some(folder) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    durable::replace(&args.output, &built.wasm)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let took = started.elapsed();
    let label = &built.label;
    let text = format!(
        "wrote {} ({} bytes): a {} gate to {}, registry revision {}, {} keys, in {:.2?}",
        args.output.display(),
        built.wasm.len(),
        label.mode,
        label.upstream.as_deref().unwrap_or("the app"),
        label.revision,
        label.keys,
        took
    );
    let json = json!({
        "output": args.output,
        "bytes": built.wasm.len(),
        "gate": label,
        "seconds": took.as_secs_f64(),
    });
    Ok(Report::new(json, text))
}
