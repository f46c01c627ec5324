//! The fuzz target for `bodies/registry_load.rs`.
#![no_main]

#[path = "../bodies/registry_load.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
