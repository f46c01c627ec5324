//! `keyhost snapshot`: the registry's snapshot written to a file, for the
//! gate and the proxy filters; `keyhost snapshot inspect`: what a snapshot
//! file holds, and whether every byte of it is as written.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keyhost_core::snapshot::{self, Snapshot};
use serde_json::json;

use super::args::{SnapshotArgs, SnapshotCommand, SnapshotInspectArgs};
use super::{EXIT_DENIED, Report};
use crate::durable;
use crate::registry::{self, RegistryFile};
use crate::side_files;

pub fn run(args: SnapshotArgs, file: &RegistryFile) -> Result<Report> {
    match (args.command, args.output) {
        (Some(SnapshotCommand::Inspect(args)), _) => inspect(args),
        (None, Some(output)) => write(file, &output),
        (None, None) => unreachable!("clap requires --output without a subcommand"),
    }
}

fn write(file: &RegistryFile, output: &Path) -> Result<Report> {
    let started = Instant::now();
    if is_the_registrys(file.path(), output) {
        bail!(
            "--output {}: that is the registry or one of the files beside it; choose another path",
            output.display()
        );
    }
    // The cache's snapshot when it is current (checked byte for byte), else
    // made from the TOML now.
    let bytes = registry::snapshot_bytes(file, side_files::cache_root().as_deref())?;
    let header = Snapshot::open(bytes.as_slice())?.header().clone();
    if let Some(folder) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    durable::replace(output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let took = started.elapsed();
    let text = format!(
        "wrote {} ({} bytes): registry revision {}, {} keys, in {:.2?}",
        output.display(),
        bytes.len(),
        header.revision,
        header.keys,
        took
    );
    let json = json!({
        "output": output,
        "bytes": bytes.len(),
        "revision": header.revision,
        "keys": header.keys,
        "seconds": took.as_secs_f64(),
    });
    Ok(Report::new(json, text))
}

/// Whether `output` names the registry, or a file keyhost keeps beside it
/// (`keys.toml.lock`, `keys.toml.replicas.json`, ...): a snapshot written
/// there would replace it without its lock.
fn is_the_registrys(registry: &Path, output: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let same_file = match (std::fs::metadata(registry), std::fs::metadata(output)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let (Ok(registry), Ok(output)) = (std::path::absolute(registry), std::path::absolute(output))
    else {
        return same_file;
    };
    let beside = output
        .to_str()
        .zip(registry.to_str())
        .is_some_and(|(output, registry)| output.starts_with(&format!("{registry}.")));
    same_file || output == registry || beside
}

fn inspect(args: SnapshotInspectArgs) -> Result<Report> {
    let path = &args.file;
    let shown = path.display();
    let opened = File::open(path).with_context(|| format!("cannot read {shown}"))?;
    // A frame that does not hold (the wrong magic, a truncated or padded
    // file) says nothing else worth reading.
    let snapshot = match Snapshot::open(opened) {
        Ok(snapshot) => snapshot,
        Err(broken) => {
            let json = json!({ "file": path, "sound": false, "problem": format!("{broken:#}") });
            return Ok(
                Report::new(json, format!("{shown}: damaged: {broken:#}")).with_exit(EXIT_DENIED)
            );
        }
    };
    let header = snapshot.header();
    let checked = snapshot.verify();
    let checksum = match &checked {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:#}"),
    };
    let text = format!(
        "{shown}: a keyhost snapshot ({})\n\
         registry revision: {}\n\
         keys: {} ({} secret hashes)\n\
         identities: {} ({} service IDs with an owner)\n\
         prefix: {}\n\
         policy settings: {}\n\
         bytes: {}\n\
         checksum: {checksum}",
        String::from_utf8_lossy(snapshot::MAGIC),
        header.revision,
        header.keys,
        header.entries,
        header.identities,
        header.tables.owners.rows,
        header.prefix,
        header.policy_config.len(),
        header.total_len,
    );
    let json = json!({
        "file": path,
        "sound": checked.is_ok(),
        "format": String::from_utf8_lossy(snapshot::MAGIC),
        "revision": header.revision,
        "keys": header.keys,
        "entries": header.entries,
        "identities": header.identities,
        "prefix": header.prefix,
        "policy_settings": header.policy_config.len(),
        "bytes": header.total_len,
        "checksum": checksum,
        "etag": snapshot.etag()?,
    });
    let report = Report::new(json, text);
    Ok(match checked {
        Ok(()) => report,
        Err(_) => report.with_exit(EXIT_DENIED),
    })
}
