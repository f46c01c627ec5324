//! The key parser and checksum: any string either parses as a key of the
//! exact shape, or is refused; and redaction never leaves a key behind.
//!
//! Shared by the fuzz target and by the corpus replay in `cargo test`.

use keyhost::key_format::{self, CHECK_LEN, RANDOM_LEN};

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(kind) = key_format::parse("kh", text) {
        assert_eq!(text.len(), "kh_".len() + 4 + RANDOM_LEN + CHECK_LEN);
        assert_eq!(&text[3..6], kind.tag());
        assert!(text.bytes().skip(7).all(|b| b.is_ascii_alphanumeric()));
    }
    let redacted = key_format::redact(text);
    for word in redacted.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
        assert!(
            key_format::parse("kh", word).is_err(),
            "redact left a key behind"
        );
    }
}
