//! One request as a proxy that checks it in place sees it: its headers,
//! method and path in; a verdict, then what to hand on or answer, out. The
//! gate component and the proxy-wasm and http-wasm filters all run this, so
//! a request gets the same answer in each.

use serde::{Deserialize, Serialize};

use crate::check::{self, CheckRequest, Decider};
use crate::http;
use crate::lookup::Lookup;
use crate::record::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::{Decision, DenyCode, Verdict};

/// What a proxy's configuration says of every request it checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checking {
    /// The service every request is for; none means the request names none.
    #[serde(default)]
    pub service: Option<String>,
    /// The scope every request needs; none means no particular scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// The header whose last entry is the client's address, set by a proxy
    /// in front that the operator trusts. None: the address is unknown, and
    /// a key with an IP allow-list fails closed.
    #[serde(default)]
    pub client_ip_header: Option<String>,
    /// The headers that carry the key, in the order they are read
    /// (lowercase); empty means [`http::KEY_HEADERS`].
    #[serde(default)]
    pub key_headers: Vec<String>,
}

impl Checking {
    /// Refuses a setting a proxy could not act on: a header name that is
    /// not a token, or one of keyhost's own. The error names the setting,
    /// not its value (a filter's configuration is never quoted back).
    pub fn validate(&self) -> Result<(), String> {
        let settings = self
            .key_headers
            .iter()
            .map(|name| ("key_headers", name))
            .chain(
                self.client_ip_header
                    .iter()
                    .map(|name| ("client_ip_header", name)),
            );
        for (setting, name) in settings {
            if !http::is_header_name(name) {
                return Err(format!(
                    "`{setting}` holds something that is not a header name"
                ));
            }
            if http::is_identity_header(name) {
                return Err(format!(
                    "`{setting}` names one of keyhost's own X-Keyhost-* headers, which cannot carry a key or an address"
                ));
            }
        }
        Ok(())
    }

    /// The headers that carry the key, without collecting them: `reads`
    /// asks for every header of every request in the filters.
    fn key_header_names(&self) -> impl Iterator<Item = &str> {
        let configured = self.key_headers.iter().map(String::as_str);
        let default = http::KEY_HEADERS.iter().copied();
        let use_default = self.key_headers.is_empty();
        default.filter(move |_| use_default).chain(configured)
    }

    /// Whether a check reads the value of header `name`: a key header, or
    /// the one that carries the client's address.
    pub fn reads(&self, name: &str) -> bool {
        self.key_header_names()
            .any(|key| key.eq_ignore_ascii_case(name))
            || self
                .client_ip_header
                .as_deref()
                .is_some_and(|header| header.eq_ignore_ascii_case(name))
    }

    /// Whether header `name` carries the key, in any spelling: it is never
    /// handed on.
    pub fn is_key_header(&self, name: &str) -> bool {
        http::is_key_header(name)
            || self
                .key_headers
                .iter()
                .any(|key| http::same_header(key, name))
    }
}

/// A request's parts, as the proxy gives them.
#[derive(Clone, Copy)]
pub struct Seen<'h> {
    /// Every line of every header, as (name, value) in the order they
    /// came. A value that is not UTF-8 cannot carry a key or an address,
    /// and is not read.
    pub headers: &'h [(String, Vec<u8>)],
    /// The request's method.
    pub method: Option<&'h str>,
    /// The request's path, with its query.
    pub path: Option<&'h str>,
    /// The address of the peer the proxy took the request from, when the
    /// proxy's word for it can be trusted: the client's address when no
    /// `client_ip_header` is configured. None: the address is unknown, and
    /// keys with an IP allow-list fail closed.
    pub peer: Option<&'h str>,
    /// The time of the request; none means now.
    pub now: Option<Timestamp>,
}

impl<'h> Seen<'h> {
    fn lines<'n>(&self, name: &'n str) -> impl DoubleEndedIterator<Item = &'h [u8]> + 'n
    where
        'h: 'n,
    {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The first line of header `name`: where a key is read.
    pub fn first(&self, name: &str) -> Option<&'h str> {
        std::str::from_utf8(self.lines(name).next()?).ok()
    }

    /// The last line of header `name`: where a forwarding header's trusted
    /// entry is (a proxy in front appends; lines before it, and entries to
    /// its left, can come from the client). When that line is not UTF-8,
    /// there is no address: an earlier line is never read in its place.
    pub fn last(&self, name: &str) -> Option<&'h str> {
        std::str::from_utf8(self.lines(name).next_back()?).ok()
    }

    /// The key the request presents: in the first of the key headers that
    /// carries one.
    pub fn presented(&self, checking: &Checking) -> Option<&'h str> {
        checking
            .key_header_names()
            .find_map(|name| http::key_in_header(name, self.first(name)?))
    }

    /// The client's address: from the last line of the configured header,
    /// or else the peer.
    pub fn source_ip(&self, checking: &Checking) -> Option<String> {
        match checking.client_ip_header.as_deref() {
            Some(name) => self.last(name).and_then(last_address),
            None => self.peer.and_then(peer_address),
        }
    }
}

