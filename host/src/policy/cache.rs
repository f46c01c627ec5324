//! The compiled-policy cache. Compiling a component takes far longer than a
//! check, so the native code is kept in the user's cache directory, keyed by
//! the SHA-256 of the component and wasmtime's compatibility hash.
//!
//! An entry is two files: `NAME.cwasm`, the artifact exactly as
//! `Component::serialize` made it, and `NAME.cwasm.sha256`, its SHA-256.
//! The digest is verified before wasmtime sees the bytes: a corrupt entry
//! is recompiled, never trusted. Then wasmtime maps the artifact from the
//! file itself (`deserialize_file`): no copy of the code, and the policy's
//! initial memory is mapped from the file too, where reading it into memory
//! and deserializing that copy cost about 0.5 ms of a `keyhost check`.
//! Entries are written atomically, the artifact before its digest.
//!
//! The digest guards against corruption, not tampering: whoever can write
//! an entry can write a matching digest, and wasmtime runs an entry's
//! native code as it is. So entries are used only from a folder that this
//! user owns and that no group or other user can write (`private_folder`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::side_files::cache_root;

/// The layout of entries, in their names: an entry of another layout (an
/// older keyhost's, with its digest inside) is never read by this one.
const ENTRY_LAYOUT: u32 = 2;

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
            "{}-{:016x}-{ENTRY_LAYOUT}.cwasm",
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
        if let Err(e) = crate::side_files::private_folder(crate::durable::folder_of(&path)) {
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

/// Where the SHA-256 of the entry at `path` is kept.
fn digest_path(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let digest = std::fs::read(digest_path(path)).ok()?;
    let mut artifact = std::fs::File::open(path).ok()?;
    // Hashed through a small buffer: the artifact is never copied whole.
    let mut hasher = Sha256::new();
    std::io::copy(&mut artifact, &mut hasher).ok()?;
    if hasher.finalize().as_slice() != digest {
        tracing::warn!(path = %path.display(), "compiled policy cache entry is corrupt; recompiling");
        return None;
    }
    // wasmtime maps the file the digest was taken of, through its handle
    // (a file renamed over the entry since is not the one checked).
    let checked = PathBuf::from(format!("/proc/self/fd/{}", artifact.as_raw_fd()));
    let checked = if checked.exists() {
        checked
    } else {
        path.to_path_buf()
    };
    // SAFETY: the artifact's digest matches the one written after it, so
    // these are the bytes `Component::serialize` produced for this engine's
    // configuration (the entry's name carries the compatibility hash).
    // Where /proc is missing it is opened again by name, in a folder where
    // only this user's keyhost renames complete entries into place.
    match unsafe { Component::deserialize_file(engine, &checked) } {
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

fn write_entry(path: &Path, component: &Component) -> Result<()> {
    let artifact = component.serialize()?;
    crate::durable::replace(path, &artifact)?;
    crate::durable::replace(&digest_path(path), &Sha256::digest(&artifact))?;
    // The same entry in the first layout (`NAME.cwasm`, its digest inside),
    // which no keyhost of this layout reads.
    let first_layout = path
        .to_string_lossy()
        .replace(&format!("-{ENTRY_LAYOUT}.cwasm"), ".cwasm");
    let _ = std::fs::remove_file(first_layout);
    Ok(())
}
