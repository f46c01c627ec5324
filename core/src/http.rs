//! The HTTP face of a check, the same wherever it runs: `keyhost serve`'s
//! `/auth`, the gate component and the proxy filters. Where the key is read
//! from, which status a refusal gets, and what an allowed request carries
//! on.

use serde_json::json;

use crate::text::is_unsafe_char;
use crate::verdict::{DenyCode, KeyRef};

/// Headers that carry the key, in the order they are read. `Authorization`
/// is read as `Bearer KEY`; any other holds the key itself.
pub const KEY_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

/// Every header keyhost sets on an allowed request starts with this. A
/// client's own are removed before a request is handed on, so that what the
/// app reads under it is keyhost's word.
pub const IDENTITY_PREFIX: &str = "x-keyhost-";

/// The prefix of the headers that carry a policy's allow info.
pub const INFO_PREFIX: &str = "x-keyhost-info-";

/// The key in the value of header `name` (lowercase), if it holds one.
pub fn key_in_header<'v>(name: &str, value: &'v str) -> Option<&'v str> {
    let value = value.trim();
    let key = if name.eq_ignore_ascii_case("authorization") {
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())?
    } else {
        value
    };
    (!key.is_empty()).then_some(key)
}

/// The key a request carries: the first of [`KEY_HEADERS`] that holds one.
/// `header` gives a header's value by lowercase name.
pub fn presented_key<'r>(header: impl Fn(&str) -> Option<&'r str>) -> Option<&'r str> {
    KEY_HEADERS
        .iter()
        .find_map(|name| key_in_header(name, header(name)?))
}

/// The HTTP status of a refusal: 401 when the key is missing or unknown,
/// 429 when rate limited, 403 when a known key is refused.
pub fn deny_status(code: DenyCode) -> u16 {
    match code {
        DenyCode::NotFound | DenyCode::Malformed => 401,
        DenyCode::RateLimited => 429,
        _ => 403,
    }
}

/// The reason a request that carries no key is refused with.
pub const NO_KEY: &str = "no API key in the request";

/// The `WWW-Authenticate` challenge of a refusal, as RFC 6750 (3.1) gives
/// it: a 401 without an `error` when no credential was sent (`reason` is
/// [`NO_KEY`]), `invalid_token` for one that is not a key; a 403 for a
/// missing scope says `insufficient_scope`, with the scope when known. Other
/// refusals have none.
pub fn challenge(code: DenyCode, reason: &str, scope: Option<&str>) -> Option<String> {
    match code {
        DenyCode::NotFound if reason == NO_KEY => Some("Bearer realm=\"keyhost\"".into()),
        DenyCode::NotFound | DenyCode::Malformed => Some(format!(
            "Bearer realm=\"keyhost\", error=\"invalid_token\", error_description=\"{}\"",
            code.as_str()
        )),
        DenyCode::InsufficientScope => {
            // A scope is one word of token characters; anything else is
            // left out rather than quoted.
            let scope = scope
                .filter(|scope| {
                    scope
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                })
                .map(|scope| format!(", scope=\"{scope}\""))
                .unwrap_or_default();
            Some(format!(
                "Bearer realm=\"keyhost\", error=\"insufficient_scope\"{scope}"
            ))
        }
        _ => None,
    }
}

/// The JSON body of a refusal.
pub fn deny_body(code: DenyCode, reason: &str) -> String {
    json!({ "decision": "deny", "code": code.as_str(), "reason": reason }).to_string()
}

