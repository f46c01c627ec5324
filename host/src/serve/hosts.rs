//! Which `Host` a request may name. A page on a name its author controls
//! can make that name resolve to 127.0.0.1 (DNS rebinding) and then read a
//! loopback serve as its own origin: `/v1/keys/verify` as a key oracle,
//! `/metrics`, `/healthz`. Such a request names the page's own host, a
//! dotted DNS name, so a loopback serve answers only the names a local
//! caller uses, and any other with `421 Misdirected Request`.
//!
//! The check routes (`/auth`) take any `Host` from a caller that is not a
//! browser: their callers are proxies, and Envoy's `ext_authz` passes the
//! original request's `Host` on. A request a browser made itself says so
//! (`Sec-Fetch-Site` or `Origin`, which a page cannot leave out), and is
//! held to the names there too.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

/// The hosts a request may name.
#[derive(Clone, Debug)]
pub enum AllowedHosts {
    /// Any (`--allowed-host '*'`, or listening beyond loopback with no
    /// `--allowed-host`).
    Any,
    /// These names, lowercase, and the names a local caller uses when
    /// `local` (listening on loopback): no `Host`, an IP literal,
    /// `localhost` and `*.localhost`, and a name of one label (nginx's
    /// `proxy_pass http://keyhost` sends `Host: keyhost`), none of which a
    /// page elsewhere can make its own.
    Names {
        /// Given with `--allowed-host`, lowercase.
        names: Vec<String>,
        /// Listening on loopback: the local names are taken too.
        local: bool,
    },
}

impl AllowedHosts {
    /// The hosts a serve on `listen` takes with no `--allowed-host`.
    pub fn local_to(listen: SocketAddr) -> AllowedHosts {
        if listen.ip().is_loopback() {
            AllowedHosts::Names {
                names: Vec::new(),
                local: true,
            }
        } else {
            AllowedHosts::Any
        }
    }

    /// The hosts a serve on `listen` takes, given `--allowed-host` values.
    pub fn new(listen: SocketAddr, named: &[String]) -> Result<AllowedHosts, String> {
        if named.iter().any(|name| name == "*") {
            return Ok(AllowedHosts::Any);
        }
        if named.is_empty() {
            return Ok(AllowedHosts::local_to(listen));
        }
        let local = listen.ip().is_loopback();
        let mut names = Vec::new();
        for name in named {
            let bare = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !bare.is_empty()
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            if !valid {
                return Err(format!(
                    "--allowed-host {name:?} is not a host name (give the name without a port, or '*')"
                ));
            }
            names.push(bare);
        }
        Ok(AllowedHosts::Names { names, local })
    }

    /// Whether a request whose `Host` is `host` (none: not sent) is taken.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let AllowedHosts::Names { names, local } = self else {
            return true;
        };
        let Some(host) = host else {
            return *local;
        };
        let name = name_of(host).to_ascii_lowercase();
        if names.contains(&name) {
            return true;
        }
        *local
            && (name.parse::<IpAddr>().is_ok()
                || name == "localhost"
                || name.ends_with(".localhost")
                || name == "localhost.localdomain"
                || (!name.is_empty() && !name.contains('.')))
    }
}

/// The name in a `Host` value, without its port; an IPv6 literal without
/// its brackets.
fn name_of(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
        .trim_end_matches('.')
}

/// The `421` for a request whose `Host` is not allowed; `None` when it is.
pub fn misdirected(allowed: &AllowedHosts, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let exempt = (path == "/auth" || path.starts_with("/auth/"))
        && !["sec-fetch-site", "origin"]
            .iter()
            .any(|name| request.headers().contains_key(*name));
    // A Host that is not text is no name a local caller uses.
    let host = || {
        request
            .headers()
            .get(header::HOST)
            .map(|value| value.to_str().unwrap_or(""))
    };
    if exempt || allowed.allows(host()) {
        return None;
    }
    Some(
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            "this keyhost serve does not answer for the host the request names; \
             start it with --allowed-host NAME to answer for NAME",
        )
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_serve_takes_local_names_and_refuses_a_rebound_one() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let allowed = AllowedHosts::new(loopback, &[]).unwrap();
        for host in [
            None,
            Some("127.0.0.1:8080"),
            Some("[::1]:8080"),
            Some("localhost:8080"),
            Some("LOCALHOST"),
            Some("app.localhost"),
            Some("keyhost"),
        ] {
            assert!(allowed.allows(host), "{host:?}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.nip.io",
            "a.b:1",
            "",
        ] {
            assert!(!allowed.allows(Some(host)), "{host}");
        }
        assert!(allowed.allows(Some("localhost.localdomain:8080")));
        let named = AllowedHosts::new(loopback, &["Keys.Example.COM.".into()]).unwrap();
        assert!(named.allows(Some("keys.example.com:443")));
        assert!(named.allows(Some("keys.example.com.")));
        assert!(!named.allows(Some("other.example.com")));
        let wide: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(
            AllowedHosts::new(wide, &[])
                .unwrap()
                .allows(Some("any.example"))
        );
        let wide_named = AllowedHosts::new(wide, &["keys.example".into()]).unwrap();
        assert!(!wide_named.allows(Some("evil.example")));
        assert!(!wide_named.allows(Some("127.0.0.1")));
        assert!(
            AllowedHosts::new(loopback, &["*".into()])
                .unwrap()
                .allows(Some("x.y"))
        );
        assert!(AllowedHosts::new(loopback, &["host:80".into()]).is_err());
    }
}
