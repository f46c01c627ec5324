//! The gate: keyhost's check as a `wasi:http` component. For each request
//! it reads the key as `/auth` does, checks it with the core crate's
//! pipeline against the registry snapshot, asks the policy it was composed
//! with, and either answers the refusal itself or hands the request on
//! with the identity headers, the client's own `X-Keyhost-*` removed.
//!
//! - `data`: the snapshot and settings, read from the data component;
//! - `policy`: the composed policy as the core crate's `Decider`;
//! - `gate`: reading a request and deciding on it;
//! - `forward`: handing an allowed request to the upstream.

mod data;
mod forward;
mod gate;
mod policy;

wit_bindgen::generate!({
    path: "wit",
    world: "reverse-proxy",
    generate_all,
});

struct Component;

impl exports::wasi::http::incoming_handler::Guest for Component {
    fn handle(
        request: wasi::http::types::IncomingRequest,
        out: wasi::http::types::ResponseOutparam,
    ) {
        gate::handle(request, out);
    }
}

export!(Component);
