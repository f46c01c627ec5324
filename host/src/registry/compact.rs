//! The registry's snapshot in the cache, for one-shot checks. A `keyhost
//! check` process would otherwise parse the whole TOML file to look up one
//! key, which at a million keys takes seconds. The snapshot (the core
//! crate's format, `keyhost_core::snapshot`) is rebuilt from the TOML
//! whenever the registry file changes, and read with a handful of
//! positioned reads.
//!
//! It lives in the cache folder (`side_files::index_path`, mode 0600, since
//! it holds the same hashes as the registry). It is valid for one exact
//! version of the registry file: its header's source is that file's
//! `FileStamp`. A file that fails any check is rebuilt, never trusted.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Result;
use keyhost_core::snapshot::{self, Contents, Snapshot};

use super::{Found, Lookup, Registry, RegistryFile};
use crate::durable;
use crate::progress::Progress;
use crate::side_files::{FileStamp, index_path};

/// An open, current snapshot of a registry.
pub struct CompactRegistry {
    snapshot: Snapshot<File>,
}

impl CompactRegistry {
    /// The snapshot of `registry` in `cache_dir` (none: no cache), rebuilt
    /// first when it is missing or stale; or, when no snapshot can be kept,
    /// the registry as loaded (the inner `Err`). Errors are the registry's
    /// own; a snapshot that cannot be kept only costs speed.
    pub fn open_or_build(
        registry: &RegistryFile,
        cache_dir: Option<&Path>,
    ) -> Result<Result<CompactRegistry, Registry>> {
        let Some(cache_dir) = cache_dir else {
            return Ok(Err(registry.load()?));
        };
        let path = index_path(cache_dir, registry.path());
        let stamp = FileStamp::of(registry.path()).ok();
        if let Some(stamp) = &stamp
            && let Some(index) = CompactRegistry::open(&path, stamp)
        {
            return Ok(Ok(index));
        }
        let loaded = registry.load()?;
        // A registry that changed while it was read is indexed next time.
        if let Some(stamp) = stamp
            && FileStamp::of(registry.path()).ok().as_ref() == Some(&stamp)
        {
            let bytes = encode_snapshot(&loaded, source_of(&stamp));
            let written = std::fs::create_dir_all(durable::folder_of(&path))
                .map_err(anyhow::Error::from)
                .and_then(|()| durable::replace(&path, &bytes));
            match written {
                Ok(()) => {
                    // Checked whole as it is opened: the file at `path` may
                    // by now be another writer's.
                    if let Some(index) = CompactRegistry::open(&path, &stamp) {
                        return Ok(Ok(index));
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot keep the registry snapshot {}: {e:#}",
                        path.display()
                    )
                }
            }
        }
        Ok(Err(loaded))
    }

    /// The snapshot at `path` if it is sound and made from the file `stamp`
    /// describes. A lookup reads a few entries, so a byte changed elsewhere
    /// would not show: each version of the file (any write changes its
    /// stamp) is checked whole, against its checksum, the first time it is
    /// opened, and the stamp of the version checked is kept beside it.
    fn open(path: &Path, stamp: &FileStamp) -> Option<CompactRegistry> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot open the registry snapshot {}: {e}", path.display());
                return None;
            }
        };
        // The stamp of the very file opened, whatever the path names now.
        let own = FileStamp::of_meta(&file.metadata().ok()?);
        let snapshot = Snapshot::open(file).ok()?;
        if snapshot.header().source != source_of(stamp) {
            return None;
        }
        let checked = std::fs::read(checked_path(path)).ok();
        if checked.as_deref() != Some(source_of(&own).as_bytes()) {
            if let Err(e) = snapshot.verify() {
                tracing::warn!(
                    "the registry snapshot in the cache is damaged; making it again: {e:#}"
                );
                return None;
            }
            note_checked(path, &own);
        }
        Some(CompactRegistry { snapshot })
    }
}

/// Where the stamp of the snapshot version last checked whole is kept.
fn checked_path(index: &Path) -> PathBuf {
    index.with_extension("checked")
}

/// Notes that the snapshot at `path`, in the version `stamp` describes, is
/// sound. A note that cannot be kept costs a whole check next time.
fn note_checked(path: &Path, stamp: &FileStamp) {
    if let Err(e) = durable::replace(&checked_path(path), source_of(stamp).as_bytes()) {
        tracing::warn!("cannot note the registry snapshot as checked: {e:#}");
    }
}

impl Lookup for CompactRegistry {
    fn prefix(&self) -> &str {
        self.snapshot.prefix()
    }

    fn revision(&self) -> u64 {
        self.snapshot.revision()
    }

    fn policy_config(&self) -> Vec<(String, String)> {
        self.snapshot.policy_config()
    }

    fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
        self.snapshot.find(hash)
    }
}

