//! Every file keyhost keeps beside a registry, or about it in the cache, is
//! named here, and so is the one test of whether a file changed.
//!
//! Beside the registry `PATH`:
//! - `PATH.lock`: taken by every write (registry/file.rs);
//! - `PATH.changes.toml`: the key writes of a large registry not yet
//!   folded into it (registry/changes.rs);
//! - `PATH.usage.json`: last use and use count per key (usage.rs);
//! - `PATH.signing-keys.json`: the private keys that sign access tokens
//!   (token/signing.rs), mode 0600, with its own `.lock`;
//! - `PATH.token-keys.json`: their public halves, which `keyhost check`
//!   verifies tokens with;
//! - `PATH.replicas.json`: the hashes of replica credentials, which fetch
//!   snapshots from serve's `GET /v1/snapshot` (replicas.rs), mode 0600,
//!   with its own `.lock`.
//!
//! In the cache root (`$KEYHOST_CACHE_DIR`, or `keyhost/` in the user's
//! cache folder), which holds only what can be rebuilt:
//! - `policies/`: compiled policy components (policy/cache.rs);
//! - `registries/`: snapshots of registries (`HASH.idx`), each with the
//!   stamp of its version last checked whole (`HASH.checked`), and the
//!   snapshot of its changes file (`HASH.changes`) (registry/compact.rs).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `registry` with `suffix` appended to its file name.
fn beside(registry: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(registry.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The lock file every write of `registry` takes.
pub fn lock_path(registry: &Path) -> PathBuf {
    beside(registry, ".lock")
}

/// The key changes of `registry` not yet folded into it: beside the file
/// itself when `registry` is a link to it, where its writers (who write
/// the file, never the link) keep them; a reader through the link that
/// looked beside the link would miss every key write.
pub fn changes_path(registry: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(registry).is_ok_and(|meta| meta.is_symlink());
    match is_link.then(|| std::fs::canonicalize(registry)) {
        Some(Ok(file)) => beside(&file, ".changes.toml"),
        _ => beside(registry, ".changes.toml"),
    }
}

/// The usage state file of `registry`.
pub fn usage_path(registry: &Path) -> PathBuf {
    beside(registry, ".usage.json")
}

/// The keys that sign access tokens for `registry`.
pub fn signing_keys_path(registry: &Path) -> PathBuf {
    beside(registry, ".signing-keys.json")
}

/// The public halves of those keys, for verifiers.
pub fn token_keys_path(registry: &Path) -> PathBuf {
    beside(registry, ".token-keys.json")
}

/// The hashes of `registry`'s replica credentials.
pub fn replicas_path(registry: &Path) -> PathBuf {
    beside(registry, ".replicas.json")
}

/// Where keyhost keeps what it can rebuild: `$KEYHOST_CACHE_DIR`, or
/// `keyhost/` in the user's cache folder.
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("KEYHOST_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|dir| dir.join("keyhost")))
}

/// The snapshot of `registry` in `cache_root`, named by the registry's
/// absolute path and the snapshot format (its magic's version digits), so
/// that keyhost builds of two formats sharing a cache do not make each
/// other's snapshot again on every use.
pub fn index_path(cache_root: &Path, registry: &Path) -> PathBuf {
    let absolute = std::path::absolute(registry).unwrap_or_else(|_| registry.to_path_buf());
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let format = String::from_utf8_lossy(&keyhost_core::snapshot::MAGIC[6..]).into_owned();
    cache_root
        .join("registries")
        .join(format!("{}-{format}.idx", hex::encode(&digest[..16])))
}

/// The identity of one version of a file, read without opening it: device,
/// inode, size, and modification and change times to the nanosecond. Every
/// keyhost write renames a new file into place, which changes the inode; a
/// hand edit changes the times, and nobody can set the change time back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        Ok(FileStamp::of_meta(&std::fs::metadata(path)?))
    }

    /// The stamp of the file `meta` describes.
    pub fn of_meta(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The identity of one version of a registry: its file's stamp, and its
/// changes file's when there is one (a key write changes only that file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStamp {
    /// The registry file's.
    pub main: FileStamp,
    /// The changes file's, when there is one.
    pub changes: Option<FileStamp>,
}

impl RegistryStamp {
    /// The stamp of the registry at `path` now.
    pub fn of(path: &Path) -> std::io::Result<RegistryStamp> {
        let changes = match FileStamp::of(&changes_path(path)) {
            Ok(stamp) => Some(stamp),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(RegistryStamp {
            main: FileStamp::of(path)?,
            changes,
        })
    }
}

/// Creates `folder` (mode 0700) if it is missing, and refuses it unless
/// this user owns it and no group or other user may write to it.
pub fn private_folder(folder: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let meta = std::fs::symlink_metadata(folder)
        .with_context(|| format!("cannot read {}", folder.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        anyhow::bail!(
            "{} is not a folder owned by this user (uid {me})",
            folder.display()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{} is writable by its group or by others (mode {:o}); make it private with chmod 700",
            folder.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}
