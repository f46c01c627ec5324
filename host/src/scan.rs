//! Finds keyhost keys, and replica credentials, in text by their prefix
//! and checksum, offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use regex::Regex;
use serde::Serialize;

use crate::key_format;
use crate::registry::{KeyIndex, Registry};
use crate::replicas::{self, Replica};

/// A key or a replica credential found in a file. It never holds the
/// secret.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The file, or `<stdin>`.
    pub file: String,
    /// The 1-based line.
    pub line: usize,
    /// The kind the key's tag names, or [`REPLICA_CREDENTIAL`].
    pub kind: &'static str,
    /// The registry's key with this secret; `None` for a well-formed key
    /// this registry does not hold, and for a replica credential.
    pub key_id: Option<String>,
    /// For a replica credential of this registry, its name (revoke it
    /// with `keyhost replica revoke NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// What a finding's `kind` says of a replica credential.
pub const REPLICA_CREDENTIAL: &str = "replica-credential";

/// Looks for keys and replica credentials of one registry.
pub struct Scanner<'r> {
    registry: &'r Registry,
    index: KeyIndex,
    replicas: Vec<Replica>,
    pattern: Regex,
}

impl<'r> Scanner<'r> {
    /// A scanner that knows `registry`'s prefix and keys, and its replica
    /// credentials `replicas`.
    pub fn new(registry: &'r Registry, replicas: Vec<Replica>) -> Scanner<'r> {
        let pattern = key_format::candidate_pattern(&regex::escape(&registry.prefix));
        Scanner {
            registry,
            index: KeyIndex::build(registry),
            replicas,
            pattern: Regex::new(&pattern).expect("the key pattern is a valid regex"),
        }
    }

    /// The keys and replica credentials in `text`, whose lines are
    /// reported as from `file`. A match whose checksum fails is not one
    /// and is skipped.
    pub fn scan_text(&self, file: &str, text: &str) -> Vec<Finding> {
        let prefix = &self.registry.prefix;
        let mut findings = Vec::new();
        for (number, line) in text.lines().enumerate() {
            for shaped in self.pattern.find_iter(line) {
                let candidate = shaped.as_str();
                let (kind, key_id, replica) = if let Ok(kind) = key_format::parse(prefix, candidate)
                {
                    let found = self.index.find(&key_format::hash(candidate));
                    let key_id = found.map(|f| self.registry.keys[f.key].id.clone());
                    (kind.as_str(), key_id, None)
                } else if key_format::is_replica_credential(prefix, candidate) {
                    let name = replicas::named(&self.replicas, candidate);
                    (REPLICA_CREDENTIAL, None, name)
                } else {
                    continue;
                };
                findings.push(Finding {
                    file: file.to_string(),
                    line: number + 1,
                    kind,
                    key_id,
                    replica,
                });
            }
        }
        findings
    }

    /// Scans files, and folders recursively. `on_file` is called for each
    /// file read, so a long scan can show progress. A path given here that
    /// cannot be read is an error; an entry found inside a folder that
    /// cannot be read (a dangling link, a file without permission) is
    /// skipped with a warning, and listed in [`Scan::skipped`].
    pub fn scan_paths(&self, paths: &[PathBuf], on_file: &mut dyn FnMut(&Path)) -> Result<Scan> {
        let mut scan = Scan::default();
        for path in paths {
            self.scan_path(path, &mut scan, on_file)?;
        }
        Ok(scan)
    }

    fn scan_path(
        &self,
        path: &Path,
        scan: &mut Scan,
        on_file: &mut dyn FnMut(&Path),
    ) -> Result<()> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            for entry in entries {
                if let Err(e) = self.scan_path(&entry, scan, on_file) {
                    tracing::warn!("skipping {}: {e:#}", entry.display());
                    scan.skipped.push(entry.display().to_string());
                }
            }
            return Ok(());
        }
        on_file(path);
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        scan.findings.extend(self.scan_text(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        ));
        Ok(())
    }
}

/// What a scan of paths found, and what it could not read.
#[derive(Debug, Default)]
pub struct Scan {
    /// The keys found.
    pub findings: Vec<Finding>,
    /// Files that could not be read, with why.
    pub skipped: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::IamId;
    use crate::lifecycle::{self, NewIdentity, NewKey};
    use crate::time::Timestamp;

    #[test]
    fn keys_glued_to_other_text_are_found_and_bad_checksums_are_not() {
        let mut registry = Registry::new("kh");
        let alice: IamId = "user:alice".parse().unwrap();
        let now = Timestamp::now();
        let new = NewIdentity {
            iam_id: alice.clone(),
            owner: None,
            scopes: Vec::new(),
        };
        lifecycle::add_identity(&mut registry, new, now).unwrap();
        let new = NewKey {
            name: "k".into(),
            ..NewKey::default()
        };
        let (record, secret) = lifecycle::create_key(&mut registry, &alice, new, now).unwrap();
        let key = secret.expose();
        let mut typo = key.to_string();
        typo.replace_range(10..11, if &key[10..11] == "a" { "b" } else { "a" });
        let text = format!("token=\"{key}\"\nЖ{key}_\n{typo}\nx{key}y{key}\n");
        let findings = Scanner::new(&registry, Vec::new()).scan_text("f", &text);
        let lines: Vec<usize> = findings.iter().map(|f| f.line).collect();
        assert_eq!(lines, [1, 2, 4, 4]);
        assert!(
            findings
                .iter()
                .all(|f| f.key_id.as_deref() == Some(record.id.as_str()))
        );
    }
}
