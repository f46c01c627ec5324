//! The text fields people and programs write into the registry: names,
//! descriptions, scopes and services. Each is checked on the way in, so that
//! whatever keyhost writes it can read back (a registry line is at most
//! `registry::MAX_LINE_BYTES`), prints safely on a terminal, and never holds
//! a secret.

use crate::key_format;

/// The most characters of a key's name.
pub const MAX_NAME_CHARS: usize = 256;
/// The most characters of a key's description.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The most characters of one scope or service name.
pub const MAX_WORD_CHARS: usize = 128;
/// The most entries of a scope list or an IP allow-list. With the limits
/// above, the longest list stays far below a registry line's limit.
pub const MAX_LIST_ENTRIES: usize = 64;

/// Why a field value was refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct BadField {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> BadField {
    BadField {
        field,
        problem: problem.into(),
    }
}

/// Checks a free-text value: its length in characters, unsafe characters,
/// and anything shaped like a key (a secret pasted into the wrong field would
/// otherwise be stored and shown).
fn text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String, BadField> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(if min == 0 {
            bad(field, format!("at most {max} characters, not {chars}"))
        } else {
            bad(field, format!("{min} to {max} characters, not {chars}"))
        });
    }
    safe_chars(field, value)?;
    if key_format::redact(value) != value {
        return Err(bad(
            field,
            "it holds something shaped like an API key; a secret never goes into the registry",
        ));
    }
    Ok(value.to_string())
}

/// Refuses a value with a control character, a byte-order mark or a
/// bidirectional control, naming the first: printed on a terminal it could
/// rewrite what is shown.
pub fn safe_chars(field: &'static str, value: &str) -> Result<(), BadField> {
    match keyhost_core::text::unsafe_char_problem(value) {
        Some(problem) => Err(bad(field, problem)),
        None => Ok(()),
    }
}

/// A key's name: 1 to 256 characters.
pub fn name(value: &str) -> Result<String, BadField> {
    text("name", value, 1, MAX_NAME_CHARS)
}

/// A key's description: up to 1024 characters.
pub fn description(value: &str) -> Result<String, BadField> {
    text("description", value, 0, MAX_DESCRIPTION_CHARS)
}

/// A service name: 1 to 128 characters.
pub fn service(value: &str) -> Result<String, BadField> {
    text("service", value, 1, MAX_WORD_CHARS)
}

/// A scope list: each scope 1 to 128 characters, duplicates dropped, at most
/// 64 of them.
pub fn scopes(values: Vec<String>) -> Result<Vec<String>, BadField> {
    bounded_list("scopes", values.len())?;
    let mut cleaned: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let scope = text("scope", &value, 1, MAX_WORD_CHARS)?;
        // An access token carries its scopes space-separated, as OAuth
        // does: a scope with a space in it would come back as two.
        if let Some(at) = scope.chars().position(char::is_whitespace) {
            return Err(bad(
                "scope",
                format!(
                    "{scope:?}: character {} is a space; a scope is one word (tokens list scopes separated by spaces)",
                    at + 1
                ),
            ));
        }
        if !cleaned.contains(&scope) {
            cleaned.push(scope);
        }
    }
    Ok(cleaned)
}

/// Refuses a list longer than `MAX_LIST_ENTRIES`.
pub fn bounded_list(field: &'static str, len: usize) -> Result<(), BadField> {
    if len > MAX_LIST_ENTRIES {
        return Err(bad(
            field,
            format!("at most {MAX_LIST_ENTRIES} entries, not {len}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_refused_with_their_position() {
        let error = name("ok\u{7f}").unwrap_err();
        assert!(error.to_string().contains("character 3"), "{error}");
        assert!(description("a\u{202E}b").is_err());
        assert!(description("line\nbreak").is_err());
        assert!(name("\u{9b}31m").is_err());
        assert_eq!(name("  café ").unwrap(), "café");
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(name("   ").is_err());
        assert_eq!(description("").unwrap(), "");
        assert!(description(&"x".repeat(MAX_DESCRIPTION_CHARS + 1)).is_err());
    }

    #[test]
    fn a_scope_is_one_word() {
        for spaced in ["a b", "read\u{a0}all", "x\u{2003}y"] {
            let error = scopes(vec![spaced.into()]).unwrap_err();
            assert!(error.to_string().contains("one word"), "{error}");
        }
        assert_eq!(scopes(vec![" keys:read ".into()]).unwrap(), ["keys:read"]);
    }

    #[test]
    fn a_secret_is_never_a_field() {
        let secret = key_format::generate("kh", crate::iam::KeyKind::User);
        let error = name(&format!("my key {}", secret.expose())).unwrap_err();
        assert!(!error.to_string().contains(secret.expose()));
        assert!(description(secret.expose()).is_err());
    }

    #[test]
    fn scope_lists_are_bounded_and_deduplicated() {
        let many = (0..=MAX_LIST_ENTRIES).map(|i| format!("s{i}")).collect();
        assert!(scopes(many).is_err());
        assert_eq!(
            scopes(vec!["a".into(), " a ".into(), "b".into()]).unwrap(),
            ["a", "b"]
        );
    }
}
