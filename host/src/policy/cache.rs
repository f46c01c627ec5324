//! The compiled-policy cache. Compiling a component takes far longer than a
//! check, so the native code is kept in the user's cache directory, keyed by
//! the SHA-256 of the component and wasmtime's compatibility hash.
//!
//! An entry is `MAGIC`, the SHA-256 of the artifact, then the artifact. The
//! digest is verified before wasmtime sees the bytes: a corrupt entry is
//! recompiled, never trusted. Entries are written atomically.
//!
//! The digest guards against corruption, not tampering: whoever can write
//! an entry can write a matching digest, and wasmtime runs an entry's
//! native code as it is. So entries are used only from a folder that this
//! user owns and that no group or other user can write (folder_is_private).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::side_files::cache_root;

const MAGIC: &[u8; 8] = b"KHPOLC01";

/// Where compiled policies are kept; `None` turns the cache off.
#[derive(Clone, Debug)]
pub struct CompiledCache {
    dir: Option<PathBuf>,
    /// Say on stderr when a large component is being compiled, which can
    /// take many seconds (a CPython policy is tens of MiB).
    progress: bool,
}

impl CompiledCache {
    /// In [`cache_root`].
    pub fn from_env() -> CompiledCache {
        CompiledCache {
            dir: cache_root(),
            progress: false,
        }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> CompiledCache {
        CompiledCache {
            dir: None,
            progress: false,
        }
    }

    /// Reports compilations of large components on stderr, for the CLI.
    pub fn with_progress(mut self) -> CompiledCache {
        self.progress = true;
        self
    }

    fn entry_path(&self, engine: &Engine, component_digest: &[u8; 32]) -> Option<PathBuf> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let name = format!(
            "{}-{:016x}.cwasm",
            hex::encode(component_digest),
            hasher.finish()
        );
        self.dir.as_ref().map(|dir| dir.join("policies").join(name))
    }

    /// The compiled form of `wasm`, from the cache when a sound entry exists.
    /// `digest` is the component's SHA-256 (the embedded default policy's is
    /// computed at build time, so a process does not hash it on every run).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: [u8; 32],
        label: &str,
    ) -> Result<Component> {
        let Some(path) = self.entry_path(engine, &digest) else {
            return self.compile(engine, wasm, label);
        };
        if let Err(e) = private_folder(crate::durable::folder_of(&path)) {
            tracing::warn!("compiled-policy cache not used: {e:#}");
            return self.compile(engine, wasm, label);
        }
        if let Some(component) = read_entry(engine, &path) {
            return Ok(component);
        }
        let component = self.compile(engine, wasm, label)?;
        match write_entry(&path, &component) {
            Ok(()) => tracing::debug!(path = %path.display(), "compiled policy stored in cache"),
            Err(e) => tracing::warn!(
                "cannot store the compiled policy in {}: {e:#}",
                path.display()
            ),
        }
        Ok(component)
    }

    fn compile(&self, engine: &Engine, wasm: &[u8], label: &str) -> Result<Component> {
        let announce = self.progress && wasm.len() >= PROGRESS_FROM_BYTES;
        if announce {
            eprintln!(
                "keyhost: compiling policy {label} ({:.1} MiB); it is cached for later runs",
                wasm.len() as f64 / (1 << 20) as f64
            );
        }
        let started = std::time::Instant::now();
        let component = Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .context("the file is not a valid WebAssembly component")?;
        if announce {
            eprintln!(
                "keyhost: compiled policy {label} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(component)
    }
}

/// Components from this size on take long enough to compile to say so.
const PROGRESS_FROM_BYTES: usize = 1 << 20;

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    let artifact = bytes
        .strip_prefix(MAGIC.as_slice())
        .filter(|rest| rest.len() > 32)
        .and_then(|rest| {
            let (digest, artifact) = rest.split_at(32);
            (Sha256::digest(artifact).as_slice() == digest).then_some(artifact)
        });
    let Some(artifact) = artifact else {
        tracing::warn!(path = %path.display(), "compiled policy cache entry is corrupt; recompiling");
        return None;
    };
    // SAFETY: the artifact's digest matches the one written with it, so these
    // are the bytes `Component::serialize` produced for this engine's
    // configuration (the entry's name carries the compatibility hash).
    match unsafe { Component::deserialize(engine, artifact) } {
        Ok(component) => {
            tracing::debug!(path = %path.display(), "compiled policy loaded from cache");
            Some(component)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "compiled policy cache entry refused ({e}); recompiling");
            None
        }
    }
}

/// Creates `folder` (mode 0700) if it is missing, and refuses it unless
/// this user owns it and no group or other user may write to it.
fn private_folder(folder: &Path) -> Result<()> {
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

fn write_entry(path: &Path, component: &Component) -> Result<()> {
    let artifact = component.serialize()?;
    let mut entry = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
    entry.extend_from_slice(MAGIC);
    entry.extend_from_slice(&Sha256::digest(&artifact));
    entry.extend_from_slice(&artifact);
    crate::durable::replace(path, &entry)
}
