//! Reading a large registry a batch of key tables at a time.
//!
//! toml's parser holds every token and event of a document until it has
//! read all of it: most of a large registry's read went to faulting in that
//! memory (a million keys, a 407 MB file, took 8.5 GiB). A registry in the
//! shape keyhost writes (settings and identities, then only `[[key]]`
//! tables, each with its `[[key.retired]]` secrets) is read as its head
//! and then batches of key tables, each a TOML document of its own, on
//! every core; a batch's tokens are freed as soon as it is read.
//!
//! The split is taken only where it cannot change what the document says:
//! after the first `[[key]]`, every line that starts with `[` must be one
//! of those two headers, no multi-line string may appear, and the head may
//! not hold `key` in any form. Anything else, and any batch that fails, is read
//! whole as before, so errors name the line as toml would.

use super::{KeyRecord, Registry};

/// Key tables per batch: small enough that a batch's tokens stay in the
/// allocator's reach, large enough that starting a parse costs nothing.
const KEYS_PER_BATCH: usize = 512;

const KEY_HEADER: &str = "[[key]]";
const RETIRED_HEADER: &str = "[[key.retired]]";

/// The registry in `text`, read in batches; `None` when `text` is not in
/// the shape that allows it, or a part of it fails (read it whole then).
pub(super) fn parse(text: &str) -> Option<Registry> {
    let starts = key_table_starts(text)?;
    let (head, tables) = text.split_at(*starts.first()?);
    // The head may not hold `key` in any spelling (under a header written
    // otherwise, inline, or with escapes in a quoted name): the parser says.
    let head_names: toml::Table = toml::from_str(head).ok()?;
    if head_names.contains_key("key") {
        return None;
    }
    let mut registry: Registry = toml::from_str(head).ok()?;
    let batches: Vec<&str> = starts
        .chunks(KEYS_PER_BATCH)
        .enumerate()
        .map(|(i, batch)| {
            let from = batch[0] - head.len();
            let to = starts
                .get((i + 1) * KEYS_PER_BATCH)
                .map_or(tables.len(), |next| next - head.len());
            &tables[from..to]
        })
        .collect();
    registry.keys = parse_batches(&batches)?;
    Some(registry)
}

/// Where each `[[key]]` line starts, if the document allows a split.
fn key_table_starts(text: &str) -> Option<Vec<usize>> {
    let mut starts = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed == KEY_HEADER {
            starts.push(at);
        } else if !starts.is_empty()
            && ((trimmed.starts_with('[') && trimmed != RETIRED_HEADER)
                || line.contains("\"\"\"")
                || line.contains("'''"))
        {
            return None;
        }
        at += line.len();
    }
    Some(starts)
}

/// The key tables of every batch, in order, read on every core.
fn parse_batches(batches: &[&str]) -> Option<Vec<KeyRecord>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tables {
        key: Vec<KeyRecord>,
    }
    let read = |batches: &[&str]| -> Option<Vec<Vec<KeyRecord>>> {
        batches
            .iter()
            .map(|batch| toml::from_str::<Tables>(batch).ok().map(|t| t.key))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(batches.len().max(1));
    let per_thread = batches.len().div_ceil(threads).max(1);
    let parts: Vec<Option<Vec<Vec<KeyRecord>>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = batches
            .chunks(per_thread)
            .map(|share| scope.spawn(move || read(share)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().ok().flatten())
            .collect()
    });
    let mut keys = Vec::new();
    for part in parts {
        keys.extend(part?.into_iter().flatten());
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_table(i: usize, retired: bool) -> String {
        let mut table = format!(
            "[[key]]\nid = \"kid_{i:020x}\"\nname = \"k{i}\"\nkind = \"user\"\nowner = \"user:alice\"\n\
             scopes = [\n  \"read\",\n]\nallowed_ips = []\nhash = \"{i:064x}\"\n\
             created_at = 2026-01-01T00:00:00Z\nupdated_at = 2026-01-01T00:00:00Z\n"
        );
        if retired {
            table.push_str(&format!(
                "\n[[key.retired]]\nhash = \"{:064x}\"\nvalid_until = 2026-02-01T00:00:00Z\n",
                i + 1_000_000
            ));
        }
        table
    }

    fn registry_text(keys: usize) -> String {
        let mut text = String::from(
            "version = 1\nrevision = 7\nprefix = \"kh\"\n\n[policy.config]\nmode = \"strict\"\n\n\
             [[identity]]\niam_id = \"user:alice\"\nscopes = [\"read\"]\ncreated_at = 2026-01-01T00:00:00Z\n\n",
        );
        for i in 0..keys {
            text.push_str(&key_table(i, i % 3 == 0));
            text.push('\n');
        }
        text
    }

    /// What both readings give, as the registry would be written again.
    fn written(registry: &Registry) -> String {
        toml::to_string(registry).unwrap()
    }

    #[test]
    fn a_split_reading_gives_what_a_whole_one_does() {
        let text = registry_text(2 * KEYS_PER_BATCH + 7);
        let whole: Registry = toml::from_str(&text).unwrap();
        let split = parse(&text).expect("keyhost's own shape splits");
        assert_eq!(split.keys.len(), 2 * KEYS_PER_BATCH + 7);
        assert_eq!(split.keys[3].retired.len(), 1);
        assert_eq!(written(&split), written(&whole));
    }

    #[test]
    fn a_document_whose_split_could_mean_something_else_is_read_whole() {
        let text = registry_text(3);
        let at = text.find("[[key]]").unwrap();
        let cases = [
            // A header line inside a multi-line string.
            text.replacen("name = \"k1\"", "name = \"\"\"\n[[key]]\n\"\"\"", 1),
            text.replacen("name = \"k1\"", "name = '''x'''", 1),
            // Another table after the first key.
            format!("{text}\n[[identity]]\niam_id = \"user:bob\"\n"),
            format!("{text}\n[policy.config]\nx = \"y\"\n"),
            // A nested list, whose line starts with `[`.
            text.replacen("  \"read\",\n", "  [\"read\"],\n", 1),
            // Keys set inline in the head as well.
            format!("key = []\n{text}"),
            format!("{}key.x = 1\n{}", &text[..at], &text[at..]),
            format!("\"\\u006bey\" = []\n{text}"),
            format!("\"k\\u0065y\" = [\n]\n{text}"),
            // A header with a comment or spaces.
            text.replacen("[[key]]", "[[key]] # first", 1),
            text.replacen("[[key]]", "[[ key ]]", 1),
        ];
        for case in &cases {
            assert!(parse(case).is_none(), "split:\n{case}");
        }
    }

    #[test]
    fn a_failing_batch_leaves_the_whole_reading_to_name_the_line() {
        let text = registry_text(5).replacen("kind = \"user\"", "kind = \"wizard\"", 4);
        assert!(parse(&text).is_none());
        let error = Registry::parse(text.as_bytes()).unwrap_err().to_string();
        let line = text
            .lines()
            .position(|line| line.contains("wizard"))
            .unwrap()
            + 1;
        assert!(error.contains(&line.to_string()), "{error}");
    }

    #[test]
    fn no_key_tables_is_no_split() {
        assert!(parse("version = 1\nprefix = \"kh\"\n").is_none());
    }
}
