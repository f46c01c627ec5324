//! The registry snapshot: what every reader other than the registry's own
//! writer reads. `keyhost check` keeps one in its cache, and `keyhost gate
//! build` puts one inside a gate component. Only hashes and records, never a
//! secret.
//!
//! It is read where it lies, with no parsing proportional to its size: a
//! binary search over fixed-size entries sorted by hash, then one record.
//! A reader gives positioned reads ([`ReadAt`]): a file in the host, the
//! data component's memory in the gate.
//!
//! Layout: [`MAGIC`], a u64 header length, the header (JSON), the entries
//! ([`ENTRY_LEN`] bytes each, sorted by hash), the [`Tables`] by name
//! ([`ROW_LEN`] bytes a row), the records (JSON), then the SHA-256 of
//! everything before it ([`CHECKSUM_LEN`] bytes). Opening reads only the
//! header; a reader that took the bytes from elsewhere (a filter fetching
//! them over the network) calls [`Snapshot::verify`] once.
//!
//! The tables by name are what `keyhost serve` answers from besides checks
//! (a token's key by id, a user's keys, an identity), so that it too reads
//! the snapshot where it lies rather than the whole registry.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::lookup::{Found, Lent, Lookup};
use crate::record::{Identity, KeyRecord, secret_hashes};
use crate::time::Timestamp;

/// 05: tables by key id, by manager, by identity and by owner.
pub const MAGIC: &[u8; 8] = b"KHSNAP05";
/// The room a header keeps for its source (as JSON, quotes included) when
/// the source is shorter.
const SOURCE_ROOM: usize = 256;
/// The length of the checksum at the end.
pub const CHECKSUM_LEN: usize = 32;
/// hash (32) | key position (8) | record offset (8) | record length (8) |
/// retired until (8, i64::MIN for a current secret).
pub const ENTRY_LEN: usize = 64;
const NOT_RETIRED: i64 = i64::MIN;
/// A row of a table by name: the first 8 bytes of the name's SHA-256 (8,
/// big-endian) | record offset (8) | record length (4) | position (4).
pub const ROW_LEN: usize = 24;

/// Where one table by name lies, and how many rows it has. Rows are sorted
/// by the name's digest, so every row of one name is next to the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Its first byte.
    pub at: u64,
    /// How many rows.
    pub rows: u64,
}

/// The tables by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tables {
    /// Every key, by its id (key records).
    pub key_ids: Table,
    /// Every key whose identity exists, by the user who manages it (key
    /// records).
    pub managers: Table,
    /// Every identity, by its IAM id (identity records).
    pub identities: Table,
    /// Every service ID, by the user who owns it (identity records).
    pub owners: Table,
}

impl Tables {
    fn all(&self) -> [Table; 4] {
        [self.key_ids, self.managers, self.identities, self.owners]
    }
}
/// What a check needs besides the keys, and where the snapshot came from.
/// Nothing a check does not need goes here: the filters read it, and one
/// more field (a registry setting) changed the plugin's code enough that
/// Traefik 3.7.15's wazero trapped opening it on this machine (as with
/// `hash_into`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// What the snapshot was made from, in the writer's words (the host
    /// writes the registry file's stamp): a reader whose source now says
    /// otherwise rebuilds rather than answer from a stale snapshot.
    pub source: String,
    /// The registry's revision.
    pub revision: u64,
    /// The first part of every secret.
    pub prefix: String,
    /// `[policy.config]`, as name/value pairs.
    pub policy_config: Vec<(String, String)>,
    /// How many secret hashes (current and retired) it holds.
    pub entries: u64,
    /// How many keys it holds.
    pub keys: u64,
    /// How many identities it holds.
    pub identities: u64,
    /// The tables by name.
    pub tables: Tables,
    /// The whole snapshot's length, so a truncated one is never read.
    pub total_len: u64,
    /// For a snapshot of a registry's key changes, laid over the snapshot
    /// of its file: every key id it speaks for (changed, created or
    /// deleted). The other snapshot's key of such an id is not in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
}

/// A key as the snapshot keeps it, with its identity.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotKey {
    key: KeyRecord,
    identity: Option<Identity>,
}

