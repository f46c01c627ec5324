//! One request: read the key and what the request asks for, and check it;
//! and the answers a gate gives itself.

use keyhost_core::check::{self, CheckRequest};
use keyhost_core::gate::GateSettings;
use keyhost_core::http;
use keyhost_core::lookup::Lookup;
use keyhost_core::verdict::{DenyCode, Verdict};

use crate::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::{data, policy};

/// What a gate does with a request.
pub enum Outcome {
    /// Hand it on with these headers: its own, less any `X-Keyhost-*`, the
    /// key and hop-by-hop ones, plus the identity headers.
    Allow(Vec<(String, Vec<u8>)>),
    /// Answer this refusal.
    Deny(DenyCode, String),
}

/// Headers that belong to one connection, or that `wasi:http` sets itself.
pub const NOT_HANDED_ON: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "http2-settings",
];

/// Checks `request`.
pub fn check(request: &IncomingRequest) -> Outcome {
    let headers = request.headers().entries();
    // The first line of a header for the key; the last for the client's
    // address, which a proxy in front appends (entries before it, on that
    // line or others, can come from the client).
    let first = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    };
    let last = |name: &str| {
        headers
            .iter()
            .rfind(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    };
    if !request
        .path_with_query()
        .is_some_and(|path| http::is_plain_path(&path))
    {
        return Outcome::Deny(
            DenyCode::Denied,
            "the path has a `.` or `..` segment, or does not start with `/`".into(),
        );
    }
    let verdict = data::settings().and_then(|settings| verdict(request, settings, first, last));
    match verdict {
        Ok(Verdict::Allow { key, info }) => {
            let mut handed_on: Vec<(String, Vec<u8>)> = headers
                .iter()
                .filter(|(name, _)| handed_on(name))
                .cloned()
                .collect();
            handed_on.extend(
                http::identity_headers(&key, &info)
                    .into_iter()
                    .map(|(name, value)| (name, value.into_bytes())),
            );
            Outcome::Allow(handed_on)
        }
        Ok(Verdict::Deny { code, reason, .. }) => Outcome::Deny(code, reason),
        Err(broken) => {
            // The detail goes to the host's log, not to whoever sent the
            // request: it can quote the registry's settings.
            eprintln!("keyhost gate: {broken}");
            Outcome::Deny(
                DenyCode::PolicyError,
                "the gate cannot decide: its policy or its snapshot failed".into(),
            )
        }
    }
}

fn handed_on(name: &str) -> bool {
    !(http::is_identity_header(name)
        || http::is_key_header(name)
        || NOT_HANDED_ON
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop)))
}

/// The check, as `/auth` makes it. The service and scope are the build's
/// settings, never the client's; the client's address comes only from the
/// header the build named.
fn verdict<'r>(
    request: &IncomingRequest,
    settings: &GateSettings,
    header: impl Fn(&str) -> Option<&'r str>,
    last_header: impl Fn(&str) -> Option<&'r str>,
) -> Result<Verdict, String> {
    let snapshot = data::snapshot()?;
    let check_request = CheckRequest {
        service: settings.service.clone(),
        scope: settings.scope.clone(),
        source_ip: settings
            .client_ip_header
            .as_deref()
            .and_then(|name| last_address(last_header(name)?)),
        method: Some(method_name(&request.method())),
        path: request.path_with_query(),
        attributes: Vec::new(),
        now: None,
    };
    let Some(key) = http::presented_key(&header) else {
        return Ok(Verdict::deny(
            DenyCode::NotFound,
            "no API key in the request",
            None,
        ));
    };
    policy::configured(|| snapshot.policy_config())?;
    check::check(snapshot, &mut policy::Policy, key, &check_request).map_err(|e| format!("{e:#}"))
}

/// The last entry of a forwarding header (the one the trusted proxy wrote;
/// entries to its left come from the client), if it is an address.
fn last_address(value: &str) -> Option<String> {
    let last = value.rsplit(',').next()?.trim();
    last.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical().to_string())
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
    .to_string()
}

/// Answers a refusal as `/auth` does: 401 with a challenge for a missing,
/// malformed or unknown key, 403 (or 429) otherwise, and a JSON body.
pub fn respond_deny(out: ResponseOutparam, code: DenyCode, reason: &str) {
    let status = http::deny_status(code);
    let mut headers = vec![("content-type".to_string(), b"application/json".to_vec())];
    if status == 401 {
        headers.push((
            "www-authenticate".to_string(),
            http::challenge(code).into_bytes(),
        ));
    }
    respond(
        out,
        status,
        headers,
        http::deny_body(code, reason).as_bytes(),
    );
}

/// Answers with `status`, `headers` and a whole `body`.
pub fn respond(out: ResponseOutparam, status: u16, headers: Vec<(String, Vec<u8>)>, body: &[u8]) {
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // blocking-write-and-flush takes at most 4096 bytes at a time.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
