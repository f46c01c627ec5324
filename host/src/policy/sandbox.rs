//! What a policy may use: nothing. Each store gets an empty WASI context
//! (no preopened directory, no network, no environment, clocks stuck at
//! zero, waits that return at once: see no_wait.rs) and a budget of memory
//! and table elements for the whole instance (budget.rs).

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::budget::InstanceBudget;

/// Limits on one policy instance.
#[derive(Clone, Copy, Debug)]
pub struct SandboxLimits {
    /// The most linear memory an instance may have, in bytes, all its
    /// memories together.
    pub memory_bytes: usize,
    /// How long one call into the policy may run.
    pub call_timeout: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(250),
        }
    }
}

/// Table elements (function references) an instance may have in all.
pub(super) const TABLE_ELEMENTS: usize = 100_000;

/// The per-store state of a policy instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) budget: InstanceBudget,
    /// When the call under way runs out of time (see `Policy::instantiate`).
    pub(super) call_deadline: Instant,
}

/// A clock that always reads zero: the time comes in the request instead.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl Sandbox {
    /// A sandbox with `limits` and an empty WASI context.
    pub fn new(limits: &SandboxLimits) -> Sandbox {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(StoppedClock)
            .monotonic_clock(StoppedClock)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            budget: InstanceBudget::new(limits.memory_bytes, TABLE_ELEMENTS),
            call_deadline: Instant::now(),
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
