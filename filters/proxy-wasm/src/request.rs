//! One request: checked against the snapshot in force, then handed on
//! with the identity headers, or answered as `/auth` answers.

use std::cell::RefCell;
use std::rc::Rc;

use keyhost_core::http;
use keyhost_core::request::{Checking, Seen};
use keyhost_filter::{Held, Outcome, Policy};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

pub struct Request<P> {
    pub checking: Rc<Checking>,
    /// Whether Envoy's `source.address` is the client's.
    pub trust_source_address: bool,
    pub held: Rc<RefCell<Held<P>>>,
}

impl<P: Policy> Context for Request<P> {}

impl<P: Policy> HttpContext for Request<P> {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // As bytes: a value that is not UTF-8 is an attacker's to send, and
        // the SDK's string getters panic on one.
        let headers: Vec<(String, Vec<u8>)> = self.get_http_request_headers_bytes();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, value)| std::str::from_utf8(value).ok())
        };
        // The downstream peer as Envoy reckons it: the connection's peer
        // with `use_remote_address: true`, else X-Forwarded-For's, which is
        // why it is read only when the configuration says to trust it.
        let peer = if self.trust_source_address {
            self.get_property(vec!["source", "address"])
                .and_then(|address| String::from_utf8(address).ok())
        } else {
            None
        };
        let seen = Seen {
            headers: &headers,
            method: pseudo(":method"),
            path: pseudo(":path"),
            peer: peer.as_deref(),
            now: None,
        };
        let outcome = self.held.borrow_mut().check(&self.checking, seen);
        match outcome {
            Outcome::Allow { remove, add } => {
                for name in &remove {
                    self.set_http_request_header(name, None);
                }
                // Added, not set: every header of these names (in any
                // spelling) was just removed, and an add is the cheaper
                // call.
                for (name, value) in add.iter() {
                    self.add_http_request_header(name, value);
                }
                Action::Continue
            }
            Outcome::Deny { refusal, log } => {
                if let Some(log) = log {
                    let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &format!("keyhost: {log}"));
                }
                if peer.is_none()
                    && self.checking.client_ip_header.is_none()
                    && refusal.body.contains("\"ip_not_allowed\"")
                {
                    hint_untrusted_address();
                }
                let headers: Vec<(&str, &str)> = refusal
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                self.send_http_response(
                    u32::from(refusal.status),
                    headers,
                    Some(refusal.body.as_bytes()),
                );
                Action::Pause
            }
        }
    }

    /// Trailers come after the body, long after the check: a client's
    /// `X-Keyhost-*` or key among them is removed as it is from the
    /// headers, for upstreams that read trailers as headers.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        for (name, _) in self.get_http_request_trailers_bytes() {
            if http::is_identity_header(&name) || self.checking.is_key_header(&name) {
                self.set_http_request_trailer(&name, None);
            }
        }
        Action::Continue
    }
}

thread_local! {
    static HINTED_ADDRESS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Says once per VM why keys bound to addresses are all refused: the
/// filter was given no address to believe.
fn hint_untrusted_address() {
    if !HINTED_ADDRESS.with(|hinted| hinted.replace(true)) {
        let _ = proxy_wasm::hostcalls::log(
            LogLevel::Warn,
            "keyhost: a key bound to addresses was refused because this filter knows no client address: \
             set trust_source_address (keyhost export envoy --trust-source-address) with Envoy's \
             use_remote_address, or client_ip_header naming a header a proxy in front sets",
        );
    }
}