/// Positioned reads of a snapshot's bytes.
pub trait ReadAt {
    /// Fills `buf` from `offset`; an error when fewer bytes are there.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// How many bytes there are.
    fn size(&self) -> Result<u64>;
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let start = usize::try_from(offset).context("offset")?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .context("the snapshot is truncated")?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn size(&self) -> Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }

    fn size(&self) -> Result<u64> {
        (**self).size()
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.as_slice().read_at(buf, offset)
    }

    fn size(&self) -> Result<u64> {
        Ok(self.as_slice().len() as u64)
    }
}

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
            .context("the snapshot is truncated")
    }

    fn size(&self) -> Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// A table row's (position, record offset, record length).
fn row_fields(row: &[u8]) -> (u64, u64, u64) {
    let field = |from: usize, len: usize| {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&row[from..from + len]);
        u64::from_le_bytes(bytes)
    };
    (field(20, 4), field(8, 8), field(16, 4))
}

/// The entity tag of a snapshot with `checksum`.
pub fn etag_of(checksum: &[u8; CHECKSUM_LEN]) -> String {
    format!("\"{}\"", hex::encode(&checksum[..16]))
}

/// Whether the checksum at the end of a whole snapshot's `bytes` is the
/// SHA-256 of all before it.
pub fn verify_bytes(bytes: &[u8]) -> Result<()> {
    verify_source(&bytes, bytes.len() as u64)
}

/// Whether the checksum at the end of the first `len` bytes of `source` is
/// the SHA-256 of all before it. Read a piece at a time: checking a large
/// snapshot costs no copy of it, and a mapped one is not made resident.
fn verify_source(source: &(impl ReadAt + ?Sized), len: u64) -> Result<()> {
    const PIECE: u64 = 1 << 20;
    let Some(body_len) = len.checked_sub(CHECKSUM_LEN as u64) else {
        bail!("the snapshot is truncated");
    };
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; PIECE.min(body_len) as usize];
    let mut at = 0;
    while at < body_len {
        let piece = &mut buf[..PIECE.min(body_len - at) as usize];
        source.read_at(piece, at)?;
        hash_into(&mut digest, piece);
        at += piece.len() as u64;
    }
    let mut checksum = [0u8; CHECKSUM_LEN];
    source.read_at(&mut checksum, body_len)?;
    if !bool::from(digest.finalize().as_slice().ct_eq(&checksum)) {
        bail!("the snapshot is corrupt: its checksum does not match its bytes");
    }
    Ok(())
}

/// The same snapshot as `bytes`, naming `source` as where it came from: its
/// new beginning (the magic, the header's length and the header) and its
/// new checksum. What lies between them is `bytes` from
/// `16 + header length` to the old checksum, unchanged, so a caller can send
/// it as it lies. The header keeps its width (spaces pad it), so no offset
/// moves. An error when `bytes` is no snapshot, is not whole (its
/// checksum, checked in the same pass), or `source` is too long to fit in
/// place of the one it names.
pub fn with_source(bytes: &[u8], source: &str) -> Result<(Vec<u8>, [u8; CHECKSUM_LEN])> {
    let snapshot = Snapshot::open(bytes)?;
    let width = snapshot.entries_at as usize - 16;
    let mut header = snapshot.header().clone();
    header.source = source.to_string();
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&(width as u64).to_le_bytes());
    let json = serde_json::to_vec(&header).context("the header serializes")?;
    if json.len() > width {
        bail!("the new source does not fit in the snapshot's header");
    }
    head.extend_from_slice(&json);
    head.resize(16 + width, b' ');
    let body_end = bytes.len() - CHECKSUM_LEN;
    // The bytes as they lie are checked in the same pass: a fresh checksum
    // must never make damaged bytes look whole.
    let (mut renamed, mut original) = (Sha256::new(), Sha256::new());
    renamed.update(&head);
    original.update(&bytes[..16 + width]);
    for piece in bytes[16 + width..body_end].chunks(1 << 20) {
        renamed.update(piece);
        original.update(piece);
    }
    if !bool::from(original.finalize().as_slice().ct_eq(&bytes[body_end..])) {
        bail!("the snapshot is corrupt: its checksum does not match its bytes");
    }
    Ok((head, renamed.finalize().into()))
}

