//! The middleware gate: composed in front of an app component. A request
//! the check allows goes to the app's `wasi:http/incoming-handler` as the
//! `virt` component re-makes it, with the check's headers (identity in, the
//! client's `X-Keyhost-*` and the key out); the app answers the host
//! directly.

use keyhost_core::gate::GateMode;
use keyhost_core::verdict::DenyCode;
use keyhost_gate_check::wasi::http::types::{Fields, IncomingRequest, ResponseOutparam};
use keyhost_gate_check::{Outcome, check, respond_deny};

wit_bindgen::generate!({
    path: "../wit",
    world: "middleware",
    with: {
        "wasi:http/types@0.2.12": keyhost_gate_check::wasi::http::types,
        "wasi:io/poll@0.2.12": keyhost_gate_check::wasi::io::poll,
        "wasi:io/error@0.2.12": keyhost_gate_check::wasi::io::error,
        "wasi:io/streams@0.2.12": keyhost_gate_check::wasi::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": keyhost_gate_check::wasi::clocks::monotonic_clock,
    },
    generate_all,
});

struct Gate;

impl exports::wasi::http::incoming_handler::Guest for Gate {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match keyhost_gate_check::settings().map(|s| &s.mode) {
            Ok(GateMode::Middleware) => {}
            Ok(GateMode::ReverseProxy(_)) => {
                return respond_deny(
                    out,
                    DenyCode::PolicyError,
                    "this gate was built for an upstream",
                );
            }
            Err(broken) => return respond_deny(out, DenyCode::PolicyError, &broken),
        }
        match check(&request) {
            Outcome::Allow(headers) => {
                let Ok(headers) = Fields::from_list(&headers) else {
                    return respond_deny(
                        out,
                        DenyCode::Denied,
                        "the request's headers cannot be handed on",
                    );
                };
                let (request, out) = keyhost::gate::hand_on::hand_on(request, headers, out);
                keyhost::app_http::incoming_handler::handle(request, out);
            }
            Outcome::Deny(code, reason) => respond_deny(out, code, &reason),
        }
    }
}

export!(Gate);
