//! The auth endpoint's header parsing: the key, the forwarded headers and
//! the client IP, from arbitrary header lines.
//!
//! Shared by the fuzz target and by the corpus replay in `cargo test`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use keyhost::serve::auth::{AuthSettings, check_request, client_ip, presented_key};

/// One input.
pub fn run(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let (method, path) = match first.iter().position(|&b| b == b' ') {
        Some(space) => (&first[..space], &first[space + 1..]),
        None => (first, &b"/auth"[..]),
    };
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
    let uri = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/auth"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let untrusted = AuthSettings::default();
    let trusted = AuthSettings {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..AuthSettings::default()
    };
    if let Some(key) = presented_key(&headers, &untrusted) {
        assert!(!key.is_empty() && key.trim() == key);
    }
    // From a peer that is not a trusted proxy, no header moves the address.
    assert_eq!(client_ip(&headers, &untrusted, peer), peer);
    for settings in [&untrusted, &trusted] {
        let ip = client_ip(&headers, settings, peer);
        let request = check_request(&headers, settings, peer, &method, &uri);
        assert_eq!(request.source_ip, Some(ip.to_string()));
        assert!(request.path.is_some() && request.method.is_some());
    }
}
