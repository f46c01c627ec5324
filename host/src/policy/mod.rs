//! The policy engine: one wasmtime engine with the component model, the
//! sandbox a policy runs in, and compiled policies ready to instantiate.
//!
//! A [`Policy`] is compiled and pre-instantiated once; a [`PolicyInstance`]
//! holds a store. [`PolicySlot`] (slot.rs) reuses an instance for the checks
//! of one key only, and [`PolicyPool`] (pool.rs) keeps the slots that serve
//! requests. Each contract version has its own module of bindings
//! (`v0_1`, `v0_2`), `versions` picks a component's, and nothing generated
//! leaves them.
//!
//! - `keyhost_core::answer`: a policy's answer made safe to act on;
//! - `budget`: the memory a store may take;
//! - `cache`: compiled policies kept on disk;
//! - `contract`: what a component declares, read before linking;
//! - `fault`: why a call failed;
//! - `no_wait`: WASI waits that return at once;
//! - `sandbox`: the empty WASI context;
//! - `keyhost_core::text`: the sanitiser for text from a policy.

mod budget;
mod cache;
pub mod contract;
mod fault;
mod no_wait;
mod pool;
mod sandbox;
mod slot;
mod v0_1;
mod v0_2;
mod versions;

use keyhost_core::answer;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    Store, Trap, UpdateDeadline, WasmBacktrace,
};

pub use cache::CompiledCache;
pub use contract::Summary;
pub use fault::PolicyFault;
use keyhost_core::text::policy_text;
pub use pool::{InstanceGauges, PolicyPool};
pub use sandbox::{Sandbox, SandboxLimits};
pub use slot::PolicySlot;

use crate::check::CheckRequest;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::Decision;

/// The default policy, built from `plugin/default` by the build script.
pub const DEFAULT_POLICY: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_policy_default.wasm"
));

/// How often the engine's epoch advances: the unit of call timeouts, and
/// how long a policy runs before it yields (see [`Policy::instantiate`]).
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// One wasmtime engine and the linker that grants policies nothing.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: CompiledCache,
    limits: SandboxLimits,
}

impl PolicyEngine {
    /// An engine whose stores get `limits`, caching compiled policies in
    /// `cache`, for a process that checks once: each instance's memory and
    /// stack are mapped when it is made.
    pub fn new(cache: CompiledCache, limits: SandboxLimits) -> Result<PolicyEngine> {
        PolicyEngine::with(cache, limits, None)
    }

    /// [`PolicyEngine::new`] for a process that makes instance after
    /// instance (`serve`: one per key in turn): memories, tables and stacks
    /// come from wasmtime's pooling allocator, which keeps their mappings
    /// and resets them copy-on-write, instead of mapping and unmapping them
    /// each time.
    ///
    /// The pool reserves its address space up front (about 2 TiB, none of
    /// it resident); where that is refused (a `ulimit -v`), the engine maps
    /// instances one by one instead, and says so in the log.
    pub fn serving(cache: CompiledCache, limits: SandboxLimits) -> Result<PolicyEngine> {
        match PolicyEngine::with(cache.clone(), limits, Some(pooled(&limits))) {
            Ok(engine) => Ok(engine),
            Err(e) => {
                tracing::warn!(
                    "cannot reserve the policy instance pool, so each instance is mapped when it is made: {e:#}"
                );
                PolicyEngine::new(cache, limits)
            }
        }
    }

    fn with(
        cache: CompiledCache,
        limits: SandboxLimits,
        pool: Option<PoolingAllocationConfig>,
    ) -> Result<PolicyEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Deep recursion traps instead of exhausting the host's stack.
        config.max_wasm_stack(512 << 10);
        if let Some(pool) = pool {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            // A pooled stack goes from one store to the next: it is zeroed
            // between them, as a freshly mapped one would be.
            config.async_stack_zeroing(true);
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // WASI interfaces that language runtimes import link, but the context
        // behind them is empty (see sandbox.rs).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        no_wait::replace_waiting(&mut linker)?;
        start_epoch_ticker(&engine);
        Ok(PolicyEngine {
            engine,
            linker,
            cache,
            limits,
        })
    }

