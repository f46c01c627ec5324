//! The registry's snapshot in the cache: what `keyhost check` and `keyhost
//! serve` read. Either would otherwise parse the whole TOML file, which at
//! a million keys takes seconds and gigabytes. The snapshot (the core
//! crate's format, `keyhost_core::snapshot`) is rebuilt from the TOML
//! whenever the registry file changes, and read where it lies: mapped, a
//! lookup touches a handful of pages.
//!
//! It lives in the cache folder (`side_files::index_path`, mode 0600, since
//! it holds the same hashes as the registry). It is valid for one exact
//! version of the registry file: its header's source is that file's
//! `FileStamp`. A file that fails any check is rebuilt, never trusted.
//! keyhost replaces it by renaming a new file into place, never in place,
//! so a mapping in use keeps the version it mapped.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::ErrorKind;
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use keyhost_core::snapshot::{self, Contents, ReadAt, Snapshot};

use super::changes::Changes;
use super::decoded::DecodedKeys;
use super::{Found, Identity, KeyRecord, Lookup, Registry, RegistryFile};
use crate::durable;
use crate::iam::IamId;
use crate::progress::Progress;
use crate::side_files::{FileStamp, RegistryStamp, changes_path, index_path, private_folder};

/// A snapshot's bytes: its file in the cache, mapped, or made in memory
/// when no cache can keep it.
pub enum SnapshotBytes {
    /// The file in the cache.
    Mapped(memmap2::Mmap),
    /// Made in memory.
    Made(Vec<u8>),
}

impl Deref for SnapshotBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SnapshotBytes::Mapped(map) => map,
            SnapshotBytes::Made(bytes) => bytes,
        }
    }
}

impl ReadAt for SnapshotBytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }

    fn size(&self) -> Result<u64> {
        Ok(self.len() as u64)
    }
}

/// How long a reader waits for a writer of the registry (who makes its
/// snapshot) before making one itself.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a writer of a snapshot waits for another to finish.
const SNAPSHOT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A snapshot in use that cannot be read as its header says (a byte
/// changed on disk since it was checked): what was asked fails closed.
#[derive(Debug, thiserror::Error)]
#[error("the registry snapshot in force cannot be read: {0:#}")]
pub struct Unreadable(#[from] anyhow::Error);

/// An open, current snapshot of a registry.
pub struct CompactRegistry {
    snapshot: Snapshot<SnapshotBytes>,
    /// Set when a read failed: the bytes are not as they were checked,
    /// and serve makes the snapshot again.
    damaged: AtomicBool,
    /// The file mapped, and its stamp when it was last checked: a mapping
    /// shows a change made to its file in place, so one is watched for.
    mapped: Option<(File, Mutex<FileStamp>)>,
    /// The snapshot of the registry's changes file, laid over this one.
    changes: Option<ChangesSnapshot>,
    /// Keys found lately, decoded; emptied whenever `changes` is set.
    decoded: DecodedKeys,
}

/// What stands of a registry's changes, checked: their keys, with the
/// identities those belong to, and the key ids they supersede.
pub(super) struct ChangesInForce {
    keys: Registry,
    superseded: Vec<String>,
}

/// The snapshot of a registry's key changes (registry/changes.rs): small,
/// held in memory, and asked first.
struct ChangesSnapshot {
    snapshot: Snapshot<SnapshotBytes>,
    /// The key ids it speaks for: the file's snapshot's keys of these ids
    /// are not in force.
    superseded: HashSet<String>,
    /// How many keys the snapshot under it holds: its keys' positions come
    /// after theirs.
    after: usize,
}

impl ChangesSnapshot {
    fn of(snapshot: Snapshot<SnapshotBytes>, under: &Snapshot<SnapshotBytes>) -> ChangesSnapshot {
        ChangesSnapshot {
            superseded: snapshot.header().superseded.iter().cloned().collect(),
            after: under.header().keys as usize,
            snapshot,
        }
    }

    /// One snapshot of `file`'s registry with these changes made.
    fn laid_over<S: ReadAt>(&self, file: &Snapshot<S>) -> Result<Vec<u8>> {
        let keys = self.merged(file.all_keys()?, self.snapshot.all_keys()?);
        let identities = file.all_identities()?;
        Ok(snapshot::encode(&Contents {
            source: "keyhost".to_string(),
            revision: self.snapshot.revision(),
            prefix: file.prefix(),
            policy_config: file.policy_config(),
            keys: &keys,
            identities: &identities,
            superseded: Vec::new(),
        }))
    }

    /// `keys` of the file's snapshot, in order, with `changed` (keys of
    /// this one) in place of those it supersedes, and after them the rest
    /// of `changed`.
    fn merged(&self, mut keys: Vec<KeyRecord>, changed: Vec<KeyRecord>) -> Vec<KeyRecord> {
        super::changes::lay_over(&mut keys, changed, &self.superseded);
        keys
    }

    fn placed<'a>(&self, found: Found<'a>) -> Found<'a> {
        Found {
            position: self.after + found.position,
            ..found
        }
    }
}

