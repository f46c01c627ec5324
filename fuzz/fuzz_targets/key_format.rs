//! The fuzz target for `bodies/key_format.rs`.
#![no_main]

#[path = "../bodies/key_format.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