    /// Loads the policy embedded in the binary.
    pub fn load_default(&self) -> Result<Policy> {
        let label = "the built-in default policy";
        let mut digest = [0u8; 32];
        hex::decode_to_slice(env!("KEYHOST_DEFAULT_POLICY_SHA256"), &mut digest)
            .expect("build.rs writes a hex SHA-256");
        let component = self.compile(DEFAULT_POLICY, Some(digest), label)?;
        self.link(component, label)
    }

    /// Loads a policy component from a file.
    pub fn load_file(&self, path: &Path) -> Result<Policy> {
        let wasm = std::fs::read(path)
            .with_context(|| format!("cannot read policy {}", path.display()))?;
        self.load_bytes(&wasm, &path.display().to_string())
    }

    /// Compiles (or takes from the cache) and links a policy component.
    pub fn load_bytes(&self, wasm: &[u8], label: &str) -> Result<Policy> {
        let component = self.compile(wasm, None, label)?;
        self.link(component, label)
    }

    /// What a component file declares, and why keyhost would refuse to load
    /// it, if it would.
    pub fn inspect_file(&self, path: &Path) -> Result<(Summary, Option<String>)> {
        let wasm = std::fs::read(path)
            .with_context(|| format!("cannot read policy {}", path.display()))?;
        let label = path.display().to_string();
        let component = self.compile(&wasm, None, &label)?;
        let summary = Summary::of(&self.engine, &component);
        let refusal = self.link(component, &label).err().map(|e| format!("{e:#}"));
        Ok((summary, refusal))
    }

    /// The compiled component; `digest` is its SHA-256 when already known.
    fn compile(&self, wasm: &[u8], digest: Option<[u8; 32]>, label: &str) -> Result<Component> {
        contract::check_format(wasm).with_context(|| format!("cannot load policy {label}"))?;
        let digest = digest.unwrap_or_else(|| Sha256::digest(wasm).into());
        self.cache
            .load_or_compile(&self.engine, wasm, digest, label)
            .with_context(|| format!("cannot load policy {label}"))
    }

    fn link(&self, component: Component, label: &str) -> Result<Policy> {
        let spoken = Summary::of(&self.engine, &component)
            .spoken_version()
            .with_context(|| format!("policy {label} does not fit this keyhost"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {label} needs an import keyhost does not provide"))?;
        let pre = versions::Pre::new(instance_pre, spoken).with_context(|| {
            format!(
                "policy {label} does not export the keyhost:policy world (the validator \
                 interface's configure and validate)"
            )
        })?;
        Ok(Policy {
            inner: Arc::new(PolicyInner {
                engine: self.engine.clone(),
                pre,
                limits: self.limits,
                label: label.to_string(),
            }),
        })
    }
}

/// Policy instances a serving engine holds at once, busy and idle, across a
/// reload (an old pool's idle instances outlive it for a moment): twice a
/// pool's cap, and room to spare.
const POOLED_INSTANCES: u32 = 4 * pool::MAX_INSTANCES as u32;

/// How much of a pooled memory or table is reset in place between
/// instances (the rest is released and mapped afresh): a policy's memory
/// is about a megabyte, and rewriting it is cheaper than taking its page
/// faults again.
const KEEP_RESIDENT: usize = 2 << 20;
/// The same for a pooled stack, which a call touches only the top of.
const STACK_KEEP_RESIDENT: usize = 128 << 10;
/// Slots kept mapped for instances that are gone: bounds the memory a
/// burst leaves resident once its instances are dropped.
const WARM_SLOTS: u32 = 8;

/// The pooling allocator's bounds. Per instance they are the sandbox's own
/// (budget.rs), so a policy the sandbox takes, the pool takes. In all they
/// hold [`POOLED_INSTANCES`] instances of a usual policy, and twice a pool's
/// cap (a reload's overlap) at the sandbox's most memories each, with as
/// many tables; past them, an instance cannot be made and its check fails
/// closed. (At the most tables each, the tables alone would reserve
/// gigabytes.)
fn pooled(limits: &SandboxLimits) -> PoolingAllocationConfig {
    let at_most = 2 * pool::MAX_INSTANCES as u32 + 1;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        // A counter only: it reserves nothing.
        .total_core_instances(POOLED_INSTANCES * budget::MAX_INSTANCES as u32)
        .total_memories(at_most * budget::MAX_MEMORIES as u32)
        .total_tables(at_most * budget::MAX_MEMORIES as u32)
        .total_stacks(POOLED_INSTANCES)
        .max_core_instances_per_component(budget::MAX_INSTANCES as u32)
        .max_memories_per_component(budget::MAX_MEMORIES as u32)
        .max_tables_per_component(budget::MAX_TABLES as u32)
        .max_memories_per_module(budget::MAX_MEMORIES as u32)
        .max_tables_per_module(budget::MAX_TABLES as u32)
        .table_elements(sandbox::TABLE_ELEMENTS)
        .max_memory_size(limits.memory_bytes)
        // Room for components with many more functions than ours (today's
        // Python and JavaScript policies fit the defaults' 1 MiB of
        // instance metadata): these bound validation and reserve nothing.
        .max_component_instance_size(16 << 20)
        .max_core_instance_size(8 << 20)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT)
        .max_unused_warm_slots(WARM_SLOTS);
    pool
}

/// Advances the epoch on a background thread for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("keyhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

/// A compiled, linked policy. Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    engine: Engine,
    pre: versions::Pre,
    limits: SandboxLimits,
    label: String,
}

