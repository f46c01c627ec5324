//! Finds keyhost keys, and replica credentials, in text by their prefix
//! and checksum, offline.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use regex::bytes::Regex;
use serde::Serialize;
use walkdir::WalkDir;

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

    /// The keys and replica credentials read from `reader`, a line at a
    /// time, in memory bounded by [`PIECE_BYTES`] however long the input
    /// or its lines (a 2 GB file, a stream that never ends a line).
    pub fn scan_reader(&self, file: &str, reader: impl Read) -> Result<Vec<Finding>> {
        let mut reader = BufReader::new(reader);
        let mut findings = Vec::new();
        let mut piece = Vec::with_capacity(8192);
        let mut line = 1;
        // The end of a long line's last piece, read again before its next
        // one so that a key cut between them is found; its length.
        let mut carried = 0;
        loop {
            let read = (&mut reader)
                .take((PIECE_BYTES - piece.len()) as u64)
                .read_until(b'\n', &mut piece)
                .with_context(|| format!("cannot read {file}"))?;
            if read == 0 && piece.len() <= carried {
                return Ok(findings);
            }
            let ended = piece.last() == Some(&b'\n');
            self.scan_line(file, line, &piece, carried, &mut findings);
            if ended || read == 0 {
                line += 1;
                piece.clear();
                carried = 0;
            } else {
                // The line goes on: keep its end, shorter than any key.
                piece.drain(..piece.len().saturating_sub(CARRIED_BYTES));
                carried = piece.len();
            }
        }
    }

    /// The findings in `line` (line `number` of `file`), but for those that
    /// end within its first `seen` bytes, which were reported already. The
    /// bytes as read (a key is ASCII, whatever text is around it), so that
    /// offsets are the same from one piece of a line to the next.
    fn scan_line(
        &self,
        file: &str,
        number: usize,
        line: &[u8],
        seen: usize,
        findings: &mut Vec<Finding>,
    ) {
        let prefix = &self.registry.prefix;
        for shaped in self.pattern.find_iter(line) {
            // The pattern matches ASCII only.
            let Ok(candidate) = std::str::from_utf8(shaped.as_bytes()) else {
                continue;
            };
            if shaped.end() <= seen {
                continue;
            }
            let (kind, key_id, replica) = if let Ok(kind) = key_format::parse(prefix, candidate) {
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
                line: number,
                kind,
                key_id,
                replica,
            });
        }
    }

    /// Scans files, and folders recursively. `on_file` is called for each
    /// file read, so a long scan can show progress. A path given here that
    /// cannot be read is an error; an entry found inside a folder that
    /// cannot be read (a dangling link, a file without permission, a link
    /// back to a folder above it, a FIFO or a device) is skipped with a
    /// warning, and listed in [`Scan::skipped`]. Links are followed.
    pub fn scan_paths(&self, paths: &[PathBuf], on_file: &mut dyn FnMut(&Path)) -> Result<Scan> {
        let mut scan = Scan::default();
        for path in paths {
            // walkdir finds a link that leads back to a folder above it.
            let walk = WalkDir::new(path).follow_links(true).sort_by_file_name();
            for entry in walk {
                let (depth, shown, scanned) = match entry {
                    Ok(entry) => (
                        entry.depth(),
                        entry.path().display().to_string(),
                        self.scan_entry(&entry, on_file),
                    ),
                    Err(e) => (
                        e.depth(),
                        e.path().unwrap_or(path).display().to_string(),
                        Err(e.into()),
                    ),
                };
                match scanned {
                    Ok(found) => scan.findings.extend(found),
                    Err(e) if depth == 0 => {
                        return Err(e).with_context(|| format!("cannot read {shown}"));
                    }
                    Err(e) => {
                        tracing::warn!("skipping {shown}: {e:#}");
                        scan.skipped.push(shown);
                    }
                }
            }
        }
        Ok(scan)
    }

    /// The findings in one entry of a walk: a regular file is read, a
    /// folder is walked into, anything else is refused (a FIFO would
    /// block, a device such as `/dev/zero` never end).
    fn scan_entry(
        &self,
        entry: &walkdir::DirEntry,
        on_file: &mut dyn FnMut(&Path),
    ) -> Result<Vec<Finding>> {
        let kind = entry.file_type();
        if kind.is_dir() {
            return Ok(Vec::new());
        }
        if !kind.is_file() {
            anyhow::bail!("it is not a regular file (a FIFO, a socket or a device)");
        }
        on_file(entry.path());
        // Without blocking, should a FIFO have taken the file's place since.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(entry.path())?;
        self.scan_reader(&entry.path().display().to_string(), file)
    }
}

/// The most of one line held at once while scanning.
pub const PIECE_BYTES: usize = 1 << 20;
/// What of a long line's piece is read again with the next: longer than
/// any key of any prefix (at most 16 letters, a tag and 42 characters).
const CARRIED_BYTES: usize = 128;

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
        let scanner = Scanner::new(&registry, Vec::new());
        let findings = scanner.scan_reader("f", text.as_bytes()).unwrap();
        let lines: Vec<usize> = findings.iter().map(|f| f.line).collect();
        assert_eq!(lines, [1, 2, 4, 4]);
        assert!(
            findings
                .iter()
                .all(|f| f.key_id.as_deref() == Some(record.id.as_str()))
        );

        // A line longer than is held at once: a key cut between two of its
        // pieces is found, once, and those after it keep their line.
        // Bytes that are not UTF-8 just before it move nothing.
        for cut in [1, 10, key.len() - 1] {
            let mut text = b"x".repeat(PIECE_BYTES - cut - 3);
            text.extend_from_slice(b"\xff\xd0\x96");
            text.extend_from_slice(key.as_bytes());
            text.extend_from_slice(&b"y".repeat(PIECE_BYTES));
            text.extend_from_slice(key.as_bytes());
            text.extend_from_slice(format!("\r\n\n{key}").as_bytes());
            let findings = scanner.scan_reader("f", text.as_slice()).unwrap();
            let lines: Vec<usize> = findings.iter().map(|f| f.line).collect();
            assert_eq!(lines, [1, 1, 3], "cut {cut} bytes into the key");
        }
    }
}
