//! A compact on-disk index of a registry, for one-shot checks. A `keyhost
//! check` process would otherwise parse the whole TOML file to look up one
//! key, which at a million keys takes seconds. The index is rebuilt from the
//! TOML whenever the registry file changes, and read with a handful of
//! positioned reads: a binary search over fixed-size entries sorted by hash,
//! then one record.
//!
//! It lives in the cache folder (`side_files::index_path`, mode 0600, since
//! it holds the same hashes as the registry). It is valid for one exact
//! version of the registry file (its `FileStamp`). A file that fails any
//! check is rebuilt, never trusted.
//!
//! Layout: `MAGIC`, a u64 header length, the header (JSON), the entries
//! (`ENTRY_LEN` bytes each, sorted by hash), then the records (JSON).

use std::borrow::Cow;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Found, Identity, KeyIndex, KeyRecord, Lookup, Registry, RegistryFile};
use crate::durable;
use crate::side_files::{FileStamp, index_path};
use crate::time::Timestamp;

/// 02: times in records are RFC 3339 strings, hashes typed.
const MAGIC: &[u8; 8] = b"KHCIDX02";
/// hash (32) | key position (8) | record offset (8) | record length (8) |
/// retired until (8, i64::MIN for a current secret).
const ENTRY_LEN: usize = 64;
const NOT_RETIRED: i64 = i64::MIN;

/// What a check needs besides the keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    stamp: FileStamp,
    revision: u64,
    prefix: String,
    policy_config: Vec<(String, String)>,
    entries: u64,
    /// The whole file's length, so a truncated index is never read.
    total_len: u64,
}

/// A key as the index keeps it, with its identity.
#[derive(Debug, Serialize, Deserialize)]
struct IndexedKey {
    key: KeyRecord,
    identity: Option<Identity>,
}

/// An open, current index of a registry.
pub struct CompactRegistry {
    file: File,
    header: Header,
    entries_at: u64,
}

impl CompactRegistry {
    /// The index of `registry` in `cache_dir` (none: no cache), rebuilt
    /// first when it is missing or stale; or, when no index can be kept,
    /// the registry as loaded (the inner `Err`). Errors are the registry's
    /// own; an index that cannot be kept only costs speed.
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
            let bytes = build(&loaded, stamp.clone());
            let written = std::fs::create_dir_all(durable::folder_of(&path))
                .map_err(anyhow::Error::from)
                .and_then(|()| durable::replace(&path, &bytes));
            match written {
                Ok(()) => {
                    if let Some(index) = CompactRegistry::open(&path, &stamp) {
                        return Ok(Ok(index));
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot keep the registry index {}: {e:#}", path.display())
                }
            }
        }
        Ok(Err(loaded))
    }

