//! The auth endpoint for proxies (nginx `auth_request`, Envoy `ext_authz`
//! in HTTP mode, Traefik `forwardAuth`) and the JSON verify endpoint.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::Deserialize;

use super::AppState;
use super::openapi::{Denial, VerifyAnswer};
use keyhost_core::http;

use crate::check::CheckRequest;
use crate::verdict::DenyCode;
use crate::verdict::Verdict;

/// Where the auth endpoint finds what it needs in a request.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Headers that may carry the key, in order. `Authorization` is read as
    /// `Bearer KEY`; any other header holds the key itself.
    pub key_headers: Vec<HeaderName>,
    /// A fixed service; when set, the service header is ignored.
    pub service: Option<String>,
    /// The header that names the service (`X-Keyhost-Service`).
    pub service_header: HeaderName,
    /// The header that names the scope (`X-Keyhost-Scope`).
    pub scope_header: HeaderName,
    /// Peers whose forwarding headers (client address, original method and
    /// path) are believed. From anyone else they are ignored: a client could
    /// write them.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            key_headers: http::KEY_HEADERS
                .iter()
                .map(|name| HeaderName::from_static(name))
                .collect(),
            service: None,
            service_header: HeaderName::from_static("x-keyhost-service"),
            scope_header: HeaderName::from_static("x-keyhost-scope"),
            trusted_proxies: Vec::new(),
        }
    }
}

impl AuthSettings {
    /// Whether `peer` is a proxy whose forwarding headers are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// The path the auth routes live under; Envoy appends the original path.
pub const AUTH_PREFIX: &str = "/auth";

/// The key the request carries, if any.
pub fn presented_key(headers: &HeaderMap, settings: &AuthSettings) -> Option<String> {
    settings.key_headers.iter().find_map(|name| {
        let value = headers.get(name)?.to_str().ok()?;
        http::key_in_header(name.as_str(), value).map(str::to_string)
    })
}

/// A request field from header `name`, trimmed. A value that is not
/// visible ASCII is still read, as UTF-8 with any byte that is not
/// becoming U+FFFD, so that the check refuses what it cannot judge
/// (`text::first_unsafe_char`) instead of taking the field as absent: a
/// scope taken as absent would be a request that needs no scope.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = String::from_utf8_lossy(headers.get(name)?.as_bytes());
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The client's address. From a trusted proxy: the last entry of
/// `X-Forwarded-For` (the one that proxy saw; entries to its left come from
/// the client and can be forged), else `X-Real-IP`, else the peer. From
/// anyone else: the peer.
pub fn client_ip(headers: &HeaderMap, settings: &AuthSettings, peer: IpAddr) -> IpAddr {
    if !settings.trusts(peer) {
        return peer;
    }
    // Only the very last entry counts: if it is not an address, the header
    // is ignored rather than falling back to a forgeable earlier entry.
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
    forwarded
        .or_else(|| header_text(headers, "x-real-ip")?.parse().ok())
        .unwrap_or(peer)
}

/// What the proxies tell us about the original request. The original
/// method and path come from a trusted proxy's headers; otherwise they are
/// the request's own (Envoy sends the original path after our prefix).
pub fn check_request(
    headers: &HeaderMap,
    settings: &AuthSettings,
    peer: IpAddr,
    method: &Method,
    uri: &Uri,
) -> CheckRequest {
    let service = settings
        .service
        .clone()
        .or_else(|| header_text(headers, settings.service_header.as_str()));
    let forwarded = |names: [&str; 2]| {
        settings
            .trusts(peer)
            .then(|| names.iter().find_map(|name| header_text(headers, name)))
            .flatten()
    };
    // Traefik sends X-Forwarded-*; nginx sends what its snippet sets.
    let method = forwarded(["x-forwarded-method", "x-original-method"])
        .unwrap_or_else(|| method.to_string());
    let path = forwarded(["x-forwarded-uri", "x-original-uri"]).unwrap_or_else(|| {
        let rest = uri.path().strip_prefix(AUTH_PREFIX).unwrap_or(uri.path());
        let rest = if rest.is_empty() { "/" } else { rest };
        match uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_string(),
        }
    });
    CheckRequest {
        service,
        scope: header_text(headers, settings.scope_header.as_str()),
        source_ip: Some(client_ip(headers, settings, peer).to_string()),
        method: Some(method),
        path: Some(path),
        attributes: Vec::new(),
        now: None,
    }
}

