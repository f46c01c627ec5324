//! keyhost: API keys in a TOML registry, checked by a WebAssembly policy.
//!
//! - [`key_format`]: the secret's format and checksum;
//! - [`registry`]: the registry's model, durable writes and hash index;
//! - [`lifecycle`]: the ownership and state rules every caller meets;
//! - [`fields`]: the checks every written text field passes;
//! - [`ceiling`]: what a key may grant through the management API;
//! - [`policy`]: the wasmtime engine, sandbox and compiled-policy cache;
//! - [`check`]: the check pipeline;
//! - [`counters`]: rate-limit windows and usage, local or shared in Redis;
//! - [`scan`]: finding leaked keys in text;
//! - [`cli`]: the `keyhost` command.

pub mod ceiling;
pub mod check;
pub mod cli;
pub mod conformance;
pub mod counters;
pub mod demo;
pub mod durable;
pub mod fields;
pub mod iam;
pub mod key_format;
pub mod lifecycle;
pub mod native;
pub mod net;
pub mod policy;
pub mod ratelimit;
pub mod registry;
pub mod scan;
pub mod serve;
pub mod synthetic;
pub mod time;
pub mod usage;
pub mod views;
