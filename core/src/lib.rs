//! keyhost's core: what every reader of a registry shares, with no wasmtime
//! in it, so that it builds for wasm32 as well. The host, the gate
//! component and the proxy filters all check keys with this code.
//!
//! - [`key_format`]: the secret's format and checksum;
//! - [`iam`]: IAM ids and the four kinds of key;
//! - [`time`]: times (RFC 3339 outside, Unix seconds inside) and durations;
//! - [`rate_limit`]: the text form of a per-key rate limit;
//! - [`key_hash`], [`record`]: what the registry keeps about keys and
//!   identities;
//! - [`lookup`]: finding a key by the hash of its secret;
//! - [`snapshot`]: the registry snapshot every other reader reads;
//! - [`text`]: the sanitiser for text that comes from a policy;
//! - [`verdict`]: the decision types;
//! - [`check`]: the check pipeline;
//! - [`http`]: where a request carries its key, and what a verdict answers.
#![deny(missing_docs)]

pub mod check;
pub mod http;
pub mod iam;
pub mod key_format;
pub mod key_hash;
pub mod lookup;
pub mod rate_limit;
pub mod record;
pub mod snapshot;
pub mod text;
pub mod time;
pub mod verdict;
