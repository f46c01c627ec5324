//! `keyhost import`: keys made elsewhere, read from a CSV file (AWS API
//! Gateway's import columns) or a JSON file (Unkey's migration shape), as
//! plaintext secrets or their SHA-256. Every row is read and checked before
//! anything is written; what a row says wrong is told by its line (CSV) or
//! entry (JSON), and never quotes a secret.
//!
//! An imported key keeps its own format: it carries no keyhost checksum,
//! so the check finds it by its hash alone (`key_format::imported_shape`),
//! and `keyhost scan`, which finds keys by their shape, cannot.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde_json::Value;

use crate::key_format;
use crate::registry::KeyHash;
use crate::time::{self, Timestamp};

/// The forms an import file comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header line, then a key a line: AWS API Gateway's columns (`Name`,
    /// `Key`, `Description`, `Enabled`, `usageplanIds`), and keyhost's
    /// `hash`, `expires` and `scopes`.
    Csv,
    /// An array of keys (or `{"keys": [...]}`) in Unkey's migration shape:
    /// `name`, `plaintext` or `hash` (`{value, variant}`), `expires` (Unix
    /// milliseconds), `enabled`, `permissions`.
    Json,
}

impl Format {
    /// The format a file's name says, if it says one.
    pub fn of_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Where a row is in its file: `line 3` or `entry 2`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Place(String);

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key read from the file, checked as far as the file alone allows.
pub struct Row {
    /// Where it is.
    pub at: Place,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The SHA-256 of its secret.
    pub hash: KeyHash,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// Its own scopes (none: all of its identity's).
    pub scopes: Vec<String>,
    /// Whether it authenticates; a disabled key is imported disabled.
    pub enabled: bool,
    /// Whether the file held its secret itself, rather than its hash.
    pub plaintext: bool,
}

/// A row that cannot be imported, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Bad {
    /// Where it is.
    pub at: Place,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// The file could not be read as `format` at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(String);

/// The rows of `text`, and those that cannot be imported. Two rows with one
/// secret are both bad: which one was meant cannot be told.
pub fn read(
    text: &str,
    format: Format,
    now: Timestamp,
) -> Result<(Vec<Row>, Vec<Bad>), Unreadable> {
    let read = match format {
        Format::Csv => read_csv(text, now)?,
        Format::Json => read_json(text, now)?,
    };
    let mut places: BTreeMap<KeyHash, Vec<Place>> = BTreeMap::new();
    for row in read.iter().flatten() {
        places.entry(row.hash).or_default().push(row.at.clone());
    }
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for result in read {
        match result {
            Ok(row) if places[&row.hash].len() > 1 => {
                let others: Vec<String> = places[&row.hash]
                    .iter()
                    .filter(|at| **at != row.at)
                    .map(Place::to_string)
                    .collect();
                let reason = format!("its secret is the same as {}'s", others.join(" and "));
                bad.push(Bad { at: row.at, reason });
            }
            Ok(row) => rows.push(row),
            Err(refused) => bad.push(refused),
        }
    }
    Ok((rows, bad))
}

/// The fields of one row, by keyhost's name for them.
#[derive(Default)]
struct Fields {
    name: Option<String>,
    description: Option<String>,
    plaintext: Option<String>,
    hash: Option<KeyHash>,
    expires_at: Option<Timestamp>,
    scopes: Vec<String>,
    enabled: Option<bool>,
}

impl Fields {
    fn into_row(self, at: Place) -> Result<Row, Bad> {
        let bad = |reason: &str| Bad {
            at: at.clone(),
            reason: reason.to_string(),
        };
        let name = self.name.filter(|name| !name.trim().is_empty());
        let name = name.ok_or_else(|| bad("it has no name"))?;
        let (hash, plaintext) = match (self.plaintext, self.hash) {
            (Some(_), Some(_)) => return Err(bad("it gives both a secret and a hash: give one")),
            (Some(secret), None) => {
                key_format::imported_shape(&secret).map_err(|why| bad(&why))?;
                if crate::token::looks_like_token(&secret) {
                    return Err(bad(
                        "its secret is shaped like an access token (a JWS), which keyhost reads as a token: it could never be checked as a key",
                    ));
                }
                (KeyHash::of(&secret), true)
            }
            (None, Some(hash)) => (hash, false),
            (None, None) => return Err(bad("it gives neither a secret nor a hash")),
        };
        Ok(Row {
            at,
            name,
            description: self.description.unwrap_or_default(),
            hash,
            expires_at: self.expires_at,
            scopes: self.scopes,
            enabled: self.enabled.unwrap_or(true),
            plaintext,
        })
    }
}

/// The CSV columns keyhost reads, by their lowercased header.
const CSV_COLUMNS: &str = "name, key, hash, description, enabled, expires, scopes";

fn read_csv(text: &str, now: Timestamp) -> Result<Vec<Result<Row, Bad>>, Unreadable> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| {
            Unreadable(format!(
                "line 1 (the header) cannot be read: {}",
                csv_error(&e)
            ))
        })?
        .iter()
        .map(|header| header.to_ascii_lowercase())
        .collect();
    for (at, header) in headers.iter().enumerate() {
        let known = CSV_COLUMNS.split(", ").any(|column| column == header);
        if !known && header != "usageplanids" {
            // Not quoted: a file without a header line has a key there.
            return Err(Unreadable(format!(
                "line 1, column {}, names a column keyhost does not import (line 1 is the header); the columns are {CSV_COLUMNS} (and AWS's usageplanIds, which is ignored: rate limits are set with keyhost update --rate-limit)",
                at + 1
            )));
        }
    }
    if !headers.iter().any(|header| header == "name") {
        return Err(Unreadable(format!(
            "line 1 has no name column; the columns are {CSV_COLUMNS}"
        )));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let at = e
                    .position()
                    .map_or_else(|| "a line".to_string(), |p| format!("line {}", p.line()));
                rows.push(Err(Bad {
                    at: Place(at),
                    reason: format!("it cannot be read: {}", csv_error(&e)),
                }));
                continue;
            }
        };
        let at = Place(format!(
            "line {}",
            record.position().map_or(0, |p| p.line())
        ));
        rows.push(
            csv_row(&headers, &record, now)
                .and_then(|fields| fields.into_row(at.clone()).map_err(RowError::from))
                .map_err(|reason| match reason {
                    RowError::Bad(bad) => bad,
                    RowError::Field(reason) => Bad { at, reason },
                }),
        );
    }
    Ok(rows)
}