impl Policy {
    /// What the policy is called in messages: its path, or the built-in.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// A fresh instance, configured with `config`.
    ///
    /// Its calls are bounded by the epoch: at every tick the store yields
    /// (to the server's other requests, when a runtime polls it), and at the
    /// first tick past the call's timeout it traps, failing closed. One
    /// place owns that deadline: here.
    pub async fn instantiate(
        &self,
        config: &[(String, String)],
    ) -> Result<PolicyInstance, PolicyFault> {
        let inner = &self.inner;
        let mut store = Store::new(&inner.engine, Sandbox::new(&inner.limits));
        store.limiter(|sandbox| &mut sandbox.budget);
        // The deadline is the call's start plus its timeout, in real time:
        // a call that yields often (to many others) still ends on time.
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().call_deadline {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let timeout = inner.limits.call_timeout;
        arm(&mut store, timeout);
        let instance = inner
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| self.fault(e, "instantiation"))?;
        arm(&mut store, timeout);
        match instance.configure(&mut store, config).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(PolicyFault::RefusedConfiguration {
                    label: inner.label.clone(),
                    message: policy_text(&message),
                });
            }
            Err(e) => return Err(self.fault(e, "configure")),
        }
        Ok(PolicyInstance {
            policy: self.clone(),
            store,
            instance,
            timeout,
        })
    }

    fn fault(&self, error: wasmtime::Error, during: &str) -> PolicyFault {
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return PolicyFault::Busy {
                label: self.inner.label.clone(),
                max: POOLED_INSTANCES as usize,
            };
        }
        let reason = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("{during} ran out of time"),
            Some(Trap::StackOverflow) => format!("{during} overflowed its stack"),
            Some(trap) => format!("{during} trapped: {trap}"),
            // The cause first: the backtrace names functions the policy
            // chose, and may be long enough to be cut off.
            None => match error.downcast_ref::<WasmBacktrace>() {
                Some(backtrace) => format!(
                    "{during} failed: {}; {}",
                    error.root_cause(),
                    backtrace.to_string().trim()
                ),
                None => format!("{during} failed: {error:#}"),
            },
        };
        PolicyFault::Failed {
            label: self.inner.label.clone(),
            reason: policy_text(&reason),
        }
    }
}

/// A live instance of a policy with its own store.
pub struct PolicyInstance {
    policy: Policy,
    store: Store<Sandbox>,
    instance: versions::Instance,
    timeout: Duration,
}

impl PolicyInstance {
    /// Asks the policy for a decision on `key` of `identity` making
    /// `request` at `now`. After an `Err` the instance must not be used
    /// again: a trapped component instance cannot be re-entered.
    pub async fn validate(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        arm(&mut self.store, self.timeout);
        self.instance
            .validate(&mut self.store, key, identity, request, now)
            .await
            .map(answer::safe_decision)
            .map_err(|e| self.policy.fault(e, "validate"))
    }
}

/// Gives the next call in `store` until `timeout` from now; it yields at
/// every epoch tick until then, and traps at the first tick after.
fn arm(store: &mut Store<Sandbox>, timeout: Duration) {
    store.data_mut().call_deadline = Instant::now() + timeout;
    store.set_epoch_deadline(1);
}