/// The snapshot of `registry` as bytes, with its header: the one in
/// `cache_dir` when it is current (no TOML parsed), else made now (and kept
/// when there is a cache).
///
/// What it returns is handed on whole (to a gate, a filter, a file), so
/// every byte of a cached snapshot is checked against its checksum first;
/// one that fails is removed and made again, never handed on.
pub fn snapshot_bytes(registry: &RegistryFile, cache_dir: Option<&Path>) -> Result<Vec<u8>> {
    // The second time round, a damaged snapshot removed the first time has
    // been made again.
    for _ in 0..2 {
        let index = match CompactRegistry::open_or_build(registry, cache_dir)? {
            Ok(index) => index,
            Err(loaded) => return Ok(encode_snapshot(&loaded, "keyhost".to_string())),
        };
        let bytes = index.snapshot.bytes()?;
        let Err(e) = snapshot::verify_bytes(&bytes) else {
            return Ok(bytes);
        };
        tracing::warn!("the registry snapshot in the cache is damaged; making it again: {e:#}");
        if let Some(cache_dir) = cache_dir {
            let path = index_path(cache_dir, registry.path());
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
    Ok(encode_snapshot(&registry.load()?, "keyhost".to_string()))
}

/// How a snapshot's header names the registry file it was made from.
fn source_of(stamp: &FileStamp) -> String {
    serde_json::to_string(stamp).expect("a stamp serializes")
}

/// The bytes of a snapshot of `registry`, naming `source` as its origin.
pub fn encode_snapshot(registry: &Registry, source: String) -> Vec<u8> {
    let progress = Progress::keys("making the registry snapshot", registry.keys.len());
    let contents = Contents {
        source,
        revision: registry.revision,
        prefix: &registry.prefix,
        policy_config: registry.policy.config_pairs(),
        keys: &registry.keys,
        identities: &registry.identities,
    };
    let bytes = snapshot::encode_reporting(&contents, &mut |done| progress.set(done));
    progress.finish();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_format;

    fn registry_file(dir: &Path, keys: usize) -> (RegistryFile, Vec<String>) {
        let synthetic = crate::synthetic::registry(keys, keys);
        let file = RegistryFile::new(dir.join("keys.toml"));
        file.create(&synthetic.registry).unwrap();
        (file, synthetic.secrets)
    }

    fn indexed(file: &RegistryFile, cache: &Path) -> CompactRegistry {
        match CompactRegistry::open_or_build(file, Some(cache)).unwrap() {
            Ok(index) => index,
            Err(_) => panic!("no index was kept"),
        }
    }

    #[test]
    fn every_key_is_found_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (file, secrets) = registry_file(dir.path(), 50);
        let index = indexed(&file, &dir.path().join("cache"));
        let registry = file.load().unwrap();
        for secret in &secrets {
            let hit = index.find(&key_format::hash(secret)).unwrap().unwrap();
            let expected = &registry.keys[hit.position];
            assert_eq!(hit.key.id, expected.id);
            assert_eq!(hit.key.hash.0, key_format::hash(secret));
            assert_eq!(hit.identity.unwrap().iam_id, expected.owner);
        }
        assert!(index.find(&[0u8; 32]).unwrap().is_none());
        assert!(index.find(&[0xff; 32]).unwrap().is_none());
    }

    #[test]
    fn a_changed_registry_is_indexed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (file, secrets) = registry_file(dir.path(), 5);
        let first = indexed(&file, &cache);
        assert_eq!(first.revision(), 0);
        file.update(|registry| {
            registry.keys.remove(0);
            Ok(())
        })
        .unwrap();
        let second = indexed(&file, &cache);
        assert_eq!(second.revision(), 1);
        let gone = secrets
            .iter()
            .filter(|s| second.find(&key_format::hash(s)).unwrap().is_none())
            .count();
        assert_eq!(gone, 1);
    }

    #[test]
    fn bytes_handed_on_are_checked_even_when_the_cache_noted_them_sound() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (file, _) = registry_file(dir.path(), 5);
        let sound = snapshot_bytes(&file, Some(&cache)).unwrap();
        // Damage that the note of the last whole check does not show: the
        // note is made to name the damaged version.
        let path = index_path(&cache, file.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        note_checked(&path, &FileStamp::of(&path).unwrap());
        assert!(CompactRegistry::open(&path, &FileStamp::of(file.path()).unwrap()).is_some());
        let handed_on = snapshot_bytes(&file, Some(&cache)).unwrap();
        snapshot::verify_bytes(&handed_on).unwrap();
        assert_eq!(handed_on, sound, "made again, the same as before");
    }

    #[test]
    fn a_corrupt_index_is_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (file, secrets) = registry_file(dir.path(), 5);
        indexed(&file, &cache);
        let path = index_path(&cache, file.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let index = indexed(&file, &cache);
        for secret in &secrets {
            assert!(index.find(&key_format::hash(secret)).unwrap().is_some());
        }
    }
}