impl CompactRegistry {
    /// What a one-shot check reads: the snapshot of `registry` in
    /// `cache_dir` (none: no cache), made first when it is missing or
    /// stale; or, with no cache, the registry as loaded (the inner `Err`).
    /// Errors are the registry's own; a snapshot that cannot be kept only
    /// costs speed.
    pub fn open_or_build(
        registry: &RegistryFile,
        cache_dir: Option<&Path>,
    ) -> Result<Result<CompactRegistry, Registry>> {
        match cache_dir {
            Some(_) => Ok(Ok(CompactRegistry::current(registry, cache_dir)?.0)),
            None => Ok(Err(registry.load()?)),
        }
    }

    /// What serve holds: the snapshot of `registry` in `cache_dir` when it
    /// is current, else made from the TOML now (and kept in the cache, when
    /// there is one), with its changes laid over it; with the stamp of the
    /// registry it is of.
    pub fn current(
        registry: &RegistryFile,
        cache_dir: Option<&Path>,
    ) -> Result<(CompactRegistry, RegistryStamp)> {
        let Some(cache_dir) = cache_dir else {
            return CompactRegistry::from_toml(registry, None);
        };
        let cached = || {
            let stamp = FileStamp::of(registry.path()).ok()?;
            let index = CompactRegistry::open(&index_path(cache_dir, registry.path()), &stamp)?;
            Some((index, stamp))
        };
        registry.read_as_one(|| {
            // A writer keeps the snapshot of what it wrote before it lets
            // go of the registry's lock: wait for one at work rather than
            // make the same snapshot beside it.
            let hit = cached().or_else(|| {
                registry
                    .wait_for_writers(WRITER_WAIT)
                    .then(cached)
                    .flatten()
            });
            let (index, stamp) = match hit {
                Some(hit) => hit,
                None => CompactRegistry::base_from_toml(registry, Some(cache_dir))?,
            };
            index.with_changes(registry, stamp, Some(cache_dir), false)
        })
    }

    /// The snapshot of `registry` made from the TOML now, whatever the
    /// cache holds (SIGHUP, and a snapshot in force found damaged), and
    /// kept in `cache_dir`; with the stamp of the registry read.
    pub fn from_toml(
        registry: &RegistryFile,
        cache_dir: Option<&Path>,
    ) -> Result<(CompactRegistry, RegistryStamp)> {
        registry.read_as_one(|| {
            let (index, stamp) = CompactRegistry::base_from_toml(registry, cache_dir)?;
            index.with_changes(registry, stamp, cache_dir, true)
        })
    }

    /// The snapshot of the registry file alone, changes aside: the one in
    /// `cache_dir` when it is current, else made now; with the stamp of
    /// the file it is of. For a writer, who holds the registry's lock.
    pub(super) fn current_file(
        registry: &RegistryFile,
        cache_dir: &Path,
    ) -> Result<(CompactRegistry, FileStamp)> {
        if let Ok(stamp) = FileStamp::of(registry.path())
            && let Some(index) =
                CompactRegistry::open(&index_path(cache_dir, registry.path()), &stamp)
        {
            return Ok((index, stamp));
        }
        CompactRegistry::base_from_toml(registry, Some(cache_dir))
    }

    /// The registry file's key `id`, changes aside.
    pub(super) fn file_key(&self, id: &str) -> Result<Option<KeyRecord>, Unreadable> {
        Ok(self
            .noted(self.snapshot.key_by_id(id))?
            .map(|found| found.key.into_owned()))
    }

    /// How many keys the registry file holds.
    pub(super) fn key_count(&self) -> u64 {
        self.snapshot.header().keys
    }

    /// The snapshot of the registry file alone, made from its TOML now.
    fn base_from_toml(
        registry: &RegistryFile,
        cache_dir: Option<&Path>,
    ) -> Result<(CompactRegistry, FileStamp)> {
        let (loaded, stamp) = registry.load_file_stamped()?;
        let index = CompactRegistry::of_committed(&loaded, &stamp, registry.path(), cache_dir);
        Ok((index, stamp))
    }