/// What a CSV error says, without the field's content: it may be a secret.
fn csv_error(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("it has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "it is not UTF-8".to_string(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "it is not CSV".to_string(),
    }
}

enum RowError {
    Bad(Bad),
    Field(String),
}

impl From<Bad> for RowError {
    fn from(bad: Bad) -> RowError {
        RowError::Bad(bad)
    }
}

fn csv_row(
    headers: &[String],
    record: &csv::StringRecord,
    now: Timestamp,
) -> Result<Fields, RowError> {
    let mut fields = Fields::default();
    for (header, value) in headers.iter().zip(record.iter()) {
        if value.is_empty() {
            continue;
        }
        let field = |what: &str, why: String| RowError::Field(format!("its {what}: {why}"));
        match header.as_str() {
            "name" => fields.name = Some(value.to_string()),
            "description" => fields.description = Some(value.to_string()),
            "key" => fields.plaintext = Some(value.to_string()),
            "hash" => fields.hash = Some(hash_text(value).map_err(|why| field("hash", why))?),
            "enabled" => fields.enabled = Some(flag(value).map_err(|why| field("enabled", why))?),
            "expires" => {
                fields.expires_at = Some(expiry(value, now).map_err(|why| field("expiry", why))?)
            }
            "scopes" => {
                fields.scopes = value
                    .split([' ', ';'])
                    .filter(|scope| !scope.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    Ok(fields)
}

/// Unkey's fields keyhost reads, and those it passes over (they describe
/// where the key came from, not what it may do).
const JSON_FIELDS: &str = "name, plaintext, hash, description, enabled, expires, permissions";
const JSON_IGNORED: [&str; 6] = ["apiId", "prefix", "start", "ownerId", "externalId", "meta"];

fn read_json(text: &str, now: Timestamp) -> Result<Vec<Result<Row, Bad>>, Unreadable> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Unreadable(format!(
            "the file is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let entries = match value {
        Value::Array(entries) => entries,
        Value::Object(mut object) => match object.remove("keys") {
            Some(Value::Array(entries)) if object.is_empty() => entries,
            _ => {
                return Err(Unreadable(
                    "the file is neither an array of keys nor {\"keys\": [...]}".into(),
                ));
            }
        },
        _ => {
            return Err(Unreadable(
                "the file is neither an array of keys nor {\"keys\": [...]}".into(),
            ));
        }
    };
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let at = Place(format!("entry {}", index + 1));
            json_row(entry, now)
                .map_err(|reason| Bad {
                    at: at.clone(),
                    reason,
                })
                .and_then(|fields| fields.into_row(at))
        })
        .collect())
}

fn json_row(entry: Value, now: Timestamp) -> Result<Fields, String> {
    let Value::Object(object) = entry else {
        return Err("it is not an object".into());
    };
    let text = |what: &str, value: &Value| -> Result<String, String> {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("its {what} is not a string"))
    };
    let mut fields = Fields::default();
    for (name, value) in &object {
        match name.as_str() {
            "name" => fields.name = Some(text("name", value)?),
            "description" => fields.description = Some(text("description", value)?),
            "plaintext" => fields.plaintext = Some(text("plaintext", value)?),
            "hash" => {
                fields.hash = Some(json_hash(value).map_err(|why| format!("its hash: {why}"))?)
            }
            "enabled" => {
                fields.enabled = Some(value.as_bool().ok_or("its enabled is not true or false")?)
            }
            "expires" => {
                fields.expires_at = match value {
                    Value::Null => None,
                    // Unkey gives Unix milliseconds.
                    Value::Number(ms) => Some(
                        ms.as_i64()
                            .map(|ms| Timestamp(ms.div_euclid(1000)))
                            .filter(|at| *at <= Timestamp::LATEST)
                            .ok_or("its expiry is not a time in Unix milliseconds")?,
                    ),
                    Value::String(when) => {
                        Some(expiry(when, now).map_err(|why| format!("its expiry: {why}"))?)
                    }
                    _ => return Err("its expiry is not a time".into()),
                };
                if fields.expires_at.is_some_and(|at| at <= now) {
                    return Err("it has already expired".into());
                }
            }
            "permissions" => {
                fields.scopes = value
                    .as_array()
                    .and_then(|list| {
                        list.iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .ok_or("its permissions are not a list of strings")?
            }
            ignored if JSON_IGNORED.contains(&ignored) => {}
            other => {
                return Err(format!(
                    "it has a field {other:?} that keyhost does not import; the fields are {JSON_FIELDS} (and {}, which are ignored)",
                    JSON_IGNORED.join(", ")
                ));
            }
        }
    }
    Ok(fields)
}

/// A SHA-256 as 64 hex digits, or base64 of its 32 bytes.
fn hash_text(text: &str) -> Result<KeyHash, String> {
    let text = text.trim();
    let mut digest = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut digest).is_ok() {
        return Ok(KeyHash(digest));
    }
    base64_hash(text).ok_or_else(|| "not a SHA-256, as 64 hex digits or base64".into())
}

fn base64_hash(text: &str) -> Option<KeyHash> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(KeyHash)
}

