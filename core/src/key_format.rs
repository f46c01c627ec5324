//! The secret's format: `PREFIX_TAG_RANDOMCHECK`.
//!
//! - `PREFIX` is the registry's prefix (lowercase letters and digits);
//! - `TAG` names the key's kind (`usr`, `sid`, `cls`, `svc`);
//! - `RANDOM` is 30 base62 characters from the OS RNG (about 178 bits);
//! - `CHECK` is the CRC32 of everything before it, as 6 base62 characters.
//!
//! As in GitHub's token format, the checksum rejects a typo or a random
//! string before any lookup, and lets `scan` find keys offline.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::iam::KeyKind;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of randomness in a secret.
pub const RANDOM_LEN: usize = 30;
/// Characters of checksum at the end of a secret.
pub const CHECK_LEN: usize = 6;
/// The longest prefix a registry may choose.
pub const MAX_PREFIX_LEN: usize = 16;

/// A freshly made secret. It is shown once and never stored; its memory is
/// wiped when dropped.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret itself: to be shown once, never logged or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a presented string is not a key of this registry. The reasons never
/// quote the string itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the key does not start with this registry's prefix")]
    /// It does not start with the registry's prefix.
    WrongPrefix,
    #[error("the key's kind tag is not one of usr, sid, cls, svc")]
    /// The kind tag is not one keyhost writes.
    UnknownTag,
    #[error("the key has the wrong length or characters")]
    /// The random part has the wrong length or alphabet.
    BadBody,
    #[error("the key's checksum does not match (a typo, or not a key)")]
    /// The checksum does not match: a typo, or not a keyhost key.
    BadChecksum,
}

/// Whether `prefix` may be a registry's prefix.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} lowercase letters or digits, starting with a letter"
        ))
    }
}

/// The tag of a replica credential (`PREFIX_rep_...`): shaped like a key, so
/// that error messages redact it as one, but no key check accepts it.
pub const REPLICA_TAG: &str = "rep";

/// Makes a new secret for a key of `kind` in a registry with `prefix`.
pub fn generate(prefix: &str, kind: KeyKind) -> Secret {
    generate_tagged(prefix, kind.tag())
}

/// Makes a new replica credential for a registry with `prefix`.
pub fn generate_replica(prefix: &str) -> Secret {
    generate_tagged(prefix, REPLICA_TAG)
}

fn generate_tagged(prefix: &str, tag: &str) -> Secret {
    let mut text = String::with_capacity(prefix.len() + 5 + RANDOM_LEN + CHECK_LEN);
    text.push_str(prefix);
    text.push('_');
    text.push_str(tag);
    text.push('_');
    let mut filled = 0;
    let mut pool = Zeroizing::new([0u8; 64]);
    while filled < RANDOM_LEN {
        getrandom::fill(pool.as_mut())
            .expect("the operating system's random number generator failed");
        // Rejection sampling keeps every character equally likely: 248 is
        // the largest multiple of 62 that fits in a byte.
        for &byte in pool.iter().filter(|&&b| b < 248) {
            if filled == RANDOM_LEN {
                break;
            }
            text.push(BASE62[usize::from(byte % 62)] as char);
            filled += 1;
        }
    }
    let check = checksum(&text);
    text.push_str(&check);
    Secret(Zeroizing::new(text))
}

/// Checks a presented key's shape and checksum, and returns its kind.
pub fn parse(prefix: &str, presented: &str) -> Result<KeyKind, Malformed> {
    let tag = parse_tagged(prefix, presented)?;
    KeyKind::from_tag(tag).ok_or(Malformed::UnknownTag)
}

/// Whether `presented` is shaped like a replica credential of a registry
/// with `prefix`, checksum included.
pub fn is_replica_credential(prefix: &str, presented: &str) -> bool {
    parse_tagged(prefix, presented).is_ok_and(|tag| tag == REPLICA_TAG)
}