    /// This snapshot of the registry file stamped `main`, with the
    /// snapshot of its changes file laid over it when it has one (the one
    /// in the cache when it is of these two files and `fresh` is not
    /// asked for, else made now and kept there).
    pub fn with_changes(
        mut self,
        registry: &RegistryFile,
        main: FileStamp,
        cache_dir: Option<&Path>,
        fresh: bool,
    ) -> Result<(CompactRegistry, RegistryStamp)> {
        let changes_file = changes_path(registry.path());
        let changes_stamp = match FileStamp::of(&changes_file) {
            Ok(stamp) => stamp,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok((
                    self,
                    RegistryStamp {
                        main,
                        changes: None,
                    },
                ));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read registry changes {}", changes_file.display())
                });
            }
        };
        let kept = cache_dir.map(|dir| changes_snapshot_path(&index_path(dir, registry.path())));
        let stamp_of = |changes: FileStamp| RegistryStamp {
            main: main.clone(),
            changes: Some(changes),
        };
        let cached = kept
            .as_deref()
            .filter(|_| !fresh)
            .and_then(open_trusted)
            .and_then(|(mut file, _)| {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
                Snapshot::open(SnapshotBytes::Made(bytes)).ok()
            })
            .filter(|read| {
                read.header().source == source_of(&stamp_of(changes_stamp.clone()))
                    && read.verify().is_ok()
            });
        let (snapshot, stamp) = match cached {
            Some(snapshot) => (snapshot, stamp_of(changes_stamp)),
            None => {
                let in_changes = || format!("registry changes {}", changes_file.display());
                // The stamp of the very file read.
                let Some((text, changes_stamp)) = registry.read_changes()? else {
                    return Ok((
                        self,
                        RegistryStamp {
                            main,
                            changes: None,
                        },
                    ));
                };
                let stamp = stamp_of(changes_stamp);
                let changes = Changes::parse(&text).with_context(in_changes)?;
                if !changes.apply_to(self.revision()).with_context(in_changes)? {
                    return Ok((self, stamp));
                }
                let in_force = self.changes_in_force(&changes).with_context(in_changes)?;
                let bytes = self.changes_snapshot(&in_force, source_of(&stamp));
                if let Some(path) = &kept {
                    keep_changes_snapshot(path, registry.path(), &stamp, &bytes);
                }
                (Snapshot::open(SnapshotBytes::Made(bytes))?, stamp)
            }
        };
        self.lay_over(snapshot);
        Ok((self, stamp))
    }

    /// What stands of `changes` made to this registry file, checked as a
    /// registry's keys are: all that can fail in making their snapshot.
    pub(super) fn changes_in_force(&self, changes: &Changes) -> Result<ChangesInForce> {
        let mut overridden = Vec::new();
        let effective = changes.effective(
            |id| {
                Ok(self
                    .snapshot
                    .key_by_id(id)?
                    .map(|found| found.key.into_owned()))
            },
            &mut overridden,
        )?;
        for id in &overridden {
            tracing::warn!(
                key = %id,
                "the registry file was edited by hand after a change of this key: its version there is in force"
            );
        }
        let superseded = effective.superseded();
        // The identities its keys belong to, and their owners: what a check
        // of them reads, and what makes them a registry's keys.
        let mut identities: Vec<Identity> = Vec::new();
        let mut wanted: Vec<String> = effective.keys.iter().map(|k| k.owner.to_string()).collect();
        while let Some(iam_id) = wanted.pop() {
            if identities.iter().any(|i| i.iam_id.as_str() == iam_id) {
                continue;
            }
            if let Some(identity) = self.snapshot.identity(&iam_id)? {
                wanted.extend(identity.owner.as_ref().map(|o| o.to_string()));
                identities.push(identity);
            }
        }
        let mut keys = Registry::new(self.snapshot.prefix());
        keys.revision = changes.revision;
        keys.identities = identities;
        keys.keys = effective.keys;
        keys.check_consistency("")?;
        for key in &keys.keys {
            for hash in std::iter::once(&key.hash).chain(key.retired.iter().map(|r| &r.hash)) {
                if let Some(other) = self.snapshot.find(&hash.0)?
                    && !superseded.contains(&other.key.id)
                {
                    anyhow::bail!("key {}: its hash is also key {}'s", key.id, other.key.id);
                }
            }
        }
        let mut superseded: Vec<String> = superseded.into_iter().collect();
        superseded.sort_unstable();
        Ok(ChangesInForce { keys, superseded })
    }

    /// The snapshot of `changes`, naming `source`.
    fn changes_snapshot(&self, changes: &ChangesInForce, source: String) -> Vec<u8> {
        snapshot::encode(&Contents {
            source,
            revision: changes.keys.revision,
            prefix: self.snapshot.prefix(),
            policy_config: self.snapshot.policy_config(),
            keys: &changes.keys.keys,
            identities: &changes.keys.identities,
            superseded: changes.superseded.clone(),
        })
    }

    /// This snapshot of the registry file with `changes` laid over it,
    /// made by the writer of the changes file (stamped `stamp`) after it
    /// wrote it, and kept in `cache_dir`. It cannot fail: the write is done.
    pub(super) fn with_written_changes(
        mut self,
        changes: &ChangesInForce,
        stamp: &RegistryStamp,
        registry_path: &Path,
        cache_dir: &Path,
    ) -> CompactRegistry {
        let bytes = self.changes_snapshot(changes, source_of(stamp));
        let kept = changes_snapshot_path(&index_path(cache_dir, registry_path));
        keep_changes_snapshot(&kept, registry_path, stamp, &bytes);
        let snapshot =
            Snapshot::open(SnapshotBytes::Made(bytes)).expect("a snapshot made here opens");
        self.lay_over(snapshot);
        self
    }

    /// Lays the snapshot of changes over this one; what was decoded of
    /// the registry before them may no longer stand.
    fn lay_over(&mut self, changes: Snapshot<SnapshotBytes>) {
        self.changes = Some(ChangesSnapshot::of(changes, &self.snapshot));
        self.decoded = DecodedKeys::default();
    }

    /// Whether changes are laid over the registry file's snapshot.
    pub fn has_changes(&self) -> bool {
        self.changes.is_some()
    }

    /// The snapshot of `loaded`, read from (or just written to) the
    /// registry file stamped `stamp` at `registry_path`: kept in
    /// `cache_dir` and mapped from there, or held in memory when it cannot
    /// be kept.
    pub fn of_committed(
        loaded: &Registry,
        stamp: &FileStamp,
        registry_path: &Path,
        cache_dir: Option<&Path>,
    ) -> CompactRegistry {
        let bytes = encode_snapshot(loaded, source_of(stamp));
        if let Some(cache_dir) = cache_dir {
            let path = index_path(cache_dir, registry_path);
            // Under the lock every writer of the snapshot takes, the
            // temporary files of writers killed on the way are removed. A
            // registry changed since it was read here has a newer snapshot
            // coming, or needs one made: this one is not written over it.
            let written = private_folder(durable::folder_of(&path)).and_then(|()| {
                // A writer stopped while holding it (a check at a terminal,
                // suspended) must not hold this one up for ever: past the
                // wait, this snapshot is held in memory instead.
                let Some(_lock) = durable::lock_within(&path, SNAPSHOT_LOCK_WAIT)? else {
                    return Ok(false);
                };
                if FileStamp::of(registry_path).ok().as_ref() != Some(stamp) {
                    return Ok(false);
                }
                durable::remove_stale_temps(&path);
                durable::remove_stale_temps(&checked_path(&path));
                remove_stale_changes_temps(&changes_snapshot_path(&path));
                let written = durable::replace_and_stamp(&path, &bytes)?;
                // Made here, so sound as written; opened again, the file at
                // `path` may by now be another writer's, and that one is
                // checked whole.
                write_note(&path, &written);
                Ok(true)
            });
            match written {
                Ok(true) => {
                    if let Some(index) = CompactRegistry::open(&path, stamp) {
                        return index;
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        "cannot keep the registry snapshot {}: {e:#}",
                        path.display()
                    )
                }
            }
        }
        let snapshot =
            Snapshot::open(SnapshotBytes::Made(bytes)).expect("a snapshot made here opens");
        CompactRegistry::of(snapshot, None)
    }

    fn of(snapshot: Snapshot<SnapshotBytes>, mapped: Option<(File, FileStamp)>) -> CompactRegistry {
        CompactRegistry {
            snapshot,
            damaged: AtomicBool::new(false),
            mapped: mapped.map(|(file, stamp)| (file, Mutex::new(stamp))),
            changes: None,
            decoded: DecodedKeys::default(),
        }
    }

    /// Whether it may no longer be as it was checked: a read of it failed,
    /// or its file was changed in place (keyhost only ever renames a new
    /// one over it).
    /// Reads the whole file again when its stamp moved.
    pub fn damaged(&self) -> bool {
        if self.damaged.load(Ordering::Relaxed) {
            return true;
        }
        let Some((file, checked)) = &self.mapped else {
            return false;
        };
        let Ok(meta) = file.metadata() else {
            return true;
        };
        // A file renamed over it leaves this one unlinked, its bytes as
        // they were (and its change time moved): replaced, not damaged.
        if meta.nlink() == 0 {
            return false;
        }
        let now = FileStamp::of_meta(&meta);
        let mut checked = checked.lock().expect("stamp lock");
        if now == *checked {
            return false;
        }
        // Its times or links changed (touch, chmod, a backup's hard link),
        // or its bytes did: only reading it whole tells which.
        let same = Snapshot::open(file)
            .and_then(|read| {
                read.verify()?;
                Ok(read.header() == self.snapshot.header())
            })
            .unwrap_or(false);
        if same {
            *checked = now;
        } else {
            self.damaged.store(true, Ordering::Relaxed);
        }
        !same
    }

    /// `read`, noting a failure.
    fn noted<T>(&self, read: Result<T>) -> Result<T> {
        if read.is_err() {
            self.damaged.store(true, Ordering::Relaxed);
        }
        read
    }

    /// Whether it is mapped from the cache (else held in memory: no cache
    /// folder could keep it).
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// The snapshot read.
    pub fn snapshot(&self) -> &Snapshot<SnapshotBytes> {
        &self.snapshot
    }

    /// The identity `iam_id`.
    pub fn identity(&self, iam_id: &IamId) -> Result<Option<Identity>, Unreadable> {
        self.noted(self.snapshot.identity(iam_id.as_str()))
            .map_err(Unreadable::from)
    }

    /// The key `id`, with its identity.
    pub fn key(&self, id: &str) -> Result<Option<Found<'static>>, Unreadable> {
        self.noted(self.key_by_id(id)).map_err(Unreadable::from)
    }

    fn key_by_id(&self, id: &str) -> Result<Option<Found<'static>>> {
        match &self.changes {
            Some(changes) if changes.superseded.contains(id) => Ok(changes
                .snapshot
                .key_by_id(id)?
                .map(|found| changes.placed(found))),
            _ => self.snapshot.key_by_id(id),
        }
    }

    /// The keys `manager` manages: their own and those of the service IDs
    /// they own, in the registry's order.
    pub fn keys_managed_by(&self, manager: &IamId) -> Result<Vec<KeyRecord>, Unreadable> {
        let managed =
            |snapshot: &Snapshot<SnapshotBytes>| snapshot.keys_managed_by(manager.as_str());
        let in_file = self.noted(managed(&self.snapshot))?;
        let Some(changes) = &self.changes else {
            return Ok(in_file);
        };
        let changed = self.noted(managed(&changes.snapshot))?;
        Ok(changes.merged(in_file, changed))
    }

    /// The service IDs `owner` owns, in the registry's order.
    pub fn service_ids_of(&self, owner: &IamId) -> Result<Vec<Identity>, Unreadable> {
        self.noted(self.snapshot.identities_owned_by(owner.as_str()))
            .map_err(Unreadable::from)
    }

    /// The whole snapshot as bytes: the registry file's as it lies, or,
    /// with changes laid over it, one made of both.
    pub fn whole_bytes(&self) -> Result<Cow<'_, [u8]>> {
        match &self.changes {
            None => Ok(Cow::Borrowed(self.snapshot.source())),
            Some(changes) => Ok(Cow::Owned(changes.laid_over(&self.snapshot)?)),
        }
    }

    /// The snapshot at `path` if it is sound and made from the file `stamp`
    /// describes. A lookup reads a few entries, so a byte changed elsewhere
    /// would not show: each version of the file (any write changes its
    /// stamp) is checked whole, against its checksum, the first time it is
    /// opened, and the stamp of the version checked is kept beside it.
    fn open(path: &Path, stamp: &FileStamp) -> Option<CompactRegistry> {
        let (file, meta) = open_trusted(path)?;
        let own = FileStamp::of_meta(&meta);
        let read = Snapshot::open(&file).ok()?;
        if read.header().source != source_of(stamp) {
            return None;
        }
        let checked = std::fs::read(checked_path(path)).ok();
        if checked.as_deref() != Some(source_of(&own).as_bytes()) {
            // Read through the file, not the mapping: a check of every byte
            // then leaves none of them resident in this process.
            if let Err(e) = read.verify() {
                tracing::warn!(
                    "the registry snapshot in the cache is damaged; making it again: {e:#}"
                );
                return None;
            }
            note_checked(path, &own);
        }
        // SAFETY: keyhost never changes a snapshot file in place (it
        // renames a new one over it), so the mapping's bytes stay as
        // checked for as long as it is held.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let snapshot = Snapshot::open(SnapshotBytes::Mapped(map)).ok()?;
        Some(CompactRegistry::of(snapshot, Some((file, own))))
    }
}

