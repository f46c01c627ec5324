//! The one sanitiser for text that can come from a policy: deny messages,
//! allow info pairs, a refused configuration's message, and the reasons
//! keyhost writes about a failed call (which quote wasmtime's backtrace, and
//! so function names the policy chose). Such text reaches terminals, logs
//! and HTTP bodies, so it is cut short and rid of control characters and of
//! the bidirectional controls that make a line read as something else.
//! The host, the gate and the filters all clean it here.

/// Characters that would let a text rewrite a terminal or reorder what is
/// shown around it: control characters (C0, DEL, C1) and the bidirectional
/// embeddings, overrides, isolates and marks. Text from a policy has them
/// replaced (below); fields refuse them and more ([`first_unsafe_char`]).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// What a field (of the registry or of a request) may not hold: the
/// [`is_unsafe_char`] characters and the byte-order mark (U+FEFF), which
/// some decoders drop (componentize-js turns `\u{FEFF}billing` into
/// `billing`, so a policy would judge a service the caller did not name).
fn is_unsafe_field_char(c: char) -> bool {
    is_unsafe_char(c) || c == '\u{FEFF}'
}

/// What a request's field may not hold either: the replacement character
/// (U+FFFD), which stands for bytes that did not decode as text (a header
/// that is not UTF-8), so that the policy never judges a field the caller
/// did not send. (A registry's fields may hold it: text written before
/// keeps loading.)
fn is_unsafe_request_char(c: char) -> bool {
    is_unsafe_field_char(c) || c == '\u{FFFD}'
}

/// The first character of `value` that a field may not hold, with its
/// position counted in characters from 1.
pub fn first_unsafe_char(value: &str) -> Option<(usize, char)> {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| is_unsafe_field_char(*c))
        .map(|(at, c)| (at + 1, c))
}

/// Why `value` cannot be used, when it holds an unsafe character: which
/// character, where, and what is refused.
pub fn unsafe_char_problem(value: &str) -> Option<String> {
    describe(first_unsafe_char(value))
}

/// [`unsafe_char_problem`] for a request's field, which may not hold
/// U+FFFD either.
pub fn unsafe_request_char_problem(value: &str) -> Option<String> {
    let found = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_unsafe_request_char(*c))
        .map(|(at, c)| (at + 1, c));
    describe(found)
}

fn describe(found: Option<(usize, char)>) -> Option<String> {
    found.map(|(at, c)| {
        format!(
            "character {at} is {c:?} (U+{:04X}); control characters, byte-order marks and bidirectional controls are not allowed",
            c as u32
        )
    })
}

/// The longest text kept, in bytes; longer text is cut and ends in `...`.
pub const MAX_POLICY_TEXT: usize = 1024;

/// The most info pairs an allow keeps.
pub const MAX_INFO_PAIRS: usize = 32;

/// `text`, cut to [`MAX_POLICY_TEXT`] bytes, with every control character
/// and bidirectional control replaced by a space.
pub fn policy_text(text: &str) -> String {
    let mut end = text.len().min(MAX_POLICY_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end]
        .chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .collect();
    if end < text.len() {
        out.push_str("...");
    }
    out
}

/// Info pairs, at most [`MAX_INFO_PAIRS`] of them, each side cleaned.
pub fn policy_pairs(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .take(MAX_INFO_PAIRS)
        .map(|(name, value)| (policy_text(&name), policy_text(&value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bidi_controls_become_spaces() {
        let hostile = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\nfake\u{202E}txt.exe\u{2066}\u{9b}";
        let clean = policy_text(hostile);
        assert_eq!(clean, "ok ]0;pwned  [2J fake txt.exe  ");
        assert!(!clean.chars().any(is_unsafe_char));
    }

    #[test]
    fn a_byte_order_mark_is_unsafe_wherever_it_stands() {
        assert_eq!(first_unsafe_char("\u{FEFF}billing"), Some((1, '\u{FEFF}')));
        assert_eq!(first_unsafe_char("bil\u{FEFF}ling"), Some((4, '\u{FEFF}')));
        assert_eq!(first_unsafe_char("bill\u{FFFD}ng"), None);
        assert!(
            unsafe_request_char_problem("bill\u{FFFD}ng")
                .unwrap()
                .starts_with("character 5")
        );
        assert_eq!(first_unsafe_char("billing"), None);
        let problem = unsafe_char_problem("a\u{202E}b").expect("a bidi override is unsafe");
        assert!(problem.starts_with("character 2 is"), "{problem}");
        assert!(problem.contains("U+202E"), "{problem}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_POLICY_TEXT);
        let clean = policy_text(&long);
        assert!(clean.ends_with("..."));
        assert!(clean.len() <= MAX_POLICY_TEXT + 3);
        assert_eq!(policy_text("short"), "short");
    }

    #[test]
    fn info_pairs_are_counted_and_cleaned() {
        let pairs = (0..100)
            .map(|i| (format!("n{i}\u{1b}"), "v\u{202E}".to_string()))
            .collect();
        let kept = policy_pairs(pairs);
        assert_eq!(kept.len(), MAX_INFO_PAIRS);
        assert_eq!(kept[0], ("n0 ".to_string(), "v ".to_string()));
    }
}
