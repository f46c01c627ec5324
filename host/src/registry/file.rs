//! Reading and durably writing the registry file.
//!
//! A write takes an exclusive lock on `PATH.lock`, reads the current file,
//! applies the change, writes a temporary file in the same directory, fsyncs
//! it, renames it over the registry and fsyncs the directory. Readers never
//! lock: a rename is atomic, so they see the old file or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Registry;
use crate::durable;

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|i| i + 1)
}

/// A registry file on disk.
#[derive(Clone, Debug)]
pub struct RegistryFile {
    path: PathBuf,
}

impl RegistryFile {
    pub fn new(path: impl Into<PathBuf>) -> RegistryFile {
        RegistryFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Reads and checks the registry.
    pub fn load(&self) -> Result<Registry> {
        let shown = self.path.display();
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                bail!("registry {shown} does not exist (create one with `keyhost init`)")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read registry {shown}")),
        };
        Registry::parse(&bytes).with_context(|| format!("registry {shown}"))
    }

    /// Creates a new registry; refuses to replace an existing file.
    pub fn create(&self, registry: &Registry) -> Result<()> {
        let _lock = self.lock()?;
        durable::create_new(&self.path, serialize(registry)?.as_bytes())
            .with_context(|| format!("cannot create registry {}", self.path.display()))
    }

    /// Applies `change` to the current registry under the write lock and
    /// saves the result with a bumped revision. Nothing is written when
    /// `change` fails.
    pub fn update<T>(&self, change: impl FnOnce(&mut Registry) -> Result<T>) -> Result<(T, u64)> {
        let _lock = self.lock()?;
        self.refuse_symlink()?;
        durable::remove_stale_temps(&self.path);
        let mut registry = self.load()?;
        let value = change(&mut registry)?;
        registry.revision += 1;
        durable::replace(&self.path, serialize(&registry)?.as_bytes())?;
        Ok((value, registry.revision))
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

    fn lock(&self) -> Result<File> {
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }
}

fn serialize(registry: &Registry) -> Result<String> {
    toml::to_string(registry).context("cannot serialize the registry")
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
        if let Some((number, line)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.len() > MAX_LINE_BYTES)
        {
            bail!(
                "line {}: the line is {} bytes long, more than the {MAX_LINE_BYTES} a registry line may have",
                number + 1,
                line.len()
            );
        }
        let registry: Registry = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", describe_toml_error(text, &e)))?;
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
