//! The settings `keyhost gate build` bakes into a gate, beside the registry
//! snapshot. The host writes them; the gate component reads them.

use serde::{Deserialize, Serialize};

use crate::request::Checking;

/// A gate's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    /// Where an allowed request goes.
    pub mode: GateMode,
    /// What every request is checked for, as in the proxy filters.
    pub checking: Checking,
}

/// Where a gate hands an allowed request on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateMode {
    /// To an upstream URL, through `wasi:http/outgoing-handler`.
    ReverseProxy(Upstream),
    /// To an app component composed behind the gate.
    Middleware,
}

/// An upstream URL, split as `wasi:http` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `https` rather than `http`.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// The path the request's own path is appended to, without a trailing
    /// `/` (empty for the root).
    pub base_path: String,
}

impl Upstream {
    /// Parses `http://host[:port][/path]` or `https://...`.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        // What a refusal quotes: never the URL's credentials or query.
        let shown = without_secrets(url);
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{shown:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "@?#".contains(c);
        if authority.is_empty() || authority.contains(bad_char) {
            return Err(format!(
                "{shown:?} has no host, or one with credentials, spaces or control characters"
            ));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || "?#".contains(c)) {
            return Err(format!(
                "{shown:?}: the upstream path may not hold a query, a fragment or spaces"
            ));
        }
        Ok(Upstream {
            https,
            authority: authority.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The URL again.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.base_path)
    }
}

/// `url` as an error may quote it: credentials before an `@` and
/// everything from a `?` or `#` on are replaced by `REDACTED`.
fn without_secrets(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, cut) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], true),
        None => (rest, false),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("REDACTED@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let scheme = if url.contains("://") {
        format!("{scheme}://")
    } else {
        String::new()
    };
    format!(
        "{scheme}{authority}{path}{}",
        if cut { "?REDACTED" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_upstream_is_quoted_without_its_credentials_or_query() {
        for (url, secret) in [
            ("http://user:hunter2@host/", "hunter2"),
            ("https://:hunter2@host:8443/app", "hunter2"),
            ("http://host/a?token=hunter2", "hunter2"),
            ("http://host/a#hunter2", "hunter2"),
            ("ftp://u:hunter2@host", "hunter2"),
            ("u:hunter2@host", "hunter2"),
        ] {
            let Err(refusal) = Upstream::parse(url) else {
                panic!("{url} was taken")
            };
            assert!(!refusal.contains(secret), "{refusal}");
            assert!(refusal.contains("REDACTED"), "{refusal}");
        }
        assert_eq!(
            without_secrets("http://127.0.0.1:8080/static"),
            "http://127.0.0.1:8080/static"
        );
    }

    #[test]
    fn upstreams_parse_and_print_back() {
        let up = Upstream::parse("http://127.0.0.1:8080/static/").unwrap();
        assert_eq!(up.authority, "127.0.0.1:8080");
        assert_eq!(up.base_path, "/static");
        assert_eq!(up.url(), "http://127.0.0.1:8080/static");
        assert!(Upstream::parse("https://example.test").unwrap().https);
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@host/",
            "http://h/a?b",
            "http://h o/",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