/// Checks a presented secret's shape and checksum, and returns its tag:
/// a key kind's or the replica credentials'.
fn parse_tagged<'p>(prefix: &str, presented: &'p str) -> Result<&'p str, Malformed> {
    let rest = presented
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or(Malformed::WrongPrefix)?;
    let (tag, body) = rest.split_once('_').ok_or(Malformed::UnknownTag)?;
    if KeyKind::from_tag(tag).is_none() && tag != REPLICA_TAG {
        return Err(Malformed::UnknownTag);
    }
    if body.len() != RANDOM_LEN + CHECK_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Malformed::BadBody);
    }
    let (signed, check) = presented.split_at(presented.len() - CHECK_LEN);
    if checksum(signed) != check {
        return Err(Malformed::BadChecksum);
    }
    Ok(tag)
}

/// CRC32 of `text`, as 6 base62 digits (62^6 > 2^32).
fn checksum(text: &str) -> String {
    let mut value = u64::from(crc32fast::hash(text.as_bytes()));
    let mut digits = [b'0'; CHECK_LEN];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("base62 digits are ASCII")
}

/// A regex matching strings shaped like keys (or replica credentials)
/// whose prefix matches the regex `prefix`; the checksum still has to be
/// verified.
///
/// No boundary is required on either side: `\b` is Unicode-aware, so a key
/// glued to a letter such as `Ж` would slip through, and two keys glued
/// together would hide the first. The checksum, not the surroundings, tells
/// a key from chance (both cases were found by fuzzing).
pub fn candidate_pattern(prefix: &str) -> String {
    let tags = KeyKind::ALL.map(KeyKind::tag).join("|") + "|" + REPLICA_TAG;
    let body = RANDOM_LEN + CHECK_LEN;
    format!(r"{prefix}_(?:{tags})_[0-9A-Za-z]{{{body}}}")
}

/// `text` with anything shaped like a key of any registry, or like an
/// access token (a JWS whose header starts `{"`), replaced, for messages
/// that echo user input: both are bearer secrets. One written with percent
/// escapes (`kh%5Fusr%5F…`, escaped twice even) is the same secret to any
/// server that reads it: when the decoded text holds one, the decoded text
/// is what is given back, redacted.
pub fn redact(text: &str) -> String {
    // Every key has a `_`, every token `eyJ`, and an escaped one a `%`:
    // text with none of them (most methods, addresses, services and
    // paths in the decision log) is given back without the regexes' scans.
    if !text.contains(['_', '%']) && !text.contains("eyJ") {
        return text.to_string();
    }
    let plain = redact_plain(text);
    let mut decoded = Cow::Borrowed(plain.as_str());
    for _ in 0..3 {
        if !decoded.contains('%') {
            break;
        }
        let next = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy();
        if next == decoded {
            break;
        }
        let next = next.into_owned();
        let redacted = redact_plain(&next);
        if redacted != next {
            return redacted;
        }
        decoded = Cow::Owned(next);
    }
    plain
}

/// `text` with anything shaped like a key or a token, as written, replaced.
fn redact_plain(text: &str) -> String {
    static KEY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(&candidate_pattern("[a-z][a-z0-9]{0,15}")).expect("valid regex")
    });
    static TOKEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+")
            .expect("valid regex")
    });
    let keys = KEY.replace_all(text, "<redacted key>");
    TOKEN.replace_all(&keys, "<redacted token>").into_owned()
}

/// How long a secret made elsewhere and imported may be, in bytes: long
/// enough to be worth guessing at no more than a keyhost key, short enough
/// that junk in a key header is not hashed.
pub const IMPORTED_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Whether `presented` could be a secret made elsewhere and imported
/// (`keyhost import`): [`IMPORTED_LEN`] bytes of printable ASCII without
/// spaces. Such a key carries no keyhost checksum, so the check finds it by
/// its hash alone.
pub fn imported_shape(presented: &str) -> Result<(), String> {
    if !IMPORTED_LEN.contains(&presented.len()) {
        return Err(format!(
            "a secret is {} to {} characters long; this one has {}",
            IMPORTED_LEN.start(),
            IMPORTED_LEN.end(),
            presented.len()
        ));
    }
    match presented.bytes().position(|b| !b.is_ascii_graphic()) {
        Some(at) => Err(format!(
            "character {} of the secret is not printable ASCII (a space, a control character or beyond ASCII)",
            at + 1
        )),
        None => Ok(()),
    }
}

