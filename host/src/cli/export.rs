//! `keyhost export envoy|traefik` and `keyhost replica`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keyhost_core::snapshot::Snapshot;
use serde_json::json;

use super::Report;
use super::args::{EnvoyExportArgs, ExportCommand, ReplicaCommand, TraefikExportArgs};
use crate::durable;
use crate::export::{self, Registry};
use crate::registry::{self, RegistryFile};
use crate::replicas;
use crate::side_files::{self, RegistryStamp};
use crate::time::Timestamp;

pub fn run(command: ExportCommand, file: &RegistryFile) -> Result<Report> {
    match command {
        ExportCommand::Envoy(args) => envoy(file, args),
        ExportCommand::Traefik(args) => traefik(file, args),
    }
}

/// The registry's snapshot: the cached one when it is current.
fn snapshot(file: &RegistryFile) -> Result<Vec<u8>> {
    registry::snapshot_bytes(file, side_files::cache_root().as_deref())
}

/// What a report says of a snapshot.
fn described(snapshot: &[u8]) -> Result<serde_json::Value> {
    let header = Snapshot::open(snapshot)?.header().clone();
    Ok(json!({ "revision": header.revision, "keys": header.keys, "bytes": snapshot.len() }))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::replace(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn envoy(file: &RegistryFile, args: EnvoyExportArgs) -> Result<Report> {
    let checking = args.checking.into_checking()?;
    let trust = args.trust_source_address.then_some(true);
    let mut lines = Vec::new();
    let mut report = serde_json::Map::new();
    if let Some(path) = &args.wasm {
        write(path, export::PROXY_WASM_FILTER)?;
        lines.push(format!("wrote the proxy-wasm filter to {}", path.display()));
        report.insert("wasm".into(), json!(path));
    }
    if let Some(path) = &args.config {
        let (config, snapshot) = match &args.live {
            Some(cluster) => (
                export::filter_config(&checking, Registry::Live { cluster }, trust),
                None,
            ),
            None => {
                let snapshot = snapshot(file)?;
                let config = export::filter_config(&checking, Registry::Inline(&snapshot), trust);
                (config, Some(described(&snapshot)?))
            }
        };
        write(path, serde_json::to_string(&config)?.as_bytes())?;
        lines.push(match &snapshot {
            Some(s) => format!(
                "wrote the filter's configuration to {} (snapshot inline: revision {}, {} keys)",
                path.display(),
                s["revision"],
                s["keys"]
            ),
            None => format!(
                "wrote the filter's configuration to {} (snapshots fetched live through cluster {:?})",
                path.display(),
                args.live.as_deref().unwrap_or_default()
            ),
        });
        report.insert("config".into(), json!(path));
        report.insert("snapshot".into(), json!(snapshot));
    }
    Ok(Report::new(report.into(), lines.join("\n")))
}

fn traefik(file: &RegistryFile, args: TraefikExportArgs) -> Result<Report> {
    let checking = args.checking.into_checking()?;
    let mut lines = Vec::new();
    let mut report = serde_json::Map::new();
    if let Some(dir) = &args.plugins {
        let plugin = match &args.filter {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("--filter: cannot read {}", path.display()))?,
            None => export::HTTP_WASM_PLUGIN.to_vec(),
        };
        if !plugin.starts_with(b"\0asm\x01\0\0\0") {
            bail!("--filter: not a core WebAssembly module (a component cannot run in Traefik)");
        }
        let folder = dir.join("src").join(export::TRAEFIK_PLUGIN);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        write(&folder.join("plugin.wasm"), &plugin)?;
        write(
            &folder.join(".traefik.yml"),
            export::TRAEFIK_MANIFEST.as_bytes(),
        )?;
        lines.push(format!(
            "wrote the http-wasm plugin to {} (name it in experimental.localPlugins.{}.moduleName: {})",
            folder.display(),
            export::TRAEFIK_PLUGIN,
            export::TRAEFIK_PLUGIN
        ));
        report.insert("plugin".into(), json!(folder));
    }
    let Some(path) = &args.config else {
        return Ok(Report::new(report.into(), lines.join("\n")));
    };
    let write_config = || -> Result<serde_json::Value> {
        let snapshot = snapshot(file)?;
        let config = export::filter_config(&checking, Registry::Inline(&snapshot), None);
        write(
            path,
            export::traefik_dynamic(&args.middleware, config).as_bytes(),
        )?;
        described(&snapshot)
    };
    let described = write_config()?;
    let line = |d: &serde_json::Value| {
        format!(
            "wrote middleware {:?} to {} (registry revision {}, {} keys)",
            args.middleware,
            path.display(),
            d["revision"],
            d["keys"]
        )
    };
    lines.push(line(&described));
    report.insert("config".into(), json!(path));
    report.insert("snapshot".into(), described);
    if !args.watch {
        return Ok(Report::new(report.into(), lines.join("\n")));
    }
    // Watching: report what was written so far, then each rewrite.
    eprintln!("{}", lines.join("\n"));
    let mut seen = RegistryStamp::of(file.path()).ok();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = RegistryStamp::of(file.path()).ok();
        if now == seen {
            continue;
        }
        seen = now;
        match write_config() {
            Ok(d) => eprintln!("{}", line(&d)),
            // A registry mid-edit by hand: the file in place stays.
            Err(e) => eprintln!("keyhost: not rewritten, the registry cannot be read: {e:#}"),
        }
    }
}

pub fn replica(command: ReplicaCommand, file: &RegistryFile, now: Timestamp) -> Result<Report> {
    match command {
        ReplicaCommand::Add { name } => {
            let prefix = file.load()?.prefix;
            let secret = replicas::add(file.path(), &prefix, &name, now)?;
            Ok(
                Report::new(json!({ "name": name, "credential": secret.expose() }), secret.expose())
                    .with_note(format!(
                        "added replica credential {name:?}. This is the only time it is shown; keyhost keeps only its SHA-256. Give it to the proxy in KEYHOST_REPLICA_CREDENTIAL."
                    )),
            )
        }
        ReplicaCommand::List => {
            let replicas = replicas::list(file.path())?;
            let text = replicas
                .iter()
                .map(|r| format!("{}\tadded {}", r.name, r.created_at))
                .collect::<Vec<_>>()
                .join("\n");
            let listed: Vec<_> = replicas
                .iter()
                .map(|r| json!({ "name": r.name, "created_at": r.created_at }))
                .collect();
            Ok(Report::new(json!({ "replicas": listed }), text))
        }
        ReplicaCommand::Revoke { name } => {
            replicas::revoke(file.path(), &name)?;
            Ok(Report::new(
                json!({ "revoked": name }),
                format!("revoked replica credential {name:?}"),
            ))
        }
    }
}