/// The snapshot file at `path` in the cache, opened, if it is there and
/// this user's alone: a snapshot another user could write could name any
/// key valid.
fn open_trusted(path: &Path) -> Option<(File, std::fs::Metadata)> {
    if let Err(e) = private_folder(durable::folder_of(path)) {
        tracing::warn!("not reading the registry snapshot in the cache: {e:#}");
        return None;
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot open the registry snapshot {}: {e}", path.display());
            return None;
        }
    };
    // The stamp of the very file opened, whatever the path names now.
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o022 != 0 {
        tracing::warn!(
            "not reading the registry snapshot {}: another user may write it",
            path.display()
        );
        return None;
    }
    Some((file, meta))
}

/// Where the snapshot of the registry's changes is kept, beside the
/// snapshot of its file at `index`.
fn changes_snapshot_path(index: &Path) -> PathBuf {
    index.with_extension("changes")
}

/// Where the stamp of the snapshot version last checked whole is kept.
fn checked_path(index: &Path) -> PathBuf {
    index.with_extension("checked")
}

/// Notes that the snapshot at `path`, in the version `stamp` describes, is
/// sound, under the lock every writer of the snapshot takes (so that the
/// next one can remove what a note killed on the way left). A note that
/// cannot be kept costs a whole check next time.
fn note_checked(path: &Path, stamp: &FileStamp) {
    match durable::lock_within(path, SNAPSHOT_LOCK_WAIT) {
        Ok(Some(_lock)) => write_note(path, stamp),
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot note the registry snapshot as checked: {e:#}"),
    }
}

/// [`note_checked`], the lock held.
fn write_note(path: &Path, stamp: &FileStamp) {
    if let Err(e) = durable::replace(&checked_path(path), source_of(stamp).as_bytes()) {
        tracing::warn!("cannot note the registry snapshot as checked: {e:#}");
    }
}

/// Removes what writers of the changes snapshot at `path` killed on the way
/// left, under their lock: after a fold no changes snapshot is written, so
/// the registry snapshot's writer does it. It holds its own lock already;
/// a changes writer never takes that one, so neither waits on the other.
/// Where no changes writer ever ran (no lock file), there is nothing to
/// remove, and no lock file is made for nothing.
fn remove_stale_changes_temps(path: &Path) {
    if !crate::side_files::lock_path(path).exists() {
        return;
    }
    if let Ok(Some(_lock)) = durable::lock_within(path, SNAPSHOT_LOCK_WAIT) {
        durable::remove_stale_temps(path);
    }
}

/// Keeps the snapshot of a registry's changes at `path`, unless the
/// registry moved on from `stamp` meanwhile; a failure costs only speed.
fn keep_changes_snapshot(path: &Path, registry_path: &Path, stamp: &RegistryStamp, bytes: &[u8]) {
    let kept = private_folder(durable::folder_of(path)).and_then(|()| {
        let Some(_lock) = durable::lock_within(path, SNAPSHOT_LOCK_WAIT)? else {
            return Ok(());
        };
        if RegistryStamp::of(registry_path).ok().as_ref() == Some(stamp) {
            durable::remove_stale_temps(path);
            durable::replace(path, bytes)?;
        }
        Ok(())
    });
    if let Err(e) = kept {
        tracing::warn!("cannot keep the snapshot of the registry's changes: {e:#}");
    }
}

impl Lookup for CompactRegistry {
    fn prefix(&self) -> &str {
        self.snapshot.prefix()
    }

    fn revision(&self) -> u64 {
        match &self.changes {
            Some(changes) => changes.snapshot.revision(),
            None => self.snapshot.revision(),
        }
    }

    fn policy_config(&self) -> Vec<(String, String)> {
        self.snapshot.policy_config()
    }

    fn find(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
        if let Some(found) = self.decoded.get(hash) {
            return Ok(Some(found));
        }
        let found = self.find_in_snapshots(hash)?;
        Ok(found.map(|found| self.decoded.keep(hash, found)))
    }

    fn find_by_id(&self, id: &str) -> Result<Option<Found<'_>>> {
        self.noted(self.key_by_id(id))
    }
}

