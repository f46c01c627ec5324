//! The reverse-proxy gate: a request the check allows goes on to the
//! upstream URL `keyhost gate build --upstream` named, through
//! `wasi:http/outgoing-handler`; its answer comes back as it is.

mod forward;

use keyhost_core::gate::GateMode;
use keyhost_core::verdict::DenyCode;
use keyhost_gate_check::{Outcome, check, respond_deny};

wit_bindgen::generate!({
    path: "../wit",
    world: "reverse-proxy",
    with: {
        "wasi:http/types@0.2.12": keyhost_gate_check::wasi::http::types,
        "wasi:io/poll@0.2.12": keyhost_gate_check::wasi::io::poll,
        "wasi:io/error@0.2.12": keyhost_gate_check::wasi::io::error,
        "wasi:io/streams@0.2.12": keyhost_gate_check::wasi::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": keyhost_gate_check::wasi::clocks::monotonic_clock,
    },
    generate_all,
});

use keyhost_gate_check::wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Gate;

impl exports::wasi::http::incoming_handler::Guest for Gate {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let upstream = match keyhost_gate_check::settings().map(|s| &s.mode) {
            Ok(GateMode::ReverseProxy(upstream)) => upstream,
            Ok(GateMode::Middleware) => {
                return respond_deny(out, DenyCode::PolicyError, "this gate was built for an app");
            }
            Err(broken) => return respond_deny(out, DenyCode::PolicyError, &broken),
        };
        match check(&request) {
            Outcome::Allow(headers) => forward::forward(request, &headers, upstream, out),
            Outcome::Deny(code, reason) => respond_deny(out, code, &reason),
        }
    }
}

export!(Gate);