/// Feeds `bytes` to `digest`; in a wasm32 host one 64-byte block per call.
/// Traefik 3.7.15's wazero, on an x86-64 VM (a Sapphire Rapids Xeon, Linux
/// 6.18), traps with "out of bounds memory access" in sha2's compression of
/// several blocks at once: the plugin refused every snapshot over one key
/// (about 2 KB), and the same hash fed a block at a time passes. The extra
/// calls cost a wasm host one buffer copy per block, once per snapshot.
fn hash_into(digest: &mut Sha256, bytes: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    for block in bytes.chunks(64) {
        digest.update(block);
    }
    #[cfg(not(target_arch = "wasm32"))]
    digest.update(bytes);
}

/// The first 8 bytes of the SHA-256 of `name`, as tables by name order it.
fn name_digest(name: &str) -> u64 {
    prefix(&Sha256::digest(name.as_bytes()))
}

/// The first 8 bytes of a hash (or an entry), as the number they order by.
fn prefix(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// An open snapshot whose header and bounds have been checked.
pub struct Snapshot<S> {
    source: S,
    header: Header,
    entries_at: u64,
}

impl<S: ReadAt> Snapshot<S> {
    /// Opens `source`, checking its magic, header and length. Reads the
    /// header only, whatever the number of keys.
    pub fn open(source: S) -> Result<Snapshot<S>> {
        let mut prelude = [0u8; 16];
        source
            .read_at(&mut prelude, 0)
            .context("not a keyhost snapshot: too short")?;
        if &prelude[..8] != MAGIC {
            bail!("not a keyhost snapshot of this version (no {MAGIC:?} at the start)");
        }
        let header_len = u64::from_le_bytes(prelude[8..].try_into().expect("8 bytes"));
        let total = source.size()?;
        if header_len > total.saturating_sub(16) {
            bail!("the snapshot is truncated (its header runs past its end)");
        }
        let mut header = vec![0u8; header_len as usize];
        source.read_at(&mut header, 16)?;
        let header: Header =
            serde_json::from_slice(&header).context("the snapshot's header is corrupt")?;
        let entries_at = 16 + header_len;
        let entries_end = header
            .entries
            .checked_mul(ENTRY_LEN as u64)
            .and_then(|len| len.checked_add(entries_at))
            .context("the snapshot's header is corrupt")?;
        if header.total_len != total || entries_end > total.saturating_sub(CHECKSUM_LEN as u64) {
            bail!(
                "the snapshot is truncated or padded: {total} bytes where its header says {}",
                header.total_len
            );
        }
        for table in header.tables.all() {
            let end = table
                .rows
                .checked_mul(ROW_LEN as u64)
                .and_then(|len| len.checked_add(table.at))
                .context("the snapshot's header is corrupt")?;
            if table.rows > 0 && (table.at < entries_end || end > total - CHECKSUM_LEN as u64) {
                bail!("the snapshot's header is corrupt: a table lies outside it");
            }
        }
        Ok(Snapshot {
            source,
            header,
            entries_at,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The checksum at its end, as it lies (unverified).
    pub fn checksum(&self) -> Result<[u8; CHECKSUM_LEN]> {
        let mut checksum = [0u8; CHECKSUM_LEN];
        self.source
            .read_at(&mut checksum, self.header.total_len - CHECKSUM_LEN as u64)?;
        Ok(checksum)
    }

    /// The snapshot's HTTP entity tag: its checksum, quoted. `keyhost serve`
    /// answers "not modified" to a fetch that sends it back.
    pub fn etag(&self) -> Result<String> {
        Ok(etag_of(&self.checksum()?))
    }

    /// Whether every byte is as written: the checksum at the end is the
    /// SHA-256 of all before it. Reads the whole snapshot, a piece at a
    /// time.
    pub fn verify(&self) -> Result<()> {
        verify_source(&self.source, self.header.total_len)
    }

    /// The bytes it is read from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// All of it, as it lies.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; usize::try_from(self.header.total_len).context("length")?];
        self.source.read_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    fn entry(&self, at: u64) -> Result<[u8; ENTRY_LEN]> {
        let mut entry = [0u8; ENTRY_LEN];
        self.source
            .read_at(&mut entry, self.entries_at + at * ENTRY_LEN as u64)?;
        Ok(entry)
    }

    /// The key whose secret hashes to `hash`. Entries are found by the first
    /// 8 bytes of the hash, then every entry with those bytes is compared in
    /// full, in constant time, as the host's in-memory index does.
    fn find_entry(&self, hash: &[u8; 32]) -> Result<Option<Found<'static>>> {
        let low = self.first_not_below(prefix(hash))?;
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
        let Some(entry) = matched else {
            return Ok(None);
        };
        let found = self.hit(&entry)?;
        // The entry points at the record of the key that holds this hash,
        // and says what the record says of it (current, or retired until
        // when): one that does not is a damaged or forged snapshot, and
        // could make a secret work past its grace period, or as another key.
        let held = if bool::from(found.key.hash.0.ct_eq(hash)) {
            Some(None)
        } else {
            found
                .key
                .retired
                .iter()
                .find(|retired| bool::from(retired.hash.0.ct_eq(hash)))
                .map(|retired| Some(retired.valid_until))
        };
        if held != Some(found.retired_until) {
            bail!("a snapshot entry does not match the record it points at");
        }
        Ok(Some(found))
    }

    /// The first entry whose hash prefix is not below `wanted` (a lower
    /// bound).
    fn first_not_below(&self, wanted: u64) -> Result<u64> {
        self.lower_bound(
            self.entries_at,
            ENTRY_LEN as u64,
            self.header.entries,
            wanted,
        )
    }

    /// The first of `rows` rows of `row_len` bytes from `at`, sorted by
    /// their first 8 bytes, whose first 8 bytes are not below `wanted`.
    /// Hashes of random secrets and of names are spread evenly, so each
    /// probe guesses where `wanted` lies between the bounds' prefixes
    /// (interpolation): about three reads at any size, where a binary
    /// search takes twenty at a million keys, and each read touches another
    /// page of a gate's snapshot. Hand-written hashes could skew that, so
    /// after a few guesses it halves instead.
    fn lower_bound(&self, at: u64, row_len: u64, rows: u64, wanted: u64) -> Result<u64> {
        const GUESSES: u32 = 6;
        let (mut low, mut high) = (0u64, rows);
        // Every row before `low` is below `wanted`, none from `high` on;
        // their prefixes lie within [low_prefix, high_prefix].
        let (mut low_prefix, mut high_prefix) = (0u64, u64::MAX);
        let mut probes = 0;
        let mut row = [0u8; 8];
        while low < high {
            let probe = if probes < GUESSES && high_prefix > low_prefix {
                let span = u128::from(high - low);
                let offset = u128::from(wanted.saturating_sub(low_prefix)) * span
                    / (u128::from(high_prefix - low_prefix) + 1);
                low + (offset as u64).min(high - low - 1)
            } else {
                low + (high - low) / 2
            };
            probes += 1;
            self.source.read_at(&mut row, at + probe * row_len)?;
            let found = prefix(&row);
            if found < wanted {
                low = probe + 1;
                low_prefix = found;
            } else {
                high = probe;
                high_prefix = found;
            }
        }
        Ok(low)
    }

    /// The (position, record offset, record length) of every row of
    /// `table` whose name has the digest of `name`; the caller compares
    /// the name in each record, as another name may share the digest.
    fn rows_named(&self, table: Table, name: &str) -> Result<Vec<(u64, u64, u64)>> {
        let wanted = name_digest(name);
        let mut at = self.lower_bound(table.at, ROW_LEN as u64, table.rows, wanted)?;
        let mut rows = Vec::new();
        let mut row = [0u8; ROW_LEN];
        while at < table.rows {
            self.source
                .read_at(&mut row, table.at + at * ROW_LEN as u64)?;
            if prefix(&row) != wanted {
                break;
            }
            rows.push(row_fields(&row));
            at += 1;
        }
        Ok(rows)
    }

    /// The record of `len` bytes at `offset`, decoded.
    fn record<T: serde::de::DeserializeOwned>(&self, offset: u64, len: u64) -> Result<T> {
        let end = offset
            .checked_add(len)
            .context("a snapshot entry is corrupt")?;
        if end > self.header.total_len - CHECKSUM_LEN as u64 {
            bail!("a snapshot entry points past its records");
        }
        let mut record = vec![0u8; usize::try_from(len).context("record length")?];
        self.source.read_at(&mut record, offset)?;
        serde_json::from_slice(&record).context("a snapshot record is corrupt")
    }

    /// The key whose id is `id`, with its identity.
    pub fn key_by_id(&self, id: &str) -> Result<Option<Found<'static>>> {
        for (position, offset, len) in self.rows_named(self.header.tables.key_ids, id)? {
            let record: SnapshotKey = self.record(offset, len)?;
            if record.key.id == id {
                return Ok(Some(Found {
                    position: usize::try_from(position).context("key position")?,
                    key: Lent::Owned(record.key),
                    identity: record.identity.map(Lent::Owned),
                    retired_until: None,
                }));
            }
        }
        Ok(None)
    }

    /// The identity `iam_id`.
    pub fn identity(&self, iam_id: &str) -> Result<Option<Identity>> {
        for (_, offset, len) in self.rows_named(self.header.tables.identities, iam_id)? {
            let identity: Identity = self.record(offset, len)?;
            if identity.iam_id.as_str() == iam_id {
                return Ok(Some(identity));
            }
        }
        Ok(None)
    }

    /// The keys `manager` manages (their own, and their service IDs'), in
    /// the registry's order.
    pub fn keys_managed_by(&self, manager: &str) -> Result<Vec<KeyRecord>> {
        let mut keys = Vec::new();
        for (position, offset, len) in self.rows_named(self.header.tables.managers, manager)? {
            let record: SnapshotKey = self.record(offset, len)?;
            if record
                .identity
                .as_ref()
                .is_some_and(|identity| identity.manager().as_str() == manager)
            {
                keys.push((position, record.key));
            }
        }
        keys.sort_unstable_by_key(|(position, _)| *position);
        Ok(keys.into_iter().map(|(_, key)| key).collect())
    }

    /// The service IDs `owner` owns, in the registry's order.
    pub fn identities_owned_by(&self, owner: &str) -> Result<Vec<Identity>> {
        let mut owned = Vec::new();
        for (position, offset, len) in self.rows_named(self.header.tables.owners, owner)? {
            let identity: Identity = self.record(offset, len)?;
            if identity.owner.as_ref().is_some_and(|o| o.as_str() == owner) {
                owned.push((position, identity));
            }
        }
        owned.sort_unstable_by_key(|(position, _)| *position);
        Ok(owned.into_iter().map(|(_, identity)| identity).collect())
    }

    /// Every key, in the registry's order: what a snapshot of the
    /// registry with changes laid over this one is made of.
    pub fn all_keys(&self) -> Result<Vec<KeyRecord>> {
        let mut keys: Vec<(u64, KeyRecord)> = self
            .all_rows(self.header.tables.key_ids)?
            .into_iter()
            .map(|(position, offset, len)| {
                let record: SnapshotKey = self.record(offset, len)?;
                Ok((position, record.key))
            })
            .collect::<Result<_>>()?;
        keys.sort_unstable_by_key(|(position, _)| *position);
        Ok(keys.into_iter().map(|(_, key)| key).collect())
    }

    /// Every identity, in the registry's order.
    pub fn all_identities(&self) -> Result<Vec<Identity>> {
        let mut identities: Vec<(u64, Identity)> = self
            .all_rows(self.header.tables.identities)?
            .into_iter()
            .map(|(position, offset, len)| Ok((position, self.record(offset, len)?)))
            .collect::<Result<_>>()?;
        identities.sort_unstable_by_key(|(position, _)| *position);
        Ok(identities
            .into_iter()
            .map(|(_, identity)| identity)
            .collect())
    }

    /// The (position, record offset, record length) of every row of `table`.
    fn all_rows(&self, table: Table) -> Result<Vec<(u64, u64, u64)>> {
        let len = usize::try_from(table.rows).context("table length")?;
        let mut bytes = vec![0u8; len.checked_mul(ROW_LEN).context("table length")?];
        self.source.read_at(&mut bytes, table.at)?;
        Ok(bytes.chunks_exact(ROW_LEN).map(row_fields).collect())
    }

    fn hit(&self, entry: &[u8; ENTRY_LEN]) -> Result<Found<'static>> {
        let field = |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().expect("8 bytes"));
        let (position, offset, len) = (field(32), field(40), field(48));
        let retired = field(56) as i64;
        let record: SnapshotKey = self.record(offset, len)?;
        Ok(Found {
            position: usize::try_from(position).context("key position")?,
            key: Lent::Owned(record.key),
            identity: record.identity.map(Lent::Owned),
            retired_until: (retired != NOT_RETIRED).then_some(Timestamp(retired)),
        })
    }
}

