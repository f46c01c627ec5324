//! Durable file replacement: write a temporary file in the same folder
//! (mode 0600), fsync it, rename it over the target, fsync the folder.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// The folder holding `path` ("." for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Temporary files for `path` are named `.NAME.RANDOM.tmp`, so the ones a
/// crashed writer left behind can be told apart from everything else.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Removes temporary files of `path` left by writers that died. Call it only
/// while holding the lock that every writer of `path` takes.
pub fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            tracing::info!(file = %entry.path().display(), "removing a temporary file left by an interrupted write");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A synced temporary file beside `path` holding `bytes`.
fn synced_temp(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let folder = folder_of(path);
    // tempfile creates the file with mode 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a temporary file in {}", folder.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write a temporary file in {}", folder.display()))?;
    Ok(temp)
}

fn sync_folder(path: &Path) -> Result<()> {
    let folder = folder_of(path);
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot fsync folder {}", folder.display()))
}

/// Replaces `path` with `bytes`, atomically and durably.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    synced_temp(path, bytes)?
        .persist(path)
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(|| format!("cannot replace {}", path.display()))?;
    sync_folder(path)
}

/// Creates `path` with `bytes`, atomically and durably; refuses to replace
/// an existing file.
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<()> {
    synced_temp(path, bytes)?
        .persist_noclobber(path)
        .map_err(|e| {
            if e.error.kind() == ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists; keyhost will not overwrite it",
                    path.display()
                )
            } else {
                anyhow::Error::new(e.error).context(format!("cannot create {}", path.display()))
            }
        })?;
    sync_folder(path)
}
