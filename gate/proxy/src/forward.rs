//! Handing an allowed request to the upstream through
//! `wasi:http/outgoing-handler`, and its answer back, both streamed.

use keyhost_core::gate::Upstream;
use keyhost_core::verdict::DenyCode;
use keyhost_gate_check::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use keyhost_gate_check::wasi::io::streams::{InputStream, OutputStream, StreamError};
use keyhost_gate_check::{NOT_HANDED_ON, respond, respond_deny};

use crate::wasi::http::outgoing_handler;

/// Forwards `request` to `upstream` with `headers` (the check's), and
/// streams the answer to `out`.
pub fn forward(
    request: IncomingRequest,
    headers: &[(String, Vec<u8>)],
    upstream: &Upstream,
    out: ResponseOutparam,
) {
    let Ok(fields) = Fields::from_list(headers) else {
        return respond_deny(
            out,
            DenyCode::Denied,
            "the request's headers cannot be forwarded",
        );
    };
    let outgoing = OutgoingRequest::new(fields);
    let path = format!(
        "{}{}",
        upstream.base_path,
        request.path_with_query().unwrap_or_else(|| "/".into())
    );
    let scheme = if upstream.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let settable = outgoing.set_method(&request.method()).is_ok()
        && outgoing.set_scheme(Some(&scheme)).is_ok()
        && outgoing.set_authority(Some(&upstream.authority)).is_ok()
        && outgoing.set_path_with_query(Some(&path)).is_ok();
    if !settable {
        return respond_deny(out, DenyCode::Denied, "the request cannot be forwarded");
    }
    let Ok(outgoing_body) = outgoing.body() else {
        return bad_gateway(out, "no request body");
    };
    let future = match outgoing_handler::handle(outgoing, None) {
        Ok(future) => future,
        Err(e) => return bad_gateway(out, &format!("{e:?}")),
    };
    // The request body goes on while the upstream answers.
    if let Ok(incoming_body) = request.consume()
        && let (Ok(from), Ok(to)) = (incoming_body.stream(), outgoing_body.write())
    {
        copy(&from, &to);
        drop((from, to));
        drop(IncomingBody::finish(incoming_body));
    }
    if OutgoingBody::finish(outgoing_body, None).is_err() {
        return bad_gateway(out, "the request body could not be sent");
    }
    let answer = loop {
        match future.get() {
            Some(answer) => break answer,
            None => future.subscribe().block(),
        }
    };
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return bad_gateway(out, &format!("{e:?}")),
        Err(()) => return bad_gateway(out, "the upstream's answer was taken twice"),
    };
    let back: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| {
            !NOT_HANDED_ON
                .iter()
                .any(|hop| name.eq_ignore_ascii_case(hop))
        })
        .collect();
    let answer = OutgoingResponse::new(Fields::from_list(&back).unwrap_or_else(|_| Fields::new()));
    let _ = answer.set_status_code(response.status());
    let Ok(answer_body) = answer.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(answer));
    if let Ok(upstream_body) = response.consume()
        && let (Ok(from), Ok(to)) = (upstream_body.stream(), answer_body.write())
    {
        copy(&from, &to);
        drop((from, to));
        drop(IncomingBody::finish(upstream_body));
    }
    let _ = OutgoingBody::finish(answer_body, None);
}

/// Copies until `from` ends.
fn copy(from: &InputStream, to: &OutputStream) {
    loop {
        match to.blocking_splice(from, 64 * 1024) {
            Ok(_) => {}
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => break,
        }
    }
    let _ = to.blocking_flush();
}

/// A 502; what went wrong goes to the host's log, not to the client.
fn bad_gateway(out: ResponseOutparam, why: &str) {
    eprintln!("keyhost gate: the upstream failed: {why}");
    let body = serde_json::json!({
        "error": "bad_gateway",
        "reason": "the upstream could not be reached",
    })
    .to_string();
    respond(
        out,
        502,
        vec![("content-type".into(), b"application/json".to_vec())],
        body.as_bytes(),
    );
}
