//! The fuzz target for `bodies/auth_headers.rs`.
#![no_main]

#[path = "../bodies/auth_headers.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
