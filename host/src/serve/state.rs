//! What the server shares between requests: the live registry and policy,
//! which reloads swap whole, and the counters requests update.
//!
//! A check takes `Arc`s to the registry and policy it starts with, so a
//! swap never disturbs a check in flight: it finishes on the old ones.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::decision_log::DecisionLog;
use super::metrics::Metrics;
use super::pool::PolicyPool;
use crate::check::{CheckRequest, Checker, Verdict};
use crate::policy::bindings::DenyCode;
use crate::policy::{Policy, PolicyEngine};
use crate::ratelimit::{Buckets, RateLimit};
use crate::registry::RegistryFile;
use crate::time::Timestamp;
use crate::usage::UsageTracker;

/// Where the policy comes from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    BuiltIn,
    File(PathBuf),
}

/// A verdict, and how long to wait when it is `rate_limited`.
pub struct Evaluated {
    pub verdict: Verdict,
    pub retry_after: Option<Duration>,
}

pub struct Shared {
    pub registry_file: RegistryFile,
    registry: RwLock<Arc<Checker>>,
    policy: RwLock<Arc<PolicyPool>>,
    pub policy_source: PolicySource,
    engine: PolicyEngine,
    usage: UsageTracker,
    buckets: Buckets,
    pub metrics: Metrics,
    decisions: Option<DecisionLog>,
    /// Serialises reloads, so two never interleave.
    reloading: Mutex<()>,
}

impl Shared {
    pub fn new(
        registry_file: RegistryFile,
        engine: PolicyEngine,
        policy_source: PolicySource,
        usage: UsageTracker,
        decisions: Option<DecisionLog>,
    ) -> Result<Shared> {
        let registry = registry_file.load()?;
        let policy = load_policy(&engine, &policy_source)?;
        let metrics = Metrics::new();
        let pool = PolicyPool::configured(
            policy,
            registry.policy.config_pairs(),
            metrics.instance_gauges(),
        );
        Ok(Shared {
            registry_file,
            registry: RwLock::new(Arc::new(Checker::new(registry))),
            policy: RwLock::new(Arc::new(pool)),
            policy_source,
            engine,
            usage,
            buckets: Buckets::default(),
            metrics,
            decisions,
            reloading: Mutex::new(()),
        })
    }

    pub fn checker(&self) -> Arc<Checker> {
        self.registry.read().expect("registry lock").clone()
    }

    fn pool(&self) -> Arc<PolicyPool> {
        self.policy.read().expect("policy lock").clone()
    }

    /// The full pipeline: check, rate limit, usage, metrics, decision log.
    pub fn evaluate(&self, presented: &str, request: &CheckRequest) -> Evaluated {
        let started = Instant::now();
        let checker = self.checker();
        let pool = self.pool();
        let mut verdict = checker.check(&mut &*pool, presented, request);
        let mut retry_after = None;
        if let Verdict::Allow { key, .. } = &verdict {
            let limit = checker.registry.keys[key.index]
                .rate_limit
                .as_deref()
                .and_then(|text| text.parse::<RateLimit>().ok());
            if let Some(limit) = limit
                && let Err(wait) = self.buckets.take(&key.key_id, limit, started)
            {
                retry_after = Some(wait);
                verdict = Verdict::Deny {
                    code: DenyCode::RateLimited,
                    reason: format!("the key's rate limit of {limit} is used up"),
                    key: Some(key.clone()),
                };
            } else {
                self.usage.record(&key.key_id, Timestamp::now());
            }
        }
        let took = started.elapsed();
        self.metrics.check(verdict.code(), took);
        if let Some(log) = &self.decisions {
            log.record(request, &verdict, took);
        }
        Evaluated {
            verdict,
            retry_after,
        }
    }

    /// Re-reads the registry; on failure the old one stays. The keys go
    /// live whatever the policy says of new settings: if it refuses them,
    /// checks fail closed with `policy_error` (and /healthz says why) until
    /// a later registry or policy change is taken.
    pub fn reload_registry(&self) {
        let _guard = self.reloading.lock().expect("reload lock");
        let outcome = self.registry_file.load().map(|registry| {
            let config = registry.policy.config_pairs();
            let current = self.pool();
            if config != current.config() {
                let pool = PolicyPool::configured(
                    current.policy().clone(),
                    config,
                    self.metrics.instance_gauges(),
                );
                *self.policy.write().expect("policy lock") = Arc::new(pool);
            }
            let revision = registry.revision;
            *self.registry.write().expect("registry lock") = Arc::new(Checker::new(registry));
            revision
        });
        self.metrics.reload("registry", outcome.is_ok());
        match outcome {
            Ok(revision) => tracing::info!(revision, "registry reloaded"),
            Err(e) => tracing::error!("registry reload failed; keeping the previous one: {e:#}"),
        }
    }

    /// Loads the policy again from its source; on failure the old one stays.
    pub fn reload_policy(&self) {
        let _guard = self.reloading.lock().expect("reload lock");
        let config = self.pool().config().to_vec();
        let outcome = load_policy(&self.engine, &self.policy_source).and_then(|policy| {
            PolicyPool::new(policy, config, self.metrics.instance_gauges())
                .map_err(anyhow::Error::from)
        });
        let ok = outcome.is_ok();
        match outcome {
            Ok(pool) => {
                let label = pool.policy().label().to_string();
                *self.policy.write().expect("policy lock") = Arc::new(pool);
                tracing::info!(policy = %label, "policy swapped");
            }
            Err(e) => tracing::error!("policy reload failed; keeping the previous one: {e:#}"),
        }
        self.metrics.reload("policy", ok);
    }

    pub fn flush_usage(&self) {
        if let Err(e) = self.usage.flush() {
            tracing::warn!("cannot write usage: {e:#}");
        }
    }

    pub fn policy_label(&self) -> String {
        self.pool().policy().label().to_string()
    }

    /// Why every check fails closed, when the policy refuses the registry's
    /// settings.
    pub fn policy_refusal(&self) -> Option<String> {
        self.pool().refusal().map(ToString::to_string)
    }

    /// Drops policy instances left idle since a burst.
    pub fn trim_policy_instances(&self) {
        self.pool().trim();
    }
}

fn load_policy(engine: &PolicyEngine, source: &PolicySource) -> Result<Policy> {
    match source {
        PolicySource::BuiltIn => engine.load_default(),
        PolicySource::File(path) => engine.load_file(path),
    }
}
