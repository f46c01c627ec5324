//! One request: read the key and what the request asks for, and check it;
//! and the answers a gate gives itself.

use keyhost_core::http;
use keyhost_core::lookup::Lookup;
use keyhost_core::request::{self, Seen};
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
    if !request
        .path_with_query()
        .is_some_and(|path| http::is_plain_path(&path))
    {
        return Outcome::Deny(DenyCode::Denied, http::NOT_PLAIN_PATH.into());
    }
    let verdict = data::settings().and_then(|settings| {
        let snapshot = data::snapshot()?;
        policy::configured(|| snapshot.policy_config())?;
        let method = method_name(&request.method());
        let path = request.path_with_query();
        let seen = Seen {
            headers: &headers,
            method: Some(&method),
            path: path.as_deref(),
            // wasi:http does not give the peer's address.
            peer: None,
            now: None,
        };
        request::verdict(snapshot, &mut policy::Policy, &settings.checking, seen)
            .map_err(|e| format!("{e:#}"))
    });
    match verdict {
        Ok(Verdict::Allow { key, info }) => {
            let checking = data::settings().map(|s| &s.checking).ok();
            let mut handed_on: Vec<(String, Vec<u8>)> = headers
                .iter()
                .filter(|(name, _)| {
                    handed_on(name) && !checking.is_some_and(|c| c.is_key_header(name))
                })
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

/// Answers a refusal as `/auth` does.
pub fn respond_deny(out: ResponseOutparam, code: DenyCode, reason: &str) {
    let refusal = request::refusal(code, reason);
    let headers = refusal
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    respond(out, refusal.status, headers, refusal.body.as_bytes());
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
