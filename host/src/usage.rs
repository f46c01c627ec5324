//! Last-used time and use count per key, kept in a state file beside the
//! registry (`PATH.usage.json`), so the TOML is not rewritten per request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
/// How much a key was used.
pub struct Usage {
    /// When serve last let the key through.
    pub last_used: Option<Timestamp>,
    /// How often it did.
    pub count: u64,
}

/// Reads the usage file; a missing file is no usage yet.
pub fn load(path: &Path) -> Result<BTreeMap<String, Usage>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("usage file {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read usage file {}", path.display())),
    }
}

/// Counts uses in memory; `flush` writes them out.
pub struct UsageTracker {
    path: PathBuf,
    state: Mutex<Tracked>,
}

struct Tracked {
    usage: BTreeMap<String, Usage>,
    dirty: bool,
}

impl UsageTracker {
    /// Starts from what the file already holds.
    pub fn open(path: PathBuf) -> Result<UsageTracker> {
        let usage = load(&path)?;
        Ok(UsageTracker {
            path,
            state: Mutex::new(Tracked {
                usage,
                dirty: false,
            }),
        })
    }

    /// Counts a use of `key_id` at `now`.
    pub fn record(&self, key_id: &str, now: Timestamp) {
        let mut state = self.state.lock().expect("usage lock");
        let usage = match state.usage.get_mut(key_id) {
            Some(usage) => usage,
            None => state.usage.entry(key_id.to_string()).or_default(),
        };
        usage.count += 1;
        usage.last_used = Some(now);
        state.dirty = true;
    }

    /// The counts of one key so far, flushed or not.
    pub fn get(&self, key_id: &str) -> Option<Usage> {
        self.state
            .lock()
            .expect("usage lock")
            .usage
            .get(key_id)
            .copied()
    }

    /// Writes the counts when they changed since the last flush.
    pub fn flush(&self) -> Result<()> {
        let bytes = {
            let mut state = self.state.lock().expect("usage lock");
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            serde_json::to_vec_pretty(&state.usage)?
        };
        crate::durable::replace(&self.path, &bytes)
    }
}
