//! WASI without waiting. Epoch interruption, which bounds a call's time,
//! fires only while wasm code runs: a policy that slept in a host call
//! (`wasi:io/poll`'s `poll`, or a clock's pollable and `block`) held the
//! check, the request and even a reload for as long as it asked.
//!
//! In the sandbox the clocks read zero and nothing outside can be reached,
//! so there is nothing worth waiting for: `pollable.block` returns at once
//! and `poll` reports every pollable ready. A policy that keeps polling
//! spins in wasm code, where the call timeout stops it.

use wasmtime::component::{Linker, Resource};
use wasmtime::{Result, bail};
use wasmtime_wasi::p2::DynPollable;

use super::sandbox::Sandbox;

/// The `wasi:io/poll` instance as `wasmtime_wasi::p2::add_to_linker_async`
/// names it; components importing any 0.2.x version link to it. If
/// wasmtime-wasi moves to another version, the sleeping policies of
/// tests/it/hostile.rs fail.
const POLL_INSTANCE: &str = "wasi:io/poll@0.2.12";

/// Replaces the waiting functions of `wasi:io/poll` that the WASI linker
/// added with ones that never wait.
pub fn replace_waiting(linker: &mut Linker<Sandbox>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INSTANCE)?;
    poll.func_wrap(
        "poll",
        |_, (pollables,): (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
            if pollables.is_empty() {
                bail!("empty poll list");
            }
            Ok(((0..pollables.len() as u32).collect(),))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_, (_pollable,): (Resource<DynPollable>,)| -> wasmtime::Result<()> { Ok(()) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