/// The HTTP status of a denial: 401 when the key is missing or unknown,
/// 429 when rate limited, 403 when a known key is refused.
pub fn deny_status(code: DenyCode) -> StatusCode {
    StatusCode::from_u16(http::deny_status(code)).expect("a valid status")
}

/// `/auth`: 200 with the identity headers, or 401/403/429 with a JSON body.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options, trace),
    path = "/auth",
    tag = "check",
    description = "Checks the key a request carries (`Authorization: Bearer` or \
        `X-API-Key`) for the service and scope it names, as nginx's \
        `auth_request`, Envoy's `ext_authz` and Traefik's `forwardAuth` ask. \
        Any method.",
    params(
        ("X-Keyhost-Service" = Option<String>, Header, description = "The service the request is for"),
        ("X-Keyhost-Scope" = Option<String>, Header, description = "The scope it needs"),
    ),
    responses(
        (status = 200, description = "Allowed: the key's identity in the headers, no body",
            headers(
                ("X-Keyhost-Key-Id" = String, description = "The key's id"),
                ("X-Keyhost-Owner" = String, description = "The key's identity"),
                ("X-Keyhost-Kind" = String, description = "The key's kind"),
            )),
        (status = 401, description = "No key, or an unknown one", body = Denial),
        (status = 403, description = "A known key, refused", body = Denial),
        (status = 429, description = "Rate limited; `Retry-After` says when to try again", body = Denial),
    ),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn auth(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = check_request(&headers, &state.auth, peer.ip(), &method, &uri);
    let key = presented_key(&headers, &state.auth);
    let evaluated = state.evaluate(key.as_deref(), &request).await;
    verdict_response(
        &evaluated.verdict,
        evaluated.retry_after,
        request.scope.as_deref(),
    )
}

fn verdict_response(
    verdict: &Verdict,
    retry_after: Option<std::time::Duration>,
    scope: Option<&str>,
) -> Response {
    match verdict {
        Verdict::Allow { key, info } => {
            // No body: what the caller needs is in the headers, and nginx
            // reuses a keep-alive connection to keyhost only if an
            // auth_request answer has no body to skip (with one, it opened a
            // connection per request and ran at 7% of nginx alone).
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            for (name, value) in http::identity_headers(key, info) {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(name), HeaderValue::try_from(value))
                {
                    headers.append(name, value);
                }
            }
            response
        }
        Verdict::Deny { code, reason, .. } => {
            let status = deny_status(*code);
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                http::deny_body(*code, reason),
            )
                .into_response();
            let headers = response.headers_mut();
            if let Some(challenge) = http::challenge(*code, reason, scope)
                && let Ok(value) = HeaderValue::from_str(&challenge)
            {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            if let Some(wait) = retry_after {
                headers.insert(header::RETRY_AFTER, retry_after_value(wait));
            }
            response
        }
    }
}

/// `/auth/` and `/auth/{*path}`: the same check, for proxies that append
/// the original path (Envoy's `ext_authz`). Only the document's: the router
/// sends these paths to [`auth`].
#[utoipa::path(
    method(get, post, put, patch, delete, head, options, trace),
    path = "/auth/{path}",
    tag = "check",
    description = "The check of `/auth`, with the original request's path \
        appended (any depth, or none: `/auth/`).",
    params(("path" = String, Path, description = "The original path; may hold `/`, or be empty")),
    responses(
        (status = 200, description = "Allowed: the key's identity in the headers"),
        (status = 401, description = "No key, or an unknown one", body = Denial),
        (status = 403, description = "A known key, refused", body = Denial),
        (status = 429, description = "Rate limited", body = Denial),
    ),
    security((), ("bearer" = []), ("api_key" = [])),
)]
#[allow(dead_code)]
pub(super) fn auth_with_path() {}