impl<S: ReadAt> Lookup for Snapshot<S> {
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

    fn find_by_id(&self, id: &str) -> Result<Option<Found<'_>>> {
        self.key_by_id(id)
    }
}

/// What a snapshot is made of.
pub struct Contents<'a> {
    /// See [`Header::source`].
    pub source: String,
    /// The registry's revision.
    pub revision: u64,
    /// The first part of every secret.
    pub prefix: &'a str,
    /// `[policy.config]`, as name/value pairs.
    pub policy_config: Vec<(String, String)>,
    /// Every key.
    pub keys: &'a [KeyRecord],
    /// Every identity.
    pub identities: &'a [Identity],
    /// See [`Header::superseded`].
    pub superseded: Vec<String>,
}

/// The bytes of a snapshot of `contents`.
pub fn encode(contents: &Contents<'_>) -> Vec<u8> {
    encode_reporting(contents, &mut |_| {})
}

/// How many keys are encoded between two calls of a progress report.
pub const REPORT_EVERY: usize = 4096;

/// [`encode`], calling `report` with the number of keys encoded so far
/// every [`REPORT_EVERY`] keys and once at the end: at a million keys it
/// takes seconds, and a terminal shows how far it has come.
pub fn encode_reporting(contents: &Contents<'_>, report: &mut dyn FnMut(usize)) -> Vec<u8> {
    let identities: HashMap<&str, &Identity> = contents
        .identities
        .iter()
        .map(|identity| (identity.iam_id.as_str(), identity))
        .collect();
    let mut records = Vec::new();
    let mut located = Vec::with_capacity(contents.keys.len());
    // (name digest, position, offset within the records, length) per table.
    let (mut key_ids, mut managers) = (Vec::new(), Vec::new());
    for (position, key) in contents.keys.iter().enumerate() {
        let identity = identities.get(key.owner.as_str()).copied();
        let record = SnapshotKey {
            key: key.clone(),
            identity: identity.cloned(),
        };
        let (offset, len) = append_json(&mut records, &record);
        located.push((offset, len));
        key_ids.push((name_digest(&key.id), position, offset, len));
        if let Some(identity) = identity {
            managers.push((
                name_digest(identity.manager().as_str()),
                position,
                offset,
                len,
            ));
        }
        if located.len() % REPORT_EVERY == 0 {
            report(located.len());
        }
    }
    report(located.len());
    let (mut by_iam_id, mut owners) = (Vec::new(), Vec::new());
    for (position, identity) in contents.identities.iter().enumerate() {
        let (offset, len) = append_json(&mut records, identity);
        by_iam_id.push((name_digest(identity.iam_id.as_str()), position, offset, len));
        if let Some(owner) = &identity.owner {
            owners.push((name_digest(owner.as_str()), position, offset, len));
        }
    }
    let mut entries: Vec<([u8; 32], u64, i64)> = secret_hashes(contents.keys)
        .map(|(hash, position, retired)| {
            (hash, position as u64, retired.map_or(NOT_RETIRED, |t| t.0))
        })
        .collect();
    entries.sort_unstable_by_key(|entry| entry.0);
    let mut tables = [key_ids, managers, by_iam_id, owners];
    for rows in &mut tables {
        rows.sort_unstable_by_key(|&(digest, position, ..)| (digest, position));
    }

    // The header holds the whole length and where the tables lie, and its
    // own length is part of those: it is serialized with placeholders of
    // the same width first.
    let placeholder = |rows: &Vec<_>| Table {
        at: u64::MAX,
        rows: rows.len() as u64,
    };
    let mut header = Header {
        source: contents.source.clone(),
        revision: contents.revision,
        prefix: contents.prefix.to_string(),
        policy_config: contents.policy_config.clone(),
        entries: entries.len() as u64,
        keys: contents.keys.len() as u64,
        identities: contents.identities.len() as u64,
        tables: Tables {
            key_ids: placeholder(&tables[0]),
            managers: placeholder(&tables[1]),
            identities: placeholder(&tables[2]),
            owners: placeholder(&tables[3]),
        },
        total_len: u64::MAX,
        superseded: contents.superseded.clone(),
    };
    // The source has room of its own, so that the width, and with it every
    // offset, is the same whatever the source says: one registry's
    // snapshots then differ in their header alone, and named for one source
    // (`with_source`) they are the same bytes.
    let source = std::mem::take(&mut header.source);
    let source_len = serde_json::to_string(&source)
        .expect("a string serializes")
        .len();
    let width = serde_json::to_vec(&header)
        .expect("the header serializes")
        .len()
        + source_len.max(SOURCE_ROOM);
    header.source = source;
    // The real numbers are shorter; spaces (valid JSON) make up the width.
    let mut at = (16 + width + entries.len() * ENTRY_LEN) as u64;
    let mut place = |rows: &Vec<_>| {
        let table = Table {
            at,
            rows: rows.len() as u64,
        };
        at += (rows.len() * ROW_LEN) as u64;
        table
    };
    header.tables = Tables {
        key_ids: place(&tables[0]),
        managers: place(&tables[1]),
        identities: place(&tables[2]),
        owners: place(&tables[3]),
    };
    let records_at = at;
    header.total_len = records_at + (records.len() + CHECKSUM_LEN) as u64;
    let mut header = serde_json::to_vec(&header).expect("the header serializes");
    header.resize(width, b' ');
    let mut bytes = Vec::with_capacity(records_at as usize + records.len() + CHECKSUM_LEN);
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
    for rows in &tables {
        for &(digest, position, offset, len) in rows {
            bytes.extend_from_slice(&digest.to_be_bytes());
            bytes.extend_from_slice(&(records_at + offset).to_le_bytes());
            let len = u32::try_from(len).expect("a record under 4 GiB");
            let position = u32::try_from(position).expect("under 4G keys or identities");
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&position.to_le_bytes());
        }
    }
    bytes.extend_from_slice(&records);
    let checksum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&checksum);
    bytes
}

