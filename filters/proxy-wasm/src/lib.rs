//! keyhost's check inside a proxy-wasm host (Envoy): a root context per VM
//! that holds the snapshot and the policy, and an HTTP context per request
//! that checks it with no hop and no wait.
//!
//! - `root`: the configuration, and the snapshot: inline, or fetched from
//!   `keyhost serve` on a timer by one VM and shared with the others;
//! - `request`: one request checked, and handed on or answered.
//!
//! A policy crate becomes a filter through the SDK: `plugin/sdk`'s
//! `proxy-wasm` feature turns its `export!` into a call to [`start`].

mod request;
mod root;

pub use proxy_wasm;

use keyhost_filter::Policy;

/// Starts the filter around policy `P`. Called once, from the module's
/// `_initialize` (`proxy_wasm::main!`).
pub fn start<P: Policy + Default + 'static>() {
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::<P>::default()));
}