/// Whole seconds, at least one.
pub fn retry_after_value(wait: std::time::Duration) -> HeaderValue {
    HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// `POST /v1/keys/verify`, in the style of Unkey.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    key: String,
    service: Option<String>,
    scope: Option<String>,
    ip: Option<String>,
}

/// `POST /v1/keys/verify`: the verdict as JSON.
#[utoipa::path(
    post,
    path = "/v1/keys/verify",
    tag = "check",
    description = "Checks a key sent in the body and answers the verdict as JSON, \
        allowed or not.",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict", body = VerifyAnswer),
        (status = 400, description = "The body is not a verify request"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
pub async fn verify(State(state): State<AppState>, Json(body): Json<VerifyRequest>) -> Response {
    let request = CheckRequest {
        service: body.service,
        scope: body.scope,
        source_ip: body.ip,
        ..CheckRequest::default()
    };
    let evaluated = state.evaluate(Some(&body.key), &request).await;
    let verdict = &evaluated.verdict;
    let mut body = serde_json::to_value(verdict.view()).expect("a verdict serializes");
    // Unkey's name for the decision.
    body["valid"] = verdict.is_allow().into();
    let mut response = Json(body).into_response();
    if let Some(wait) = evaluated.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after_value(wait));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings::default()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        let s = settings();
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc")]), &s).as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  abc ")]), &s).as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "xyz")]), &s).as_deref(),
            Some("xyz")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic abc")]), &s),
            None
        );
        assert_eq!(presented_key(&headers(&[]), &s), None);
    }

    fn trusting_loopback() -> AuthSettings {
        AuthSettings {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..AuthSettings::default()
        }
    }

    #[test]
    fn the_client_ip_is_a_trusted_proxys_last_forwarded_entry() {
        let s = trusting_loopback();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let forged = headers(&[("x-forwarded-for", "6.6.6.6, 192.0.2.7")]);
        assert_eq!(client_ip(&forged, &s, peer).to_string(), "192.0.2.7");
        assert_eq!(
            client_ip(&headers(&[("x-real-ip", "10.0.0.1")]), &s, peer).to_string(),
            "10.0.0.1"
        );
        assert_eq!(client_ip(&headers(&[]), &s, peer), peer);
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let s = settings();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let forged = headers(&[
            ("x-forwarded-for", "10.9.9.9"),
            ("x-real-ip", "10.9.9.9"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(client_ip(&forged, &s, peer), peer);
        let uri: Uri = "/auth/admin/x".parse().unwrap();
        let request = check_request(&forged, &s, peer, &Method::DELETE, &uri);
        assert_eq!(
            (request.method.as_deref(), request.path.as_deref()),
            (Some("DELETE"), Some("/admin/x"))
        );
        // A v4-mapped v6 peer is the v4 address it maps.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(trusting_loopback().trusts(mapped));
    }

    #[test]
    fn envoy_paths_follow_the_prefix_and_proxy_headers_win() {
        let s = settings();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let uri: Uri = "/auth/api/v1/items?x=1".parse().unwrap();
        let request = check_request(&headers(&[]), &s, peer, &Method::DELETE, &uri);
        assert_eq!(request.path.as_deref(), Some("/api/v1/items?x=1"));
        assert_eq!(request.method.as_deref(), Some("DELETE"));
        let traefik = headers(&[("x-forwarded-method", "PUT"), ("x-forwarded-uri", "/t")]);
        let s = trusting_loopback();
        let request = check_request(&traefik, &s, peer, &Method::GET, &"/auth".parse().unwrap());
        assert_eq!(
            (request.method.as_deref(), request.path.as_deref()),
            (Some("PUT"), Some("/t"))
        );
    }
}