/// The headers an allowed request carries on: the key's id, owner and kind,
/// then the policy's info as `X-Keyhost-Info-NAME`. A pair that cannot be a
/// header (a name that is not a token, a value with a control character) is
/// left out.
pub fn identity_headers(key: &KeyRef, info: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = [
        ("x-keyhost-key-id", key.key_id.as_str()),
        ("x-keyhost-owner", key.owner.as_str()),
        ("x-keyhost-kind", key.kind.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| is_header_value(value))
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    for (name, value) in info {
        let name = format!("{INFO_PREFIX}{}", name.to_ascii_lowercase());
        if !(is_header_name(&name) && is_header_value(value)) {
            continue;
        }
        // Names that differ only in case are one header: the last wins,
        // so that a proxy's add and set give the same request.
        headers.retain(|(kept, _)| *kept != name);
        headers.push((name, value.clone()));
    }
    headers
}

/// `name` as servers that fold separators read it: lowercase, with each run
/// of anything but a letter or a digit one `-` (CGI, WSGI, PHP and nginx
/// turn every such byte into `_`, so `X_Keyhost_Owner`, `X.Keyhost.Owner`
/// and `X~Keyhost~Owner` reach an app as `HTTP_X_KEYHOST_OWNER`, the same
/// as `X-Keyhost-Owner`). Byte by byte, with no allocation: it runs on
/// every header of every request in the filters.
fn folded(name: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let is_separator = |byte: &u8| !byte.is_ascii_alphanumeric();
    name.iter()
        .enumerate()
        .filter(move |(at, byte)| !(is_separator(byte) && *at > 0 && is_separator(&name[at - 1])))
        .map(move |(_, byte)| {
            if is_separator(byte) {
                b'-'
            } else {
                byte.to_ascii_lowercase()
            }
        })
}

/// Whether `name` and `canonical` are the same name once [`folded`].
fn same_folded(name: &[u8], canonical: &[u8]) -> bool {
    folded(name).eq(folded(canonical))
}

/// Whether two header names are one once case and runs of anything but
/// letters and digits are folded: proxies that pass such spellings on hand
/// them to an app as the same name.
pub fn same_header(one: &str, other: &str) -> bool {
    same_folded(one.as_bytes(), other.as_bytes())
}

/// Whether `name` is keyhost's to set, in any spelling: a client's copy
/// never passes.
pub fn is_identity_header(name: &str) -> bool {
    let mut name = folded(name.as_bytes());
    folded(IDENTITY_PREFIX.as_bytes()).all(|want| name.next() == Some(want))
}

/// Whether `name` carries a key, in any spelling: it never goes on.
pub fn is_key_header(name: &str) -> bool {
    KEY_HEADERS
        .iter()
        .any(|key| same_folded(name.as_bytes(), key.as_bytes()))
}

/// The reason given for a path that is not plain ([`is_plain_path`]).
pub const NOT_PLAIN_PATH: &str = "the path does not start with `/`, or could reach somewhere other than it reads (a `.`, `..` or empty segment, an encoded separator or letter, a control character or a `#`)";

/// Whether a request's `path` (with its query) may go on as it is: it
/// starts with `/` and does not [`climb`](climbs).
pub fn is_plain_path(path: &str) -> bool {
    path.starts_with('/') && !climbs(path)
}

/// How many times a path is percent-decoded and checked again: servers
/// that decode twice exist, and a path still encoded after this many
/// rounds is nobody's plain path.
const DECODE_ROUNDS: usize = 3;

/// Characters that servers applying Unicode normalisation (NFKC) read as
/// `.`, and as `/` or `\`.
const LOOKALIKE_DOTS: [char; 3] = ['\u{ff0e}', '\u{2024}', '\u{fe52}'];
const LOOKALIKE_SEPARATORS: [char; 4] = ['\u{ff0f}', '\u{2215}', '\u{2044}', '\u{ff3c}'];

/// Whether a request's `path` (its query aside) could reach somewhere
/// other than it reads, and so climb out of an upstream's base path or
/// step around a policy's path rules. The path is checked as it is, then
/// percent-decoded and checked again, up to [`DECODE_ROUNDS`] times (see
/// [`reads_elsewhere`] and [`decode_once`]).
pub fn climbs(path: &str) -> bool {
    let before_query = path.split('?').next().unwrap_or("");
    if is_plainly_plain(before_query) {
        return false;
    }
    let mut text = std::borrow::Cow::Borrowed(before_query);
    for round in 0..DECODE_ROUNDS {
        if reads_elsewhere(&text) {
            return true;
        }
        match decode_once(&text, round == 0) {
            Decoded::Plain => return false,
            Decoded::Suspect => return true,
            Decoded::Text(next) => text = next.into(),
        }
    }
    true
}

/// Whether `text` has nothing [`reads_elsewhere`] or [`decode_once`] could
/// find: only visible ASCII with no `%`, `#`, `\` or `.`, and no `//`. Most
/// paths are such, and one pass over their bytes settles them (the filters
/// check every request's path).
fn is_plainly_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'#' | b'\\' | b'.'))
        && !bytes.windows(2).any(|pair| pair == b"//")
}

