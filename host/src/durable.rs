//! Durable file replacement: write a temporary file in the same folder
//! (mode 0600), fsync it, rename it over the target, fsync the folder.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::side_files::FileStamp;

/// The folder holding `path` ("." for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Temporary files for `path` are named `.NAME.RANDOM.tmp`, RANDOM being
/// `RANDOM_LEN` letters and digits, so the ones a crashed writer left behind
/// can be told apart from everything else (`.NAME.usage.json.RANDOM.tmp`
/// belongs to another file).
const RANDOM_LEN: usize = 6;

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
        let middle = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"));
        if middle
            .is_some_and(|m| m.len() == RANDOM_LEN && m.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
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
        .rand_bytes(RANDOM_LEN)
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

/// Takes the lock every writer of `path` takes (`PATH.lock`, mode 0600),
/// held until the file returned is dropped.
pub fn lock(path: &Path) -> Result<File> {
    let (file, lock) = open_lock(path)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock.display()))?;
    Ok(file)
}

/// The lock file of `path` (`PATH.lock`, mode 0600), opened, and its path.
fn open_lock(path: &Path) -> Result<(File, std::path::PathBuf)> {
    let lock = crate::side_files::lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .with_context(|| format!("cannot open lock {}", lock.display()))?;
    Ok((file, lock))
}

/// How often a lock waited for with a limit is tried again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// [`lock`], waiting at most `wait` for another holder to let go; none
/// when it still holds it.
pub fn lock_within(path: &Path, wait: std::time::Duration) -> Result<Option<File>> {
    let (file, lock) = open_lock(path)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(LOCK_POLL);
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock.display()));
            }
        }
    }
}

/// Replaces `path` with `bytes`, atomically and durably.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_and_stamp(path, bytes).map(drop)
}

/// [`replace`], and the stamp of the very file that was renamed into
/// place (taken from its handle after the rename, so a file put there
/// since has another).
pub fn replace_and_stamp(path: &Path, bytes: &[u8]) -> Result<FileStamp> {
    let written = synced_temp(path, bytes)?
        .persist(path)
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(|| format!("cannot replace {}", path.display()))?;
    let stamp = written
        .metadata()
        .map(|meta| FileStamp::of_meta(&meta))
        .with_context(|| format!("cannot read back {}", path.display()))?;
    sync_folder(path)?;
    Ok(stamp)
}

/// Removes `path`, durably; a file already gone is no error.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_folder(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_files_leftover_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("keys.toml");
        replace(&registry, b"version = 1\n").unwrap();
        let names = [
            ".keys.toml.Ab3dE9.tmp",
            ".keys.toml.usage.json.Ab3dE9.tmp",
            "notes.tmp",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale_temps(&registry);
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, true, true]);
        assert_eq!(std::fs::read(&registry).unwrap(), b"version = 1\n");
    }

    #[test]
    fn create_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        create_new(&path, b"one").unwrap();
        assert!(create_new(&path, b"two").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }
}
