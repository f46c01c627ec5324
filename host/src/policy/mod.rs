//! The policy engine: one wasmtime engine with the component model, the
//! sandbox a policy runs in, and compiled policies ready to instantiate.
//!
//! A [`Policy`] is compiled and pre-instantiated once; a [`PolicyInstance`]
//! holds a store. [`PolicySlot`] reuses an instance for the checks of one
//! key only: a check of another key, or a call that failed, gets a fresh
//! instance, so nothing a policy keeps can reach another caller.

mod answer;
pub mod bindings;
mod budget;
mod cache;
pub mod contract;
mod no_wait;
mod sandbox;
mod text;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap, WasmBacktrace};

pub use cache::{CompiledCache, cache_root};
pub use contract::Summary;
pub use sandbox::{Sandbox, SandboxLimits};
use text::policy_text;

use bindings::{Decision, Identity, KeyRecord, PolicyPre, Request};

/// The default policy, built from `plugin/default` by the build script.
pub const DEFAULT_POLICY: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_policy_default.wasm"
));

/// How often the engine's epoch advances; the unit of call timeouts.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// One wasmtime engine and the linker that grants policies nothing.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: CompiledCache,
    limits: SandboxLimits,
}

impl PolicyEngine {
    pub fn new(cache: CompiledCache, limits: SandboxLimits) -> Result<PolicyEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Deep recursion traps instead of exhausting the host's stack.
        config.max_wasm_stack(512 << 10);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // WASI interfaces that language runtimes import link, but the context
        // behind them is empty (see sandbox.rs).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
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
        Summary::of(&self.engine, &component)
            .check_contract()
            .with_context(|| format!("policy {label} does not fit this keyhost"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {label} needs an import keyhost does not provide"))?;
        let pre = PolicyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "policy {label} does not export the keyhost:policy world (configure, validate)"
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
    pre: PolicyPre<Sandbox>,
    limits: SandboxLimits,
    label: String,
}

/// Why a call into a policy failed. The check fails closed on any of them.
/// The texts have been through the sanitiser.
#[derive(Clone, Debug, thiserror::Error)]
#[error("policy {label}: {reason}")]
pub struct PolicyFault {
    pub label: String,
    pub reason: String,
    /// The policy ran and returned this error from `configure`: it refuses
    /// the registry's `[policy.config]` rather than failing.
    pub refused_configuration: Option<String>,
}

impl Policy {
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// A fresh instance, configured with `config`.
    pub fn instantiate(&self, config: &[(String, String)]) -> Result<PolicyInstance, PolicyFault> {
        let inner = &self.inner;
        let mut store = Store::new(&inner.engine, Sandbox::new(&inner.limits));
        store.limiter(|sandbox| &mut sandbox.budget);
        let ticks = (inner.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        let bindings = inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.fault(e, "instantiation"))?;
        store.set_epoch_deadline(ticks);
        let pairs: Vec<(&str, &str)> = config
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        match bindings.call_configure(&mut store, &pairs) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                let message = policy_text(&message);
                return Err(PolicyFault {
                    label: inner.label.clone(),
                    reason: format!("refused its configuration: {message}"),
                    refused_configuration: Some(message),
                });
            }
            Err(e) => return Err(self.fault(e, "configure")),
        }
        Ok(PolicyInstance {
            policy: self.clone(),
            store,
            bindings,
            ticks,
        })
    }

    fn fault(&self, error: wasmtime::Error, during: &str) -> PolicyFault {
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
        PolicyFault {
            label: self.inner.label.clone(),
            reason: policy_text(&reason),
            refused_configuration: None,
        }
    }
}

/// A live instance of a policy with its own store.
pub struct PolicyInstance {
    policy: Policy,
    store: Store<Sandbox>,
    bindings: bindings::Policy,
    ticks: u64,
}

impl PolicyInstance {
    /// Asks the policy for a decision. After an `Err` the instance must not
    /// be used again: a trapped component instance cannot be re-entered.
    pub fn validate(
        &mut self,
        key: KeyRecord<'_>,
        identity: Identity<'_>,
        request: Request<'_>,
    ) -> Result<Decision, PolicyFault> {
        self.store.set_epoch_deadline(self.ticks);
        self.bindings
            .call_validate(&mut self.store, key, identity, request)
            .map(answer::safe_decision)
            .map_err(|e| self.policy.fault(e, "validate"))
    }
}

/// A policy with its configuration and, once used, an instance. An instance
/// serves one caller (one key): a check of another key, or a call that
/// failed, drops it and the call gets a new one.
pub struct PolicySlot {
    policy: Policy,
    config: Vec<(String, String)>,
    instance: Option<PolicyInstance>,
    /// The key id the instance has served, if it has served one.
    caller: Option<String>,
}

impl PolicySlot {
    pub fn new(policy: Policy, config: Vec<(String, String)>) -> PolicySlot {
        PolicySlot {
            policy,
            config,
            instance: None,
            caller: None,
        }
    }

    /// The key id the slot's instance has served; `None` when it is fresh.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// Instantiates and configures the policy now rather than at the first
    /// check, so a policy that cannot start is found out early.
    pub fn warm(&mut self) -> Result<(), PolicyFault> {
        if self.instance.is_none() {
            self.instance = Some(self.policy.instantiate(&self.config)?);
        }
        Ok(())
    }

    pub fn validate(
        &mut self,
        key: KeyRecord<'_>,
        identity: Identity<'_>,
        request: Request<'_>,
    ) -> Result<Decision, PolicyFault> {
        if self
            .caller
            .as_deref()
            .is_some_and(|caller| caller != key.id)
        {
            self.instance = None;
            self.caller = None;
        }
        self.warm()?;
        let instance = self.instance.as_mut().expect("warm() made an instance");
        self.caller = Some(key.id.to_string());
        let result = instance.validate(key, identity, request);
        if result.is_err() {
            self.instance = None;
            self.caller = None;
        }
        result
    }
}
