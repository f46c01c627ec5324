//! keyhost's integration tests, as one test binary: each module links the
//! library, wasmtime and axum once instead of once per file.
//!
//! Most drive the real `keyhost` binary (see `support`); the proxy and
//! replica tests start real nginx and redis-server on loopback ports, and the
//! console's tests a real headless Chromium.

mod support;

mod activity;
mod authoring;
mod changes;
mod console;
mod contract;
mod docs;
mod durability;
mod engine;
mod entity_tags;
mod filters;
mod fuzz_corpora;
mod gate;
mod getting_started;
mod github_leaks;
mod hardening;
mod hostile;
mod import;
mod kinds;
mod languages;
mod lifecycle;
mod openapi;
mod replicas;
mod rules;
mod sandbox;
mod serve;
mod snapshot;
mod tokens;
