//! Reading and durably writing the registry file.
//!
//! A write takes an exclusive lock on `PATH.lock`, reads the current file,
//! applies the change, writes a temporary file in the same directory, fsyncs
//! it, renames it over the registry and fsyncs the directory. Readers never
//! lock: a rename is atomic, so they see the old file or the new one.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::changes::{self, Changes, MAX_CHANGES};
use super::{CompactRegistry, FORMAT_VERSION, KeyRecord, Lookup, Registry};
use crate::durable;
use crate::iam::IamId;
use crate::progress::Progress;
use crate::side_files::{FileStamp, RegistryStamp, changes_path};

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|i| i + 1)
}

/// A change written by [`RegistryFile::commit`].
pub struct Committed<T> {
    /// What the change gave back.
    pub value: T,
    /// The registry's revision with the change.
    pub revision: u64,
    /// The registry as written.
    pub written: Written,
    /// The stamp of the registry the change was made to.
    pub base: RegistryStamp,
    /// The stamp of the registry written.
    pub stamp: RegistryStamp,
}

/// The registry as a commit wrote it.
pub enum Written {
    /// Its snapshot, made by the commit: the file keeps snapshots.
    Snapshot(Box<CompactRegistry>),
    /// The registry itself, written whole.
    Registry(Box<Registry>),
}

/// What a write of keys alone reads and changes: the keys of one identity
/// (a create), or one key and the others of its identity.
#[derive(Clone, Debug)]
pub enum Touches {
    /// The keys of this identity.
    KeysOf(IamId),
    /// The key of this id.
    Key(String),
}

/// A registry file on disk.
#[derive(Clone, Debug)]
pub struct RegistryFile {
    path: PathBuf,
    /// Where [`update`](Self::update) keeps the snapshot of what it wrote.
    snapshots: Option<PathBuf>,
}

