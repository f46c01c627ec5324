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
        // A port is digits: `http://u:pa/ss@host` is a password, not a
        // host `u` on port `pa`.
        let after_host = match authority.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
            None => authority.find(':').map_or("", |at| &authority[at..]),
        };
        let port = after_host.strip_prefix(':');
        let bad_port = match port {
            Some(port) => port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()),
            None => !after_host.is_empty(),
        };
        if bad_port {
            return Err(format!("{shown:?}: the port is not a number"));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || "?#@".contains(c)) {
            return Err(format!(
                "{shown:?}: the upstream path may not hold a query, a fragment, an `@` or spaces"
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

/// `url` as an error may quote it: everything between the scheme and the
/// last `@` (where credentials would be), and everything from a `?` or `#`
/// on, is replaced by `REDACTED`.
fn without_secrets(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => format!("REDACTED@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    match rest.find(['?', '#']) {
        Some(at) => format!("{scheme}{}?REDACTED", &rest[..at]),
        None => format!("{scheme}{rest}"),
    }
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
            ("http://u:pa/hunter2@host/", "hunter2"),
            ("http://u:hunter2?ss@host", "hunter2"),
            ("http:/u:hunter2@host", "hunter2"),
            ("http//u:hunter2@host", "hunter2"),
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
        assert!(Upstream::parse("http://[::1]:8080/x").is_ok());
        assert!(Upstream::parse("http://host:80").is_ok());
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@host/",
            "http://h/a?b",
            "http://h o/",
            "http://h:port/",
            "http://[::1]x/",
            "http://h:/",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
