//! What every keyhost gate shares, whatever it hands requests on to: the
//! data `keyhost gate build` baked in, the policy it was composed with, and
//! the check of one `wasi:http` request (read the key as `/auth` does, run
//! the core crate's pipeline, answer a refusal as `/auth` does).
//!
//! - `data`: the snapshot and settings, read from the support component;
//! - `policy`: the composed policy as the core crate's `Decider`;
//! - `request`: one request checked, and the answers a gate gives itself.
//!
//! The mode crates (`proxy`, `middleware`) reuse these bindings of the
//! host's HTTP types through wit-bindgen's `with`.

mod data;
mod policy;
mod request;

pub use data::settings;
pub use request::{NOT_HANDED_ON, Outcome, check, respond, respond_deny};

wit_bindgen::generate!({
    path: "../wit",
    world: "checker",
    generate_all,
    pub_export_macro: true,
});

keyhost_core::policy_conversions!(crate::keyhost::policy::types);
