//! keyhost: API keys in a TOML registry, checked by a WebAssembly policy.
//!
//! The design the modules follow is in `docs/src/design.md`. Every module:
//!
//! - [`key_format`]: the secret's format and checksum;
//! - [`iam`]: IAM ids and the four kinds of key;
//! - [`registry`]: the registry's model, how a large one is read (in
//!   batches), durable writes, and the lookups a check reads (the loaded
//!   registry and the compact on-disk index);
//! - [`side_files`]: every file kept beside a registry or in the cache;
//! - [`durable`]: lock, temporary file, fsync, rename, fsync the folder;
//! - [`progress`]: a bar and a log line for work on large registries;
//! - [`lifecycle`]: the ownership and state rules every caller meets;
//! - [`fields`]: the checks every written text field passes;
//! - [`ceiling`]: what a key may grant through the management API;
//! - [`time`]: times (RFC 3339 outside, Unix seconds inside) and durations;
//! - [`ratelimit`]: per-key rate limits;
//! - [`net`]: CIDR parsing;
//! - [`verdict`]: the host's decision types;
//! - [`check`]: the check pipeline;
//! - [`policy`]: the wasmtime engine, sandbox, contract versions,
//!   compiled-policy cache and instance pool;
//! - [`conformance`]: the vectors every policy is held to;
//! - [`counters`]: rate-limit windows and usage, local or shared in Redis;
//! - [`usage`]: last use and use count per key;
//! - [`activity`]: the report of keys and identities gone unused;
//! - [`views`]: what people and programs are shown of keys (no secrets);
//! - [`token`]: access tokens exchanged for keys, and their signing keys;
//! - [`scan`]: finding leaked keys in text;
//! - [`import`]: reading keys made elsewhere (CSV, JSON) for `keyhost import`;
//! - [`serve`]: the HTTP service;
//! - [`demo`]: the walk-through `keyhost demo` prints;
//! - [`gate`]: `keyhost gate build`, the check as a wasi:http component;
//! - [`export`]: the proxy filters built in, and their configurations;
//! - [`replicas`]: the credentials proxy filters fetch snapshots with;
//! - [`cli`]: the `keyhost` command;
//! - `native` and `synthetic` (feature `bench-support`): the default rules
//!   compiled in, and generated registries, for benchmarks and tests.
#![deny(missing_docs)]

pub mod activity;
pub mod ceiling;
pub mod check;
pub mod cli;
pub mod conformance;
pub mod counters;
pub mod demo;
pub mod durable;
pub mod export;
pub mod fields;
pub mod gate;
pub mod import;
pub mod lifecycle;
#[cfg(feature = "bench-support")]
pub mod native;
pub mod net;
pub mod policy;
pub mod progress;
pub mod ratelimit;
pub mod registry;
pub mod replicas;
pub mod scan;
pub mod serve;
pub mod side_files;
#[cfg(any(test, feature = "bench-support"))]
pub mod synthetic;
pub mod token;
pub mod usage;
pub mod views;

pub use keyhost_core::{iam, key_format, time, verdict};