/// The verdict on a request, as `/auth` reaches it. The service and scope
/// are the configuration's, never the client's; the client's address comes
/// only from the header the configuration names, or else from the peer. An
/// `Err` is a registry that cannot be read.
pub fn verdict(
    lookup: &(impl Lookup + ?Sized),
    decider: &mut impl Decider,
    checking: &Checking,
    seen: Seen<'_>,
) -> anyhow::Result<Verdict> {
    verdict_hashed(lookup, decider, checking, seen, None)
}

/// [`verdict`], given the SHA-256 of the key the request presents when the
/// caller already made it.
pub fn verdict_hashed(
    lookup: &(impl Lookup + ?Sized),
    decider: &mut impl Decider,
    checking: &Checking,
    seen: Seen<'_>,
    hash: Option<&[u8; 32]>,
) -> anyhow::Result<Verdict> {
    let Some(presented) = seen.presented(checking) else {
        return Ok(Verdict::deny(DenyCode::NotFound, http::NO_KEY, None));
    };
    let request = CheckRequest {
        service: checking.service.clone(),
        scope: checking.scope.clone(),
        source_ip: seen.source_ip(checking),
        method: seen.method.map(str::to_string),
        path: seen.path.map(str::to_string),
        attributes: Vec::new(),
        now: seen.now,
    };
    check::check_hashed(lookup, &mut InPlace(decider), presented, hash, &request)
}

/// The last entry of a forwarding header (the one the trusted proxy wrote;
/// entries to its left come from the client), if it is an address.
pub fn last_address(value: &str) -> Option<String> {
    let last = value.rsplit(',').next()?.trim();
    canonical(last, last.parse().ok()?)
}

/// `ip`, which `text` spells, in its canonical form. An IPv4 address that
/// parses is already canonical (the parser takes four decimal octets
/// without leading zeros), so its text is copied rather than formatted: a
/// check in a filter runs this on every request.
fn canonical(text: &str, ip: std::net::IpAddr) -> Option<String> {
    Some(match ip {
        std::net::IpAddr::V4(_) => text.to_string(),
        std::net::IpAddr::V6(_) => ip.to_canonical().to_string(),
    })
}

/// A decider where a check runs in place (the gate, the filters): a rate
/// limit needs counts shared between requests, which an in-place check (often
/// an instance per request, a VM per worker) does not keep, so a key with one
/// is refused rather than let through unlimited.
pub struct InPlace<'d, D>(pub &'d mut D);

impl<D: Decider> Decider for InPlace<'_, D> {
    type Fault = D::Fault;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, D::Fault> {
        match key.rate_limit {
            Some(limit) => Ok(Decision::Deny {
                code: DenyCode::Denied,
                message: format!(
                    "this key has a rate limit ({limit}), which a check inside a proxy cannot keep; keyhost serve can"
                ),
            }),
            None => self.0.decide(key, identity, request, now),
        }
    }
}

/// The address in a proxy's word for its peer: `IP`, `IP:PORT` or
/// `[IPv6]:PORT`.
pub fn peer_address(peer: &str) -> Option<String> {
    if let Ok(ip) = peer.parse::<std::net::IpAddr>() {
        return canonical(peer, ip);
    }
    match peer.parse::<std::net::SocketAddr>().ok()? {
        // `IPv4:PORT`: the address is the text before the colon.
        std::net::SocketAddr::V4(address) => {
            canonical(peer.rsplit_once(':')?.0, (*address.ip()).into())
        }
        std::net::SocketAddr::V6(address) => canonical(peer, (*address.ip()).into()),
    }
}

/// A refusal as every face answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// 401, 403 or 429.
    pub status: u16,
    /// `content-type`, and the challenge of a 401.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