/// A `#` (a request carries no fragment; a server that cuts there reads
/// less than the policy did), a backslash, an empty segment (`//`, which
/// nginx merges), a control character, a look-alike separator, or a
/// segment of dots, with or without a `;parameter` (`/..;/admin`, as
/// Tomcat and Jetty read it) or trailing spaces and dots (Windows drops
/// them).
fn reads_elsewhere(text: &str) -> bool {
    let dot = |c: char| c == '.' || LOOKALIKE_DOTS.contains(&c);
    text.contains(['#', '\\'])
        || text.contains("//")
        || text
            .chars()
            .any(|c| c.is_control() || LOOKALIKE_SEPARATORS.contains(&c))
        || text.split('/').any(|segment| {
            let name = segment.split(';').next().unwrap_or("");
            name.contains(dot) && name.chars().all(|c| dot(c) || c == ' ')
        })
}

/// One round of percent-decoding.
enum Decoded {
    /// No escape: nothing more to decode.
    Plain,
    /// An escape no plain path has.
    Suspect,
    /// The text, decoded once.
    Text(String),
}

/// Decodes `text` once. Suspect: an escape of a character that is never
/// escaped in a plain path (letters, digits, `-._~`: `/%61dmin` is
/// `/admin` to the server, not to a policy) or of a separator (`/`, `\`:
/// servers disagree on decoding them); bytes that are not UTF-8 (the
/// overlong forms of `.` and `/`); and, in the path as it came (`raw`), a
/// `%` that starts no escape (`%u002e`, `%%32%65`). Written by hand: a
/// decoding library passes such a `%` through, and it must be seen here.
fn decode_once(text: &str, raw: bool) -> Decoded {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'%') {
        return Decoded::Plain;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut escaped = false;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            match bytes.get(at + 1..at + 3).and_then(hex_byte) {
                Some(byte) if byte.is_ascii_alphanumeric() || b"-._~/\\".contains(&byte) => {
                    return Decoded::Suspect;
                }
                Some(byte) => {
                    out.push(byte);
                    escaped = true;
                    at += 3;
                    continue;
                }
                None if raw => return Decoded::Suspect,
                None => {}
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    if !escaped {
        return Decoded::Plain;
    }
    String::from_utf8(out).map_or(Decoded::Suspect, Decoded::Text)
}

/// The byte two hex digits stand for.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// An RFC 9110 token.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII and spaces, nothing a proxy could read as a line break.
fn is_header_value(value: &str) -> bool {
    !value.chars().any(|c| is_unsafe_char(c) || !c.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::KeyKind;

    #[test]
    fn keys_come_from_bearer_or_x_api_key_in_that_order() {
        let both = |name: &str| match name {
            "authorization" => Some("Bearer  abc "),
            "x-api-key" => Some("xyz"),
            _ => None,
        };
        assert_eq!(presented_key(both), Some("abc"));
        let basic = |name: &str| (name == "authorization").then_some("Basic abc");
        assert_eq!(presented_key(basic), None);
        let api_key = |name: &str| (name == "x-api-key").then_some("xyz");
        assert_eq!(presented_key(api_key), Some("xyz"));
        assert_eq!(presented_key(|_| Some("   ")), None);
    }

    #[test]
    fn info_that_could_split_a_header_is_left_out() {
        let key = KeyRef {
            index: 0,
            key_id: "kid_1".into(),
            owner: "user:alice".into(),
            kind: KeyKind::User,
        };
        let info = vec![
            ("tier".to_string(), "gold".to_string()),
            ("evil\r\nx-keyhost-key-id".to_string(), "forged".to_string()),
            (
                "note".to_string(),
                "a\r\nx-keyhost-owner: user:root".to_string(),
            ),
        ];
        let headers = identity_headers(&key, &info);
        assert_eq!(
            headers,
            vec![
                ("x-keyhost-key-id".to_string(), "kid_1".to_string()),
                ("x-keyhost-owner".to_string(), "user:alice".to_string()),
                ("x-keyhost-kind".to_string(), "user".to_string()),
                ("x-keyhost-info-tier".to_string(), "gold".to_string()),
            ]
        );
        let twice = vec![
            ("tier".to_string(), "gold".to_string()),
            ("Tier".to_string(), "platinum".to_string()),
        ];
        let info_headers: Vec<_> = identity_headers(&key, &twice)
            .into_iter()
            .filter(|(name, _)| name.starts_with(INFO_PREFIX))
            .collect();
        assert_eq!(
            info_headers,
            [("x-keyhost-info-tier".to_string(), "platinum".to_string())],
            "one header per name, the last value"
        );
        assert!(is_identity_header("X-Keyhost-Key-Id"));
        assert!(is_identity_header("X_Keyhost_Owner"));
        assert!(is_identity_header("x-keyhost_info_role"));
        for dotted in [
            "X.Keyhost.Key.Id",
            "x.keyhost.info.role",
            "X-_Keyhost..Owner",
            "x__keyhost-.kind",
            "X~Keyhost~Key~Id",
            "x!keyhost+owner",
        ] {
            assert!(is_identity_header(dotted), "{dotted}");
        }
        assert!(!is_identity_header("x-keyhost") && !is_identity_header("xkeyhost-owner"));
        assert!(!is_identity_header("x-keyhostess-owner"));
        assert!(is_key_header("X.API.Key") && is_key_header("x-_api..key"));
        assert!(!is_identity_header("x-keyhos"));
        assert!(!is_identity_header("é-keyhost-éé"));
        assert!(is_key_header("X_API_Key") && is_key_header("Authorization"));
        assert!(!is_key_header("x-api-keys"));
    }

    #[test]
    fn the_quick_pass_never_settles_a_path_the_full_check_refuses() {
        // Every printable ASCII byte in every place of a short path, and
        // pairs of them: whatever the quick pass lets through, the full
        // check (reading and decoding) lets through too.
        let bytes: Vec<u8> = (0x20..0x7f).collect();
        let mut paths = Vec::new();
        for &a in &bytes {
            paths.push(format!("/{}", a as char));
            paths.push(format!("/x{}y/z", a as char));
            for &b in &bytes {
                paths.push(format!("/{}{}", a as char, b as char));
            }
        }
        for path in &paths {
            if is_plainly_plain(path) {
                assert!(!reads_elsewhere(path), "{path}");
                assert!(matches!(decode_once(path, true), Decoded::Plain), "{path}");
            }
        }
    }

    #[test]
    fn paths_that_climb_are_not_plain() {
        for plain in [
            "/",
            "/a/b.txt",
            "/a/..b/c?x=../y",
            "/a/b?x=%2e%2e/%2f#frag",
            "/.well-known/x",
            "/files/100%25;v=2",
            "/a;b/c.d",
            "/%e2%82%ac",
            "/a%20b/c%3Fd",
            "/trailing/",
        ] {
            assert!(is_plain_path(plain), "{plain}");
        }
        for climbing in [
            "/../admin",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "relative",
            "",
            "/a\\..\\b",
            "/public/..;/admin",
            "/public/.;x=1/admin",
            "/public/%2e%2e;/admin",
            "/public/..%3b/admin",
            "/public%2f..%2fadmin",
            "/public%5C..%5Cadmin",
            "/public/%252e%252e/admin",
            "/public%252f..%252fadmin",
            "/public/%25%32%65%25%32%65/admin",
            "/public/%%32%65%%32%65/admin",
            "/public/%u002e%u002e/admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%c1%9c/admin",
            "/public/%e0%80%ae%e0%80%ae/admin",
            "/public/%ef%bc%8e%ef%bc%8e/admin",
            "/public/\u{ff0e}\u{ff0e}/admin",
            "/public\u{ff0f}..\u{ff0f}admin",
            "/public/..%20/admin",
            "/public/.../admin",
            "/public#/../admin",
            "//admin",
            "/public//admin",
            "/%61dmin",
            "/admin%00/public",
            "/public/%09/admin",
            "/public/\u{7f}",
            "/public/\n/admin",
            "/public/%zz",
            "/public/%",
        ] {
            assert!(!is_plain_path(climbing), "{climbing}");
            assert!(climbs(climbing) || !climbing.starts_with('/'), "{climbing}");
        }
        assert!(!climbs("relative") && climbs("relative/../x"));
    }
}
