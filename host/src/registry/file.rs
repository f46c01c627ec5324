//! Reading and durably writing the registry file.
//!
//! A write takes an exclusive lock on `PATH.lock`, reads the current file,
//! applies the change, writes a temporary file in the same directory, fsyncs
//! it, renames it over the registry and fsyncs the directory. Readers never
//! lock: a rename is atomic, so they see the old file or the new one.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CompactRegistry, Registry};
use crate::durable;
use crate::progress::Progress;
use crate::side_files::FileStamp;

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
    /// The registry as written, its revision bumped.
    pub registry: Registry,
    /// The stamp of the file the change was made to.
    pub base: FileStamp,
    /// The stamp of the file written.
    pub stamp: FileStamp,
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

    /// Reads and checks the registry.
    pub fn load(&self) -> Result<Registry> {
        self.load_stamped().map(|(registry, _)| registry)
    }

    /// Reads and checks the registry, with the stamp of the very file read
    /// (taken from its handle: a file renamed into place meanwhile has
    /// another).
    pub fn load_stamped(&self) -> Result<(Registry, FileStamp)> {
        let shown = self.path.display();
        // Without blocking: a FIFO put in the registry's place would hold an
        // open until someone writes to it (and serve's reload with it).
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Missing(self.path.clone()).into());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read registry {shown}")),
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read registry {shown}"))?;
        if !meta.is_file() {
            bail!(
                "registry {shown} is not a regular file (a FIFO, a device or a folder); keyhost reads only a file"
            );
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read registry {shown}"))?;
        let reading = Progress::reading("reading the registry", bytes.len() as u64);
        let parsed = Registry::parse(&bytes).with_context(|| format!("registry {shown}"));
        reading.finish();
        Ok((parsed?, FileStamp::of_meta(&meta)))
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
        Ok((committed.value, committed.registry.revision))
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
        durable::remove_stale_temps(&self.path);
        let (mut registry, base) = self.load_stamped()?;
        let value = change(&mut registry)?;
        registry.revision += 1;
        let text = serialize(&registry)?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(TooLate.into());
        }
        let stamp = durable::replace_and_stamp(&self.path, text.as_bytes())?;
        // Still under the lock: a reader that finds the snapshot stale
        // waits for this one rather than make its own.
        if let Some(cache_dir) = &self.snapshots {
            CompactRegistry::of_committed(&registry, &stamp, &self.path, Some(cache_dir));
        }
        Ok(Committed {
            value,
            registry,
            base,
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
