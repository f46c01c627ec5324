//! What a policy may use: nothing. Each store gets an empty WASI context
//! (no preopened directory, no network, no environment, clocks stuck at
//! zero) and limits on memory and time.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Limits on one policy instance.
#[derive(Clone, Copy, Debug)]
pub struct SandboxLimits {
    /// The most linear memory an instance may have, in bytes.
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

/// The per-store state of a policy instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
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
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
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
