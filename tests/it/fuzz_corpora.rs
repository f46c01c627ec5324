//! The fuzz targets' committed corpora, replayed on stable as ordinary
//! tests: every input a fuzzer kept, the regression inputs among them, runs
//! through the same body as `cargo fuzz run` (fuzz/bodies). Long fuzzing is
//! `fuzz/run.sh`.

use std::path::Path;

#[path = "../../fuzz/bodies/auth_headers.rs"]
mod auth_headers;
#[path = "../../fuzz/bodies/key_format.rs"]
mod key_format;
#[path = "../../fuzz/bodies/registry_load.rs"]
mod registry_load;

/// Runs `body` on every file of the target's corpus; fails naming the
/// inputs that panicked.
fn replay(target: &str, body: fn(&[u8])) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("read {}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no input", folder.display());
    let failed: Vec<String> = inputs
        .iter()
        .filter(|input| {
            let data = std::fs::read(input).unwrap();
            std::panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|input| input.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed: {failed:?}",
        failed.len(),
        inputs.len()
    );
}

#[test]
fn key_format_corpus() {
    replay("key_format", key_format::run);
}

#[test]
fn registry_load_corpus() {
    replay("registry_load", registry_load::run);
}

#[test]
fn auth_headers_corpus() {
    replay("auth_headers", auth_headers::run);
}