impl RegistryFile {
    /// The registry file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> RegistryFile {
        RegistryFile {
            path: path.into(),
            snapshots: None,
        }
    }

    /// The same file, whose updates also keep the snapshot of what they
    /// wrote in `cache_dir` (the CLI's): it is made from the registry
    /// already in memory, and the next reader (`check`, serve's watcher)
    /// maps it rather than read the TOML again.
    pub fn keeping_snapshots(self, cache_dir: Option<PathBuf>) -> RegistryFile {
        RegistryFile {
            snapshots: cache_dir,
            ..self
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the registry, its changes file's changes made.
    pub fn load(&self) -> Result<Registry> {
        self.load_stamped().map(|(registry, _)| registry)
    }

    /// Reads and checks the registry, its changes made, with the stamps of
    /// the very files read.
    pub fn load_stamped(&self) -> Result<(Registry, RegistryStamp)> {
        self.read_as_one(|| self.load_pair())
    }

    /// Reads the registry file and its changes file as one pair with
    /// `read`. A fold between its two reads renames a new registry file in
    /// and removes the changes: the file read before it, with no changes,
    /// would bring back the keys they deleted. So the pair is read again
    /// until the registry file in place is the one read.
    pub(super) fn read_as_one<T>(
        &self,
        mut read: impl FnMut() -> Result<(T, RegistryStamp)>,
    ) -> Result<(T, RegistryStamp)> {
        const TRIES: usize = 5;
        for _ in 1..TRIES {
            let before = FileStamp::of(&self.path).ok();
            let outcome = read();
            let now = FileStamp::of(&self.path).ok();
            let settled = match &outcome {
                Ok((_, stamp)) => now.as_ref() == Some(&stamp.main),
                // An error of a pair that was never one (changes newer
                // than the file read) is read again too.
                Err(_) => before == now,
            };
            if settled {
                return outcome;
            }
        }
        read()
    }

    /// [`load_stamped`](Self::load_stamped)'s one read of the pair.
    fn load_pair(&self) -> Result<(Registry, RegistryStamp)> {
        let (mut registry, main) = self.load_file_stamped()?;
        let Some((text, changes_stamp)) = self.read_changes()? else {
            return Ok((
                registry,
                RegistryStamp {
                    main,
                    changes: None,
                },
            ));
        };
        let shown = changes_path(&self.path);
        let in_changes = || format!("registry changes {}", shown.display());
        let changes = Changes::parse(&text).with_context(in_changes)?;
        if changes
            .apply_to(registry.revision)
            .with_context(in_changes)?
        {
            let mut overridden = Vec::new();
            let effective = {
                let by_id: HashMap<&str, &KeyRecord> = registry
                    .keys
                    .iter()
                    .map(|key| (key.id.as_str(), key))
                    .collect();
                changes.effective(
                    |id| Ok(by_id.get(id).map(|key| (*key).clone())),
                    &mut overridden,
                )
            }
            .with_context(in_changes)?;
            for id in overridden {
                tracing::warn!(key = %id, "the registry file was edited by hand after a change of this key: its version there is in force");
            }
            changes::apply(&mut registry.keys, effective);
            registry.revision = changes.revision;
            registry.check_consistency(&text).with_context(in_changes)?;
        }
        let stamp = RegistryStamp {
            main,
            changes: Some(changes_stamp),
        };
        Ok((registry, stamp))
    }

    /// Reads and checks the registry file alone, with the stamp of the very
    /// file read (taken from its handle: a file renamed into place
    /// meanwhile has another).
    pub fn load_file_stamped(&self) -> Result<(Registry, FileStamp)> {
        let shown = self.path.display();
        let (bytes, stamp) =
            read_regular(&self.path, "registry")?.ok_or_else(|| Missing(self.path.clone()))?;
        let reading = Progress::reading("reading the registry", bytes.len() as u64);
        let parsed = Registry::parse(&bytes).with_context(|| format!("registry {shown}"));
        reading.finish();
        Ok((parsed?, stamp))
    }

    /// The changes file's text and stamp, when there is one.
    pub fn read_changes(&self) -> Result<Option<(String, FileStamp)>> {
        let path = changes_path(&self.path);
        let Some((bytes, stamp)) = read_regular(&path, "registry changes")? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            anyhow::anyhow!(
                "registry changes {}: the file is not valid UTF-8",
                path.display()
            )
        })?;
        if let Some(problem) = overlong_line(&text) {
            bail!("registry changes {}: {problem}", path.display());
        }
        Ok(Some((text, stamp)))
    }

    /// The settings of the registry file (its head, before the first
    /// `[[...]]` table), read without reading its keys, with the stamp of
    /// the file read; none when the head cannot be told apart so (the whole
    /// file is then read instead).
    fn read_head(&self) -> Result<Option<(Registry, FileStamp)>> {
        const MOST: u64 = 1 << 20;
        let (file, meta) =
            open_regular(&self.path, "registry")?.ok_or_else(|| Missing(self.path.clone()))?;
        let stamp = FileStamp::of_meta(&meta);
        let mut head = String::new();
        let mut lines = std::io::BufReader::new(file.take(MOST));
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.trim_start().starts_with("[[") {
                break;
            }
            head.push_str(&line);
        }
        Ok(toml::from_str::<Registry>(&head)
            .ok()
            .filter(|registry| registry.keys.is_empty() && registry.identities.is_empty())
            .map(|registry| (registry, stamp)))
    }

    /// The registry's `[rules]`, read from the head of its file (the whole
    /// file only when its head cannot be read alone). The snapshot a check
    /// reads does not carry them: no check needs them.
    pub fn rules(&self) -> Result<super::Rules> {
        match self.read_head()? {
            Some((head, _)) => Ok(head.rules),
            None => Ok(self.load()?.rules),
        }
    }

    /// Creates a new registry; refuses to replace an existing file.
    pub fn create(&self, registry: &Registry) -> Result<()> {
        let _lock = self.lock(None)?;
        durable::create_new(&self.path, serialize(registry)?.as_bytes())
            .with_context(|| format!("cannot create registry {}", self.path.display()))
    }

    /// Applies `change` to the current registry under the write lock and
    /// saves the result with a bumped revision. Nothing is written when
    /// `change` fails.
    pub fn update<T>(&self, change: impl FnOnce(&mut Registry) -> Result<T>) -> Result<(T, u64)> {
        self.update_until(None, change)
    }

    /// As [`update`](Self::update), but gives up with [`TooLate`] when the
    /// change cannot be committed by `deadline`: a write either lands before
    /// its deadline, or not at all. The check is made just before the
    /// rename that commits; after it the write has happened.
    pub fn update_until<T>(
        &self,
        deadline: Option<Instant>,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<(T, u64)> {
        let committed = self.commit(deadline, change)?;
        Ok((committed.value, committed.revision))
    }

    /// As [`update_until`](Self::update_until), giving back the registry as
    /// written and the stamp of the file that holds it, so that a reader
    /// in this process can take the change without reading it again.
    pub fn commit<T>(
        &self,
        deadline: Option<Instant>,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<Committed<T>> {
        let _lock = self.lock(deadline)?;
        self.refuse_symlink()?;
        self.commit_whole(deadline, change)
    }

    /// A write of keys alone (what `touches` says it reads and changes),
    /// made as [`commit`](Self::commit) makes a change. In a registry of
    /// `changes_from_keys` keys or more, it reads the snapshot rather than
    /// the file, and writes the keys it changed to the changes file: it
    /// costs what it changes, not what the registry holds.
    pub fn commit_keys<T>(
        &self,
        deadline: Option<Instant>,
        actor: &IamId,
        touches: Touches,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<Committed<T>> {
        let _lock = self.lock(deadline)?;
        self.refuse_symlink()?;
        let mut base = self.key_write_base()?;
        let mut folded_from = None;
        if let Some(full) = base.take_if(|base| base.changes.len() >= MAX_CHANGES) {
            // A full changes file is folded in first, whatever the
            // deadline: the fold is no caller's write (it changes no key),
            // and at a million keys it takes longer than a request may, so
            // bound by one it would never land. The caller's write goes to
            // a fresh changes file after it, or misses its deadline and
            // writes nothing.
            self.commit_whole(None, |_| Ok(()))?;
            folded_from = Some(full.stamp);
            base = self.key_write_base()?;
        }
        let mut committed = match base {
            Some(base) => self.commit_changes(deadline, base, actor, touches, change),
            None => self.commit_whole(deadline, change),
        }?;
        // What was written is the registry it started from, folded, with
        // the change: serve takes it as a change of the one it holds.
        if let Some(stamp) = folded_from {
            committed.base = stamp;
        }
        Ok(committed)
    }

    /// As [`update`](Self::update), for a write of keys alone.
    pub fn update_keys<T>(
        &self,
        actor: &IamId,
        touches: Touches,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<(T, u64)> {
        let committed = self.commit_keys(None, actor, touches, change)?;
        Ok((committed.value, committed.revision))
    }

    /// [`commit`](Self::commit), the lock held: reads the whole registry,
    /// its changes made, and writes it whole, with them folded in.
    fn commit_whole<T>(
        &self,
        deadline: Option<Instant>,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<Committed<T>> {
        durable::remove_stale_temps(&self.path);
        durable::remove_stale_temps(&changes_path(&self.path));
        let (mut registry, base) = self.load_stamped()?;
        let value = change(&mut registry)?;
        registry.revision = next_revision(registry.revision)?;
        registry.version = FORMAT_VERSION;
        let text = serialize(&registry)?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(TooLate.into());
        }
        let main = durable::replace_and_stamp(&self.path, text.as_bytes())?;
        // The file holds the changes now. Were this to stop here, the
        // changes file would name the file's revision before, and be void:
        // so a removal that fails is no reason to answer a committed write
        // as failed.
        if base.changes.is_some()
            && let Err(error) = durable::remove(&changes_path(&self.path))
        {
            tracing::warn!(%error, "the changes folded into the registry file are left beside it (void)");
        }
        let stamp = RegistryStamp {
            main,
            changes: None,
        };
        // Still under the lock: a reader that finds the snapshot stale
        // waits for this one rather than make its own.
        let revision = registry.revision;
        let written = match self.snapshots.as_deref() {
            Some(cache_dir) => Written::Snapshot(Box::new(CompactRegistry::of_committed(
                &registry,
                &stamp.main,
                &self.path,
                Some(cache_dir),
            ))),
            None => Written::Registry(Box::new(registry)),
        };
        Ok(Committed {
            value,
            revision,
            written,
            base,
            stamp,
        })
    }

    /// What a write of keys alone starts from, the lock held: the
    /// registry file's settings and snapshot, and its changes. None when
    /// the registry is written whole instead: it is small, or no cache
    /// keeps its snapshot.
    fn key_write_base(&self) -> Result<Option<KeyWriteBase>> {
        let Some(cache_dir) = self.snapshots.as_deref() else {
            return Ok(None);
        };
        let Some((head, main)) = self.read_head()? else {
            return Ok(None);
        };
        let (snapshot, built_for) = CompactRegistry::current_file(self, cache_dir)?;
        // A version 1 registry file is first written whole, as version 2,
        // which builds that would not see a changes file refuse.
        if head.version < FORMAT_VERSION
            || built_for != main
            || snapshot.key_count() < u64::from(head.changes_from_keys)
        {
            return Ok(None);
        }
        let (changes, changes_stamp) = match self.read_changes()? {
            None => (Changes::new(snapshot.revision()), None),
            Some((text, stamp)) => {
                let in_changes =
                    || format!("registry changes {}", changes_path(&self.path).display());
                let changes = Changes::parse(&text).with_context(in_changes)?;
                // Void ones (see Changes::apply_to) are written over.
                if changes
                    .apply_to(snapshot.revision())
                    .with_context(in_changes)?
                {
                    (changes, Some(stamp))
                } else {
                    (Changes::new(snapshot.revision()), Some(stamp))
                }
            }
        };
        Ok(Some(KeyWriteBase {
            head,
            snapshot,
            changes,
            stamp: RegistryStamp {
                main,
                changes: changes_stamp,
            },
        }))
    }

    /// A write of keys alone to the changes file, the lock held.
    fn commit_changes<T>(
        &self,
        deadline: Option<Instant>,
        base: KeyWriteBase,
        actor: &IamId,
        touches: Touches,
        change: impl FnOnce(&mut Registry) -> Result<T>,
    ) -> Result<Committed<T>> {
        let KeyWriteBase {
            head,
            snapshot,
            mut changes,
            stamp: base_stamp,
        } = base;
        let file_key = |id: &str| -> Result<Option<KeyRecord>> { Ok(snapshot.file_key(id)?) };
        let mut overridden = Vec::new();
        let effective = changes.effective(file_key, &mut overridden)?;
        // Changes the registry file overrode by hand are dropped, so that
        // an edit back to the old version does not bring them back.
        for id in &overridden {
            changes.forget(id);
        }
        let superseded = effective.superseded();
        // The key as it is now: changed, or the file's.
        let key_now = |id: &str| -> Result<Option<KeyRecord>> {
            if let Some(key) = effective.keys.iter().find(|key| key.id == id) {
                return Ok(Some(key.clone()));
            }
            if superseded.contains(id) {
                return Ok(None);
            }
            file_key(id)
        };
        let target = match &touches {
            Touches::KeysOf(iam_id) => Some(iam_id.clone()),
            Touches::Key(id) => key_now(id)?.map(|key| key.owner),
        };
        // What the change may read: the actor, the identity whose keys it
        // changes and its owner, and those keys.
        let mut view = head;
        view.revision = changes.revision;
        for iam_id in std::iter::once(actor).chain(target.as_ref()) {
            if let Some(identity) = snapshot.identity(iam_id)?
                && view.identity(&identity.iam_id).is_none()
            {
                let owner = identity.owner.clone();
                view.identities.push(identity);
                if let Some(owner) = owner
                    && view.identity(&owner).is_none()
                    && let Some(owner) = snapshot.identity(&owner)?
                {
                    view.identities.push(owner);
                }
            }
        }
        if let Some(target) = &target {
            let manager = view
                .identity(target)
                .map(|identity| identity.manager().clone());
            if let Some(manager) = manager {
                let in_file = snapshot.keys_managed_by(&manager)?;
                let mut keys: Vec<KeyRecord> = in_file;
                let changed: Vec<KeyRecord> = effective
                    .keys
                    .iter()
                    .filter(|key| &key.owner == target)
                    .cloned()
                    .collect();
                changes::lay_over(&mut keys, changed, &superseded);
                view.keys = keys
                    .into_iter()
                    .filter(|key| &key.owner == target)
                    .collect();
            }
        }
        if let Touches::Key(id) = &touches
            && view.key(id).is_none()
            && let Some(key) = key_now(id)?
        {
            view.keys.push(key);
        }
        let before_keys: HashMap<String, String> = view
            .keys
            .iter()
            .map(|key| (key.id.clone(), changes::digest_of(Some(key))))
            .collect();
        let before_identities = serde_json::to_string(&view.identities)?;
        let value = change(&mut view)?;
        if serde_json::to_string(&view.identities)? != before_identities {
            bail!("a write of keys alone changed an identity; nothing was written");
        }
        let mut after_ids = std::collections::HashSet::new();
        for key in &view.keys {
            after_ids.insert(key.id.as_str());
            if before_keys.get(&key.id) != Some(&changes::digest_of(Some(key))) {
                changes.record(&key.id, file_key(&key.id)?.as_ref(), Some(key.clone()));
            }
        }
        for id in before_keys.keys() {
            if !after_ids.contains(id.as_str()) {
                changes.record(id, file_key(id)?.as_ref(), None);
            }
        }
        changes.revision = next_revision(view.revision)?;
        // Checked as a reader will check it, before anything is written.
        let in_force = snapshot.changes_in_force(&changes)?;
        let text = changes.to_toml()?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(TooLate.into());
        }
        let path = changes_path(&self.path);
        durable::remove_stale_temps(&path);
        let written = durable::replace_and_stamp(&path, text.as_bytes())?;
        let stamp = RegistryStamp {
            main: base_stamp.main.clone(),
            changes: Some(written),
        };
        let cache_dir = self
            .snapshots
            .as_deref()
            .expect("checked in key_write_base");
        let snapshot = snapshot.with_written_changes(&in_force, &stamp, &self.path, cache_dir);
        Ok(Committed {
            value,
            revision: changes.revision,
            written: Written::Snapshot(Box::new(snapshot)),
            base: base_stamp,
            stamp,
        })
    }

    /// A rename would replace the link, not the file it points to, so a
    /// registry reached through a symbolic link is refused for writing.
    fn refuse_symlink(&self) -> Result<()> {
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && meta.file_type().is_symlink()
        {
            bail!(
                "registry {} is a symbolic link; keyhost writes only to a real file (point --registry at the file itself)",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Waits, at most `wait`, until no writer holds the registry's lock;
    /// whether none does.
    pub fn wait_for_writers(&self, wait: Duration) -> bool {
        self.lock(Some(Instant::now() + wait)).is_ok()
    }

    /// The exclusive write lock, waited for until `deadline` (for ever
    /// without one).
    fn lock(&self, deadline: Option<Instant>) -> Result<File> {
        let Some(deadline) = deadline else {
            return durable::lock(&self.path);
        };
        durable::lock_within(
            &self.path,
            deadline.saturating_duration_since(Instant::now()),
        )?
        .ok_or_else(|| TooLate.into())
    }
}

/// What a write of keys alone starts from.
struct KeyWriteBase {
    /// The registry file's settings (no identities, no keys).
    head: Registry,
    /// The snapshot of the registry file, without its changes.
    snapshot: CompactRegistry,
    /// Its changes.
    changes: Changes,
    /// The registry's stamp.
    stamp: RegistryStamp,
}

/// The bytes and stamp of the regular file at `path` (`what` names it in
/// errors); none when it does not exist. It is opened without blocking: a
/// FIFO put in its place would hold an open until someone writes to it
/// (and serve's reload with it).
fn read_regular(path: &Path, what: &str) -> Result<Option<(Vec<u8>, FileStamp)>> {
    let Some((mut file, meta)) = open_regular(path, what)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    Ok(Some((bytes, FileStamp::of_meta(&meta))))
}

/// The regular file at `path` opened, and what it is; see [`read_regular`].
fn open_regular(path: &Path, what: &str) -> Result<Option<(File, fs::Metadata)>> {
    let shown = path.display();
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {what} {shown}")),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what} {shown}"))?;
    if !meta.is_file() {
        bail!(
            "{what} {shown} is not a regular file (a FIFO, a device or a folder); keyhost reads only a file"
        );
    }
    Ok(Some((file, meta)))
}

/// The registry file does not exist.
#[derive(Debug, thiserror::Error)]
#[error("registry {} does not exist (create one with `keyhost init`)", .0.display())]
pub struct Missing(pub PathBuf);

/// A writer that holds a newer registry found an older copy in place of
/// the file; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the registry file holds revision {found}, older than the {in_force} in force (an older copy replaced it); nothing was written"
)]
pub struct OlderCopy {
    /// The revision in the file.
    pub found: u64,
    /// The revision the writer holds.
    pub in_force: u64,
}

/// A write could not be committed before its deadline; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("the change could not be made in time; nothing was written")]
pub struct TooLate;

/// The revision after `revision`: a hand-edited revision at the top of
/// u64 is refused rather than wrapped to 0 (which every reader refuses as
/// older than its base).
fn next_revision(revision: u64) -> Result<u64> {
    revision.checked_add(1).ok_or_else(|| {
        anyhow::anyhow!(
            "the registry's revision {revision} is the largest there is; set a smaller one by hand"
        )
    })
}

/// The registry as TOML, refused if keyhost could not read it back: every
/// field is checked on the way in, so this is a last line of defence.
fn serialize(registry: &Registry) -> Result<String> {
    let text = toml::to_string(registry).context("cannot serialize the registry")?;
    if let Some(problem) = overlong_line(&text) {
        bail!("the change would make the registry unreadable ({problem}); nothing was written");
    }
    Ok(text)
}

/// The first line of `text` longer than a registry line may be, described.
fn overlong_line(text: &str) -> Option<String> {
    let (number, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.len() > MAX_LINE_BYTES)?;
    Some(format!(
        "line {}: the line is {} bytes long, more than the {MAX_LINE_BYTES} a registry line may have",
        number + 1,
        line.len()
    ))
}

/// The longest line a registry may have. No field needs more; a longer line
/// is a damaged or hostile file, refused before the TOML parser sees it.
pub const MAX_LINE_BYTES: usize = 64 << 10;

impl Registry {
    /// Parses and checks a registry file's bytes. Errors name the line.
    pub fn parse(bytes: &[u8]) -> Result<Registry> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            anyhow::anyhow!("line {line}: the file is not valid UTF-8")
        })?;
        if let Some(problem) = overlong_line(text) {
            bail!("{problem}");
        }
        let registry = match super::split::parse(text) {
            Some(registry) => registry,
            None => toml::from_str(text)
                .map_err(|e| anyhow::anyhow!("{}", describe_toml_error(text, &e)))?,
        };
        registry.check_consistency(text)?;
        Ok(registry)
    }
}

/// toml's message already names the line and column and quotes the line.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.to_string();
    if message.contains("line") {
        return message.trim_end().to_string();
    }
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", message.trim_end())
        }
        None => message.trim_end().to_string(),
    }
}