/// The SHA-256 of a presented secret: the only form a registry stores.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_with_percent_escapes_is_redacted() {
        let key = generate("kh", KeyKind::User);
        let key = key.expose();
        let once = key.replace('_', "%5F");
        let twice = key.replace('_', "%255f");
        let every: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
        for sent in [
            format!("/x?api_key={once}"),
            format!("/{twice}/y"),
            every.clone(),
            format!("100%25 {once}"),
        ] {
            let shown = redact(&sent);
            assert!(shown.contains("<redacted key>"), "{sent} -> {shown}");
            assert!(!shown.contains(&key[7..]), "{sent} -> {shown}");
        }
        // Escapes with no secret behind them are kept as sent.
        for kept in ["/a%20b?q=%5F", "100%", "%zz", "%ff%fe"] {
            assert_eq!(redact(kept), kept);
        }
    }

    #[test]
    fn tokens_are_redacted_like_keys() {
        let text = "unknown key id eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln, or kh_usr_x";
        let redacted = redact(text);
        assert!(!redacted.contains("eyJ"), "{redacted}");
        assert!(redacted.contains("<redacted token>"), "{redacted}");
    }

    #[test]
    fn generated_keys_parse() {
        for kind in KeyKind::ALL {
            let secret = generate("kh", kind);
            assert_eq!(parse("kh", secret.expose()), Ok(kind));
            assert_eq!(
                secret.expose().len(),
                "kh_".len() + 4 + RANDOM_LEN + CHECK_LEN
            );
        }
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let secret = generate("kh", KeyKind::User);
        let text = secret.expose();
        for (i, original) in text.char_indices() {
            for replacement in ['0', 'a', 'Z', '_'] {
                if replacement == original {
                    continue;
                }
                let mut changed = text.to_string();
                changed.replace_range(i..i + 1, &replacement.to_string());
                assert!(
                    parse("kh", &changed).is_err(),
                    "change at {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn wrong_prefix_and_garbage_are_malformed() {
        let secret = generate("kh", KeyKind::User);
        assert_eq!(parse("other", secret.expose()), Err(Malformed::WrongPrefix));
        assert_eq!(parse("kh", "kh_usr_short"), Err(Malformed::BadBody));
        assert_eq!(parse("kh", "hello"), Err(Malformed::WrongPrefix));
    }

    #[test]
    fn two_secrets_differ() {
        let a = generate("kh", KeyKind::User);
        let b = generate("kh", KeyKind::User);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn redact_hides_keys_of_any_prefix() {
        let secret = generate("acme", KeyKind::ServiceId);
        let message = format!("unexpected argument '{}' found", secret.expose());
        let redacted = redact(&message);
        assert!(!redacted.contains(secret.expose()));
        assert!(redacted.contains("<redacted key>"));
        assert_eq!(redact("nothing here"), "nothing here");
        // Found by fuzzing: a key glued to a non-ASCII letter.
        let glued = format!("\u{41c}{} {}", secret.expose(), secret.expose());
        assert_eq!(redact(&glued), "\u{41c}<redacted key> <redacted key>");
        let twins = format!("{}k{}", secret.expose(), secret.expose());
        assert_eq!(redact(&twins), "<redacted key><redacted key>");
    }

    #[test]
    fn a_replica_credential_is_redacted_but_is_no_key() {
        let credential = generate_replica("kh");
        assert!(credential.expose().starts_with("kh_rep_"));
        assert_eq!(parse("kh", credential.expose()), Err(Malformed::UnknownTag));
        let said = redact(&format!("no key {} here", credential.expose()));
        assert_eq!(said, "no key <redacted key> here");
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("kh").is_ok());
        assert!(validate_prefix("acme2").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("Kh").is_err());
        assert!(validate_prefix("k_h").is_err());
        assert!(validate_prefix("2kh").is_err());
    }
}