/// Unkey's `{"value": ..., "variant": "sha256_base64"}`, or a plain string.
fn json_hash(value: &Value) -> Result<KeyHash, String> {
    match value {
        Value::String(text) => hash_text(text),
        Value::Object(hash) => {
            let text = hash
                .get("value")
                .and_then(Value::as_str)
                .ok_or("it has no value")?;
            match hash.get("variant").and_then(Value::as_str) {
                Some("sha256_base64") => {
                    base64_hash(text).ok_or_else(|| "its value is not base64 of a SHA-256".into())
                }
                Some("sha256_hex") | None => hash_text(text),
                Some(_) => Err("its variant is not sha256_base64 or sha256_hex".into()),
            }
        }
        _ => Err("not a string or {value, variant}".into()),
    }
}

// The reasons below never quote the cell: a column out of place may hold
// a secret.

fn flag(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err("it is not true or false".into()),
    }
}

fn expiry(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let at = time::parse_when(text, now).map_err(|_| {
        "it is neither a duration (30s, 24h, 90d) nor an RFC 3339 time before 10000".to_string()
    })?;
    if at <= now {
        return Err("it has already passed".into());
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000);
    const SECRET: &str = "AKIA-example-secret-0001";

    #[test]
    fn aws_columns_are_read_and_usage_plans_passed_over() {
        let text = format!(
            "Name,Key,description,Enabled,usageplanIds\nfirst,{SECRET},the first,TRUE,c7y23b\nsecond,{SECRET}x,,false,\n"
        );
        let (rows, bad) = read(&text, Format::Csv, NOW).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].hash, KeyHash::of(SECRET));
        assert_eq!(
            (rows[0].at.to_string(), rows[0].enabled),
            ("line 2".into(), true)
        );
        assert_eq!(rows[0].description, "the first");
        assert!(!rows[1].enabled && rows[1].plaintext);
    }

    #[test]
    fn unkeys_shape_is_read_with_its_hash_and_milliseconds() {
        let hash = base64::engine::general_purpose::STANDARD.encode(KeyHash::of(SECRET).0);
        let text = format!(
            r#"{{"keys": [{{"name": "a", "hash": {{"value": "{hash}", "variant": "sha256_base64"}}, "expires": 1900000000000, "permissions": ["read"], "apiId": "api_1"}}]}}"#
        );
        let (rows, bad) = read(&text, Format::Json, NOW).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].hash, KeyHash::of(SECRET));
        assert_eq!(rows[0].expires_at, Some(Timestamp(1_900_000_000)));
        assert_eq!(rows[0].scopes, ["read"]);
        assert!(!rows[0].plaintext);
    }

    #[test]
    fn bad_rows_are_named_by_place_and_never_quote_a_secret() {
        let hex = hex::encode(KeyHash::of(SECRET).0);
        let text = format!(
            "name,key,hash,expires\n\
             dup,{SECRET},,\n\
             short,tooshort,,\n\
             again,,{hex},\n\
             nothing,,,\n\
             old,{SECRET}-other,,2000-01-01T00:00:00Z\n\
             space,{SECRET} x,,\n\
             ,{SECRET}-unnamed,,\n"
        );
        let (rows, bad) = read(&text, Format::Csv, NOW).unwrap();
        assert!(rows.is_empty());
        let said: Vec<String> = bad.iter().map(Bad::to_string).collect();
        assert!(
            said[0].starts_with("line 2: its secret is the same as line 4"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("line 3: a secret is 16 to 256"),
            "{said:?}"
        );
        assert!(
            said[2].starts_with("line 4: its secret is the same as line 2"),
            "{said:?}"
        );
        assert!(said[3].contains("neither a secret nor a hash"), "{said:?}");
        assert!(said[4].contains("already passed"), "{said:?}");
        assert!(said[5].contains("not printable ASCII"), "{said:?}");
        assert!(said[6].contains("no name"), "{said:?}");
        for line in &said {
            assert!(
                !line.contains("AKIA") && !line.contains("tooshort"),
                "{line}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_the_format_is_refused_whole() {
        let unknown = read("name,key,owner\n", Format::Csv, NOW)
            .err()
            .expect("refused");
        assert!(unknown.to_string().contains("column 3"), "{unknown}");
        let headless = format!("laptop,{SECRET}\n");
        let unknown = read(&headless, Format::Csv, NOW).err().expect("refused");
        assert!(!unknown.to_string().contains("AKIA"), "{unknown}");
        assert!(read("{", Format::Json, NOW).is_err());
        assert!(read(r#"{"other": []}"#, Format::Json, NOW).is_err());
        let (_, bad) = read(
            r#"[{"name": "x", "plaintext": "a-long-enough-secret", "ratelimit": {}}]"#,
            Format::Json,
            NOW,
        )
        .unwrap();
        assert!(
            bad[0]
                .to_string()
                .starts_with("entry 1: it has a field \"ratelimit\""),
            "{bad:?}"
        );
    }
}