impl CompactRegistry {
    /// The key `hash` finds in the snapshot of changes, else in the
    /// file's, decoded now.
    fn find_in_snapshots(&self, hash: &[u8; 32]) -> Result<Option<Found<'_>>> {
        if let Some(changes) = &self.changes
            && let Some(found) = changes.snapshot.find(hash)?
        {
            return Ok(Some(changes.placed(found)));
        }
        let found = self.noted(self.snapshot.find(hash))?;
        Ok(found.filter(|found| {
            self.changes
                .as_ref()
                .is_none_or(|changes| !changes.superseded.contains(&found.key.id))
        }))
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
        let bytes = index.snapshot.source().to_vec();
        let Err(e) = snapshot::verify_bytes(&bytes) else {
            return match &index.changes {
                None => Ok(bytes),
                Some(changes) => changes.laid_over(&Snapshot::open(bytes)?),
            };
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

/// How a snapshot's header names the registry file it was made from (a
/// `FileStamp`), or for one of a registry's changes the two files (a
/// `RegistryStamp`).
fn source_of(stamp: &impl serde::Serialize) -> String {
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
        superseded: Vec::new(),
    };
    let bytes = snapshot::encode_reporting(&contents, &mut |done| progress.set(done));
    progress.finish();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_format;
    use crate::registry::KeyHash;

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

    /// Keys of `mixed_registry`'s service IDs and users written to the
    /// changes file, some created, changed and deleted there, some the
    /// file's changed and deleted.
    fn with_changes(dir: &Path) -> (RegistryFile, PathBuf) {
        use crate::lifecycle::{self, NewKey, StateChange};
        let mut registry = mixed_registry();
        registry.keys.retain(|key| key.id != "kid_orphan");
        for key in &mut registry.keys {
            if key.owner.kind() == crate::iam::IdentityKind::ServiceId {
                key.kind = crate::iam::KeyKind::ServiceId;
            }
        }
        registry.changes_from_keys = 0;
        registry.max_keys_per_identity = 100;
        let cache = dir.join("cache");
        let file = RegistryFile::new(dir.join("keys.toml")).keeping_snapshots(Some(cache.clone()));
        file.create(&registry).unwrap();
        let alice = registry.identities[0].iam_id.clone();
        let svc: IamId = "service-id:svc0".parse().unwrap();
        let now = crate::time::Timestamp::now();
        let new = |name: &str, for_identity: Option<IamId>| NewKey {
            for_identity,
            name: name.into(),
            ..NewKey::default()
        };
        let touches = |id: &str| super::super::Touches::Key(id.to_string());
        let mut created = Vec::new();
        for (n, target) in [None, Some(svc.clone()), None].into_iter().enumerate() {
            let of = target.clone().unwrap_or_else(|| alice.clone());
            let ((record, _), _) = file
                .update_keys(&alice, super::super::Touches::KeysOf(of), |r| {
                    Ok(lifecycle::create_key(
                        r,
                        &alice,
                        new(&format!("new{n}"), target),
                        now,
                    )?)
                })
                .unwrap();
            created.push(record.id);
        }
        let in_file: Vec<String> = registry
            .keys
            .iter()
            .filter(|k| k.owner == alice || k.owner == svc)
            .map(|k| k.id.clone())
            .take(2)
            .collect();
        for (id, delete) in [
            (&created[1], true),
            (&in_file[0], true),
            (&in_file[1], false),
            (&created[2], false),
        ] {
            file.update_keys(&alice, touches(id), |r| {
                if delete {
                    lifecycle::delete_key(r, id, &alice)?;
                } else {
                    lifecycle::change_state(r, id, &alice, StateChange::Disable, now)?;
                }
                Ok(())
            })
            .unwrap();
        }
        assert!(crate::side_files::changes_path(file.path()).exists());
        (file, cache)
    }

    #[test]
    fn a_fold_between_reading_the_registry_file_and_its_changes_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _cache) = with_changes(dir.path());
        let whole = file.load().unwrap();
        let ids = |keys: &[KeyRecord]| keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        let mut reads = 0;
        let mut first = Vec::new();
        let (read, _) = file
            .read_as_one(|| {
                reads += 1;
                let (registry, main) = file.load_file_stamped()?;
                if reads == 1 {
                    // A writer folds the changes in between the two reads:
                    // the second finds no changes file.
                    file.update(|_| Ok(()))?;
                    first = ids(&registry.keys);
                }
                assert!(!crate::side_files::changes_path(file.path()).exists());
                let stamp = RegistryStamp {
                    main,
                    changes: None,
                };
                Ok((registry, stamp))
            })
            .unwrap();
        assert_eq!(reads, 2, "the pair read across a fold was taken");
        assert_ne!(
            first,
            ids(&whole.keys),
            "the first read was not of the file before"
        );
        assert_eq!(ids(&read.keys), ids(&whole.keys));
    }

    #[test]
    fn a_registry_with_changes_answers_as_the_registry_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (file, cache) = with_changes(dir.path());
        let whole = file.load().unwrap();
        let index = indexed(&file, &cache);
        assert!(index.has_changes());
        assert_eq!(index.revision(), whole.revision);
        let ids = |keys: &[KeyRecord]| keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        for key in &whole.keys {
            let found = index
                .find(&key.hash.0)
                .unwrap()
                .expect("every key is found");
            assert_eq!(found.key.id, key.id);
            assert_eq!(found.key.disabled, key.disabled);
            assert_eq!(
                index.key(&key.id).unwrap().unwrap().key.disabled,
                key.disabled
            );
        }
        let original = mixed_registry();
        for gone in original.keys.iter().filter(|k| whole.key(&k.id).is_none()) {
            assert!(index.find(&gone.hash.0).unwrap().is_none(), "{}", gone.id);
            assert!(index.key(&gone.id).unwrap().is_none(), "{}", gone.id);
        }
        for user in whole.identities.iter().filter(|i| i.owner.is_none()) {
            let managed: Vec<KeyRecord> = whole
                .keys
                .iter()
                .filter(|k| {
                    whole
                        .identity(&k.owner)
                        .is_some_and(|i| i.manager() == &user.iam_id)
                })
                .cloned()
                .collect();
            assert_eq!(
                ids(&index.keys_managed_by(&user.iam_id).unwrap()),
                ids(&managed)
            );
        }
        // One snapshot of both, handed on: the registry read whole.
        let bytes = index.whole_bytes().unwrap().into_owned();
        let handed = Snapshot::open(bytes).unwrap();
        handed.verify().unwrap();
        assert_eq!(ids(&handed.all_keys().unwrap()), ids(&whole.keys));
        assert_eq!(handed.revision(), whole.revision);
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

    /// Users with keys, service IDs owned by some of them with keys of
    /// their own, and a key whose identity is gone.
    fn mixed_registry() -> Registry {
        let mut registry = crate::synthetic::registry(120, 0).registry;
        let template = registry.keys[0].clone();
        for n in 0..4 {
            let owner = registry.identities[n % 2].iam_id.clone();
            let iam_id: IamId = format!("service-id:svc{n}").parse().unwrap();
            registry.identities.push(Identity {
                iam_id: iam_id.clone(),
                owner: Some(owner),
                scopes: vec!["read".into()],
                created_at: template.created_at,
            });
            for k in 0..3 {
                registry.keys.push(KeyRecord {
                    id: format!("kid_svc{n}_{k}"),
                    owner: iam_id.clone(),
                    hash: crate::registry::KeyHash::of(&format!("svc{n}{k}")),
                    ..template.clone()
                });
            }
        }
        registry.keys.push(KeyRecord {
            id: "kid_orphan".into(),
            owner: "user:gone".parse().unwrap(),
            hash: crate::registry::KeyHash::of("orphan"),
            ..template
        });
        registry
    }

    #[test]
    fn the_tables_by_name_answer_as_a_scan_of_the_registry_does() {
        let registry = mixed_registry();
        let stamp = FileStamp::of(Path::new("/")).unwrap();
        let index = CompactRegistry::of_committed(&registry, &stamp, Path::new("keys.toml"), None);
        let ids = |keys: Vec<KeyRecord>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
        let mut names: Vec<IamId> = registry
            .identities
            .iter()
            .map(|i| i.iam_id.clone())
            .collect();
        names.push("user:gone".parse().unwrap());
        names.push("user:nobody".parse().unwrap());
        for name in &names {
            let scanned = registry.identity(name);
            let read = index.identity(name).unwrap();
            assert_eq!(read.map(|i| i.iam_id), scanned.map(|i| i.iam_id.clone()));
            let managed: Vec<String> = registry
                .keys
                .iter()
                .filter(|k| {
                    registry
                        .identity(&k.owner)
                        .is_some_and(|i| i.manager() == name)
                })
                .map(|k| k.id.clone())
                .collect();
            assert_eq!(ids(index.keys_managed_by(name).unwrap()), managed, "{name}");
            let owned: Vec<&IamId> = registry
                .identities
                .iter()
                .filter(|i| i.owner.as_ref() == Some(name))
                .map(|i| &i.iam_id)
                .collect();
            let read: Vec<IamId> = index
                .service_ids_of(name)
                .unwrap()
                .into_iter()
                .map(|i| i.iam_id)
                .collect();
            assert_eq!(read.iter().collect::<Vec<_>>(), owned, "{name}");
        }
        // The first user manages their own keys and two service IDs' keys.
        assert_eq!(index.keys_managed_by(&names[0]).unwrap().len(), 20 + 2 * 3);
        for (position, key) in registry.keys.iter().enumerate() {
            let found = index.key(&key.id).unwrap().unwrap();
            assert_eq!((found.position, &found.key.id), (position, &key.id));
            assert_eq!(
                found.identity.map(|i| i.iam_id.clone()),
                registry.identity(&key.owner).map(|i| i.iam_id.clone())
            );
        }
        assert!(index.key("kid_none").unwrap().is_none());
        assert!(index.key("").unwrap().is_none());
    }

    #[test]
    fn a_snapshot_in_a_folder_others_may_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (file, _) = registry_file(dir.path(), 5);
        indexed(&file, &cache);
        let path = index_path(&cache, file.path());
        let stamp = FileStamp::of(file.path()).unwrap();
        assert!(CompactRegistry::open(&path, &stamp).is_some());
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let folder = durable::folder_of(&path);
        mode(folder, 0o770);
        assert!(
            CompactRegistry::open(&path, &stamp).is_none(),
            "in a folder its group may write"
        );
        let (held, _) = CompactRegistry::current(&file, Some(&cache)).unwrap();
        assert!(held.mapped.is_none(), "made from the TOML, held in memory");
        mode(folder, 0o700);
        assert!(CompactRegistry::open(&path, &stamp).is_some());
    }

    #[test]
    fn a_mapped_snapshot_changed_in_place_is_damaged_and_one_touched_is_not() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (file, _) = registry_file(dir.path(), 5);
        let index = indexed(&file, &cache);
        assert!(!index.damaged());
        let path = index_path(&cache, file.path());
        let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Its times changed, its bytes not (a backup tool, `touch`).
        handle
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        assert!(!index.damaged(), "touched only");
        // A byte of a record changed where it lies.
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - snapshot::CHECKSUM_LEN - 10;
        handle.write_all_at(&[bytes[at] ^ 1], at as u64).unwrap();
        assert!(index.damaged(), "its file was written in place");
        assert!(index.damaged(), "and stays damaged");
    }

    /// A forged snapshot: `bytes` with its checksum made again, so that
    /// only what it says can give it away.
    fn with_checksum_made_to_agree(mut bytes: Vec<u8>) -> Snapshot<Vec<u8>> {
        let body = bytes.len() - snapshot::CHECKSUM_LEN;
        let checksum = <sha2::Sha256 as sha2::Digest>::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum);
        let forged = Snapshot::open(bytes).unwrap();
        forged.verify().unwrap();
        forged
    }

    #[test]
    fn an_entry_pointing_at_another_keys_record_is_an_error_not_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let (file, secrets) = registry_file(dir.path(), 2);
        let mut bytes = snapshot_bytes(&file, None).unwrap();
        // The entries follow the header: swap the record offset and length
        // (bytes 40..56) of the first two, and make the checksum agree.
        let header_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let first = 16 + header_len;
        let second = first + snapshot::ENTRY_LEN;
        let (a, b) = (
            bytes[first + 40..first + 56].to_vec(),
            bytes[second + 40..second + 56].to_vec(),
        );
        bytes[first + 40..first + 56].copy_from_slice(&b);
        bytes[second + 40..second + 56].copy_from_slice(&a);
        let forged = with_checksum_made_to_agree(bytes);
        for secret in &secrets {
            assert!(
                forged.find(&key_format::hash(secret)).is_err(),
                "{secret:.6}"
            );
        }
    }

    #[test]
    fn an_entry_that_calls_a_retired_secret_current_is_an_error() {
        let mut registry = crate::synthetic::registry(3, 0).registry;
        let old = "an old secret";
        registry.keys[1]
            .retired
            .push(crate::registry::RetiredSecret {
                hash: crate::registry::KeyHash::of(old),
                valid_until: crate::time::Timestamp(100),
            });
        let mut bytes = encode_snapshot(&registry, String::new());
        let sound = Snapshot::open(bytes.as_slice()).unwrap();
        let found = sound.find(&KeyHash::of(old).0).unwrap().unwrap();
        assert_eq!(found.retired_until, Some(crate::time::Timestamp(100)));
        drop(found);
        drop(sound);
        // Its entry forged to say "current" (i64::MIN), the checksum made
        // to agree: the secret would work past its grace period.
        let header_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let entries = 16 + header_len;
        let at = (0..4)
            .map(|n| entries + n * snapshot::ENTRY_LEN)
            .find(|&at| bytes[at..at + 32] == KeyHash::of(old).0)
            .expect("the retired secret's entry");
        bytes[at + 56..at + 64].copy_from_slice(&i64::MIN.to_le_bytes());
        let forged = with_checksum_made_to_agree(bytes);
        assert!(forged.find(&KeyHash::of(old).0).is_err());
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