    /// The index at `path` if it is sound and made from the file `stamp`
    /// describes.
    fn open(path: &Path, stamp: &FileStamp) -> Option<CompactRegistry> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot open the registry index {}: {e}", path.display());
                return None;
            }
        };
        let mut prelude = [0u8; 16];
        file.read_exact_at(&mut prelude, 0).ok()?;
        if &prelude[..8] != MAGIC {
            return None;
        }
        let header_len = u64::from_le_bytes(prelude[8..].try_into().ok()?);
        let file_len = file.metadata().ok()?.len();
        if header_len > file_len {
            return None;
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 16).ok()?;
        let header: Header = serde_json::from_slice(&header).ok()?;
        let entries_at = 16 + header_len;
        let entries_end = header
            .entries
            .checked_mul(ENTRY_LEN as u64)?
            .checked_add(entries_at)?;
        if &header.stamp != stamp || entries_end > file_len || header.total_len != file_len {
            return None;
        }
        Some(CompactRegistry {
            file,
            header,
            entries_at,
        })
    }

    fn entry(&self, at: u64) -> Result<[u8; ENTRY_LEN]> {
        let mut entry = [0u8; ENTRY_LEN];
        self.file
            .read_exact_at(&mut entry, self.entries_at + at * ENTRY_LEN as u64)
            .context("the registry index is truncated")?;
        Ok(entry)
    }

    /// The key whose secret hashes to `hash`. Entries are found by the first
    /// 8 bytes of the hash, then every entry with those bytes is compared in
    /// full, in constant time, as the in-memory index does.
    fn find_entry(&self, hash: &[u8; 32]) -> Result<Option<Found<'static>>> {
        let (mut low, mut high) = (0u64, self.header.entries);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(middle)?[..8] < hash[..8] {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let mut matched = None;
        let mut at = low;
        while at < self.header.entries {
            let entry = self.entry(at)?;
            if entry[..8] != hash[..8] {
                break;
            }
            if bool::from(entry[..32].ct_eq(hash)) {
                matched = Some(entry);
            }
            at += 1;
        }
        matched.map(|entry| self.hit(&entry)).transpose()
    }

    fn hit(&self, entry: &[u8; ENTRY_LEN]) -> Result<Found<'static>> {
        let field = |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().expect("8 bytes"));
        let (position, offset, len) = (field(32), field(40), field(48));
        let retired = field(56) as i64;
        let mut record = vec![0u8; usize::try_from(len).context("record length")?];
        self.file
            .read_exact_at(&mut record, offset)
            .context("the registry index is truncated")?;
        let record: IndexedKey =
            serde_json::from_slice(&record).context("a registry index record is corrupt")?;
        Ok(Found {
            position: usize::try_from(position).context("key position")?,
            key: Cow::Owned(record.key),
            identity: record.identity.map(Cow::Owned),
            retired_until: (retired != NOT_RETIRED).then_some(Timestamp(retired)),
        })
    }
}

impl Lookup for CompactRegistry {
    fn prefix(&self) -> &str {
        &self.header.prefix
    }

    fn revision(&self) -> u64 {
        self.header.revision
    }

    fn policy_config(&self) -> Vec<(String, String)> {
        self.header.policy_config.clone()
    }

    fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
        self.find_entry(hash)
    }
}

/// The bytes of the index of `registry`, read from the file `stamp` names.
fn build(registry: &Registry, stamp: FileStamp) -> Vec<u8> {
    let identities: std::collections::HashMap<&str, &Identity> = registry
        .identities
        .iter()
        .map(|identity| (identity.iam_id.as_str(), identity))
        .collect();
    let mut records = Vec::new();
    let mut located = Vec::with_capacity(registry.keys.len());
    for key in &registry.keys {
        let record = IndexedKey {
            key: key.clone(),
            identity: identities.get(key.owner.as_str()).map(|i| (*i).clone()),
        };
        let start = records.len();
        serde_json::to_writer(&mut records, &record).expect("a record serializes");
        located.push((start as u64, (records.len() - start) as u64));
    }
    let mut entries: Vec<([u8; 32], u64, i64)> = KeyIndex::hashes(registry)
        .map(|(hash, position, retired)| {
            (hash, position as u64, retired.map_or(NOT_RETIRED, |t| t.0))
        })
        .collect();
    entries.sort_unstable_by_key(|entry| entry.0);

    // The header holds the file's length, and its own length is part of
    // that: it is serialized with a placeholder of the same width first.
    let mut header = Header {
        stamp,
        revision: registry.revision,
        prefix: registry.prefix.clone(),
        policy_config: registry.policy.config_pairs(),
        entries: entries.len() as u64,
        total_len: u64::MAX,
    };
    let width = serde_json::to_vec(&header)
        .expect("the header serializes")
        .len();
    let body = (entries.len() * ENTRY_LEN + records.len()) as u64;
    // The real length is shorter; spaces (valid JSON) make up the width.
    header.total_len = 16 + width as u64 + body;
    let mut header = serde_json::to_vec(&header).expect("the header serializes");
    header.resize(width, b' ');
    let records_at = (16 + header.len() + entries.len() * ENTRY_LEN) as u64;
    let mut bytes = Vec::with_capacity(records_at as usize + records.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for (hash, position, retired) in &entries {
        let (offset, len) = located[*position as usize];
        bytes.extend_from_slice(hash);
        bytes.extend_from_slice(&position.to_le_bytes());
        bytes.extend_from_slice(&(records_at + offset).to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&retired.to_le_bytes());
    }
    bytes.extend_from_slice(&records);
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