/// Appends `record` to `records` as JSON; its offset there, and length.
fn append_json(records: &mut Vec<u8>, record: &impl Serialize) -> (u64, u64) {
    let start = records.len();
    serde_json::to_writer(&mut *records, record).expect("a record serializes");
    (start as u64, (records.len() - start) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot of `n` entries with the hashes of 0..n, sorted, and no
    /// records: enough to test the search.
    fn entries(hashes: &[[u8; 32]]) -> Snapshot<Vec<u8>> {
        let mut sorted = hashes.to_vec();
        sorted.sort_unstable();
        let mut header = Header {
            source: String::new(),
            revision: 0,
            prefix: "kh".into(),
            policy_config: Vec::new(),
            entries: sorted.len() as u64,
            keys: 0,
            identities: 0,
            tables: Tables::default(),
            total_len: u64::MAX,
            superseded: Vec::new(),
        };
        let width = serde_json::to_vec(&header).unwrap().len();
        header.total_len = (16 + width + sorted.len() * ENTRY_LEN + CHECKSUM_LEN) as u64;
        let mut head = serde_json::to_vec(&header).unwrap();
        head.resize(width, b' ');
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&head);
        for hash in &sorted {
            bytes.extend_from_slice(hash);
            bytes.extend_from_slice(&[0u8; ENTRY_LEN - 32]);
        }
        bytes.extend_from_slice(&[0u8; CHECKSUM_LEN]);
        Snapshot::open(bytes).unwrap()
    }

    fn lower_bound(sorted: &[[u8; 32]], wanted: u64) -> u64 {
        sorted.partition_point(|h| prefix(h) < wanted) as u64
    }

    #[test]
    fn the_interpolated_search_finds_the_lower_bound_however_hashes_lie() {
        let even: Vec<[u8; 32]> = (0..5000u32)
            .map(|i| Sha256::digest(i.to_le_bytes()).into())
            .collect();
        // Hand-written hashes: bunched at both ends, with runs of one prefix.
        let skewed: Vec<[u8; 32]> = (0..2000u32)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..4].copy_from_slice(&(i / 3).to_be_bytes());
                if i % 2 == 0 {
                    h[0] = 0xff;
                }
                h[31] = i as u8;
                h
            })
            .collect();
        for hashes in [even, skewed, Vec::new(), vec![[7u8; 32]]] {
            let snapshot = entries(&hashes);
            let mut sorted = hashes.clone();
            sorted.sort_unstable();
            let probes =
                sorted
                    .iter()
                    .map(|h| prefix(h))
                    .chain([0, 1, u64::MAX, u64::MAX - 1, 1 << 63]);
            for wanted in probes {
                assert_eq!(
                    snapshot.first_not_below(wanted).unwrap(),
                    lower_bound(&sorted, wanted),
                    "{wanted:x}"
                );
            }
        }
    }

    #[test]
    fn a_snapshot_named_for_another_source_is_whole_and_otherwise_the_same() {
        let identities = [Identity {
            iam_id: "user:alice".parse().unwrap(),
            owner: None,
            scopes: vec!["read".into()],
            created_at: Timestamp(0),
        }];
        let contents = Contents {
            source: r#"{"dev":2049,"ino":1234567,"size":99}"#.into(),
            revision: 7,
            prefix: "kh",
            policy_config: vec![("a".into(), "b".into())],
            keys: &[],
            identities: &identities,
            superseded: Vec::new(),
        };
        let bytes = encode(&contents);
        let (head, checksum) = with_source(&bytes, "keyhost serve").unwrap();
        let mut whole = head.clone();
        whole.extend_from_slice(&bytes[head.len()..bytes.len() - CHECKSUM_LEN]);
        whole.extend_from_slice(&checksum);
        verify_bytes(&whole).unwrap();
        assert_eq!(whole.len(), bytes.len());
        let renamed = Snapshot::open(whole.as_slice()).unwrap();
        let original = Snapshot::open(bytes.as_slice()).unwrap();
        assert_eq!(renamed.header().source, "keyhost serve");
        assert_eq!(
            Header {
                source: String::new(),
                ..renamed.header().clone()
            },
            Header {
                source: String::new(),
                ..original.header().clone()
            }
        );
        assert!(with_source(&bytes, &"x".repeat(1000)).is_err());
        let mut damaged = bytes.clone();
        let last = damaged.len() - CHECKSUM_LEN - 1;
        damaged[last] ^= 1;
        assert!(
            with_source(&damaged, "keyhost serve").is_err(),
            "never made whole"
        );

        // Made from one registry with sources of other lengths (the stamps
        // of its file on two machines), then named for one source, they are
        // the same bytes: replicas send the same entity tag.
        let other = encode(&Contents {
            source: r#"{"dev":64768,"ino":98765432109,"size":1048576}"#.into(),
            ..contents
        });
        let named = |bytes: &[u8]| {
            let (head, checksum) = with_source(bytes, "keyhost serve").unwrap();
            let mut whole = head.clone();
            whole.extend_from_slice(&bytes[head.len()..bytes.len() - CHECKSUM_LEN]);
            whole.extend_from_slice(&checksum);
            whole
        };
        assert_ne!(bytes, other);
        assert_eq!(named(&bytes), named(&other));
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_verification() {
        let contents = Contents {
            source: String::new(),
            revision: 3,
            prefix: "kh",
            policy_config: Vec::new(),
            keys: &[],
            identities: &[],
            superseded: Vec::new(),
        };
        let bytes = encode(&contents);
        Snapshot::open(bytes.as_slice()).unwrap().verify().unwrap();
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            // Either the frame no longer opens, or the checksum says so.
            let refused = Snapshot::open(flipped.as_slice()).and_then(|s| s.verify());
            assert!(refused.is_err(), "a flip at {at} went unseen");
        }
    }
}
