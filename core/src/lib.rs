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
//! - [`replica_proof`]: how a replica fetching snapshots and serve prove
//!   themselves to each other;
//! - [`text`]: the sanitiser for text that comes from a policy;
//! - [`verdict`]: the decision types;
//! - [`answer`]: a policy's answer made safe to act on;
//! - [`policy_types`]: records into the policy contract's types and back;
//! - [`check`]: the check pipeline;
//! - [`gate`]: the settings a gate component is built with;
//! - [`http`]: where a request carries its key, and what a verdict answers;
//! - [`request`]: one request checked in place, by the gate and the filters.
#![deny(missing_docs)]

pub mod answer;
pub mod check;
pub mod gate;
pub mod http;
pub mod iam;
pub mod key_format;
pub mod key_hash;
pub mod lookup;
pub mod policy_types;
pub mod rate_limit;
pub mod record;
pub mod replica_proof;
pub mod request;
pub mod snapshot;
pub mod text;
pub mod time;
pub mod verdict;
