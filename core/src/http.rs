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

/// The `WWW-Authenticate` challenge of a 401.
pub fn challenge(code: DenyCode) -> String {
    format!(
        "Bearer realm=\"keyhost\", error=\"invalid_token\", error_description=\"{}\"",
        code.as_str()
    )
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
    headers.extend(info.iter().filter_map(|(name, value)| {
        let name = format!("{INFO_PREFIX}{}", name.to_ascii_lowercase());
        (is_header_name(&name) && is_header_value(value)).then(|| (name, value.clone()))
    }));
    headers
}

/// `name` as servers that fold `_` into `-` read it (CGI, WSGI, PHP:
/// `X_Keyhost_Owner` arrives as `HTTP_X_KEYHOST_OWNER`, the same as
/// `X-Keyhost-Owner`), lowercase.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Whether `name` is keyhost's to set, in any spelling: a client's copy
/// never passes.
pub fn is_identity_header(name: &str) -> bool {
    folded(name).starts_with(IDENTITY_PREFIX)
}

/// Whether `name` carries a key, in any spelling: it never goes on.
pub fn is_key_header(name: &str) -> bool {
    let name = folded(name);
    KEY_HEADERS.contains(&name.as_str())
}

/// Whether a request's `path` (with its query) may go on as it is: it
/// starts with `/` and has no `.` or `..` segment, written plainly or
/// percent-encoded, that would climb out of an upstream's base path or
/// sidestep a policy's path rules.
pub fn is_plain_path(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.starts_with('/')
        && !path.contains('\\')
        && path.split('/').all(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            decoded != "." && decoded != ".."
        })
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
        assert!(is_identity_header("X-Keyhost-Key-Id"));
        assert!(is_identity_header("X_Keyhost_Owner"));
        assert!(is_identity_header("x-keyhost_info_role"));
        assert!(!is_identity_header("x-keyhos"));
        assert!(!is_identity_header("é-keyhost-éé"));
        assert!(is_key_header("X_API_Key") && is_key_header("Authorization"));
        assert!(!is_key_header("x-api-keys"));
    }

    #[test]
    fn paths_that_climb_are_not_plain() {
        for plain in ["/", "/a/b.txt", "/a/..b/c?x=../y", "/.well-known/x"] {
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
        ] {
            assert!(!is_plain_path(climbing), "{climbing}");
        }
    }
}
