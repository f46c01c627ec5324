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
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "@?#".contains(c);
        if authority.is_empty() || authority.contains(bad_char) {
            return Err(format!(
                "{url:?} has no host, or one with credentials, spaces or control characters"
            ));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || "?#".contains(c)) {
            return Err(format!(
                "{url:?}: the upstream path may not hold a query, a fragment or spaces"
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

#[cfg(test)]
mod tests {
    use super::*;

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