/// The answer to a refusal with `code` and `reason`: 401 with a challenge
/// for a missing, malformed or unknown key, 403 (or 429) otherwise, and a
/// JSON body.
pub fn refusal(code: DenyCode, reason: &str) -> Refusal {
    let status = http::deny_status(code);
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(challenge) = http::challenge(code, reason, None) {
        headers.push(("www-authenticate".to_string(), challenge));
    }
    Refusal {
        status,
        headers,
        body: http::deny_body(code, reason),
    }
}

/// What a proxy says when it cannot decide (its snapshot or policy failed):
/// the detail goes to the proxy's log, not to whoever sent the request, as
/// it can quote the registry's settings.
pub fn cannot_decide() -> Refusal {
    refusal(
        DenyCode::PolicyError,
        "keyhost cannot decide here: its policy or its snapshot failed",
    )
}

/// What a proxy says once its snapshot is older than its settings allow:
/// every check, of any key, fails closed until keyhost serve answers.
pub fn too_stale() -> Refusal {
    refusal(
        DenyCode::PolicyError,
        "keyhost cannot decide here: its snapshot is older than max_stale_ms allows, as keyhost serve has not answered",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_forwarded_entry_is_the_address_and_only_an_address() {
        assert_eq!(
            last_address("6.6.6.6, 10.0.0.9").as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(
            last_address("::ffff:192.0.2.7").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(last_address("10.0.0.9, evil"), None);
    }

    #[test]
    fn the_last_line_is_the_address_or_there_is_none() {
        let headers = vec![
            ("x-forwarded-for".to_string(), b"10.1.2.3".to_vec()),
            ("X-Forwarded-For".to_string(), b"\xff".to_vec()),
        ];
        let seen = Seen {
            headers: &headers,
            method: None,
            path: None,
            peer: None,
            now: None,
        };
        assert_eq!(seen.last("x-forwarded-for"), None);
        assert_eq!(seen.first("x-forwarded-for"), Some("10.1.2.3"));
    }

    #[test]
    fn a_peer_is_read_with_or_without_its_port() {
        for (peer, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:5555", "127.0.0.1"),
            ("[::1]:80", "::1"),
            ("[::ffff:10.0.0.1]:80", "10.0.0.1"),
        ] {
            assert_eq!(peer_address(peer).as_deref(), Some(ip), "{peer}");
        }
        assert_eq!(peer_address("somewhere"), None);
    }

    #[test]
    fn an_ipv4_address_that_parses_is_spelled_canonically() {
        // `canonical` copies an IPv4 address's text: that is only right if
        // every spelling the parser takes is the one it prints.
        for text in [
            "1.2.3.4",
            "01.2.3.4",
            "1.2.3.04",
            "0x1.2.3.4",
            "1.2.3",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.256",
            "001.002.003.004",
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4.5",
        ] {
            if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
                assert_eq!(ip.to_string(), text);
            }
            assert_eq!(
                peer_address(text).as_deref(),
                text.parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(|ip| ip.to_string())
                    .as_deref(),
                "{text}"
            );
            let with_port = format!("{text}:80");
            assert_eq!(peer_address(&with_port), peer_address(text), "{with_port}");
        }
    }

    #[test]
    fn settings_that_name_keyhosts_own_headers_are_refused() {
        let mut checking = Checking::default();
        assert_eq!(
            checking.key_header_names().collect::<Vec<_>>(),
            http::KEY_HEADERS.to_vec()
        );
        checking.key_headers = vec!["x-keyhost-key-id".into()];
        assert!(checking.validate().is_err());
        checking.key_headers = vec!["bad header".into()];
        assert!(checking.validate().is_err());
        checking.key_headers = vec!["x-token".into()];
        checking.client_ip_header = Some("x-real-ip".into());
        assert!(checking.validate().is_ok());
        assert!(checking.is_key_header("X-Token") && checking.is_key_header("x-api-key"));
        // The `_` spelling, which servers behind the proxy read as the same
        // header, is removed too; the key is still read only from the name
        // as configured.
        assert!(checking.is_key_header("X_TOKEN") && checking.is_key_header("x_api_key"));
        assert!(!checking.reads("x_token"));
    }

    #[test]
    fn a_check_reads_the_key_headers_and_the_address_header_only() {
        let mut checking = Checking::default();
        assert!(checking.reads("X-API-Key") && checking.reads("authorization"));
        assert!(!checking.reads("x-forwarded-for") && !checking.reads("x-keyhost-owner"));
        checking.key_headers = vec!["x-token".into()];
        checking.client_ip_header = Some("X-Real-IP".into());
        assert!(checking.reads("x-token") && checking.reads("x-real-ip"));
        assert!(
            !checking.reads("x-api-key"),
            "only the headers it was given"
        );
    }
}
