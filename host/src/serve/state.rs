//! What the server shares between requests: the live registry and policy,
//! which reloads swap whole, and the counters requests update.
//!
//! A check takes `Arc`s to the registry and policy it starts with, so a
//! swap never disturbs a check in flight: it finishes on the old ones.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::decision_log::DecisionLog;
use super::metrics::Metrics;
use crate::check::{CheckRequest, Prepared, find, find_token, prepare};
use crate::counters::{Counters, Limited};
use crate::policy::{Policy, PolicyEngine, PolicyPool};
use crate::registry::{CompactRegistry, Found, Lookup};
use crate::registry::{RegistryFile, Written};
use crate::side_files::RegistryStamp;
use crate::time::Timestamp;
use crate::token::{self, SigningKeys};
use crate::usage::Use;
use crate::verdict::{DenyCode, Verdict};

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
    /// The key the verdict is about, as the registry it was reached on
    /// holds it, with its identity.
    pub found: Option<Found<'static>>,
    /// The revision of that registry.
    pub revision: u64,
}

/// A verdict before the rate limit, with the key it is about and the
/// revision of the registry it was reached on.
pub struct Checked {
    verdict: Verdict,
    found: Option<Found<'static>>,
    revision: u64,
}

impl Checked {
    /// The verdict as it stands, with no rate limit, usage or record.
    pub fn uncounted(self) -> Evaluated {
        Evaluated {
            verdict: self.verdict,
            retry_after: None,
            found: self.found,
            revision: self.revision,
        }
    }
}

/// A management write in flight, until dropped.
pub struct WriteInFlight(Arc<Shared>);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Shared {
    pub registry_file: RegistryFile,
    /// Where the registry's snapshot is kept; none: it is held in memory.
    cache_dir: Option<PathBuf>,
    /// The registry in force: its snapshot, read where it lies.
    registry: RwLock<Arc<CompactRegistry>>,
    policy: RwLock<Arc<PolicyPool>>,
    pub policy_source: PolicySource,
    engine: PolicyEngine,
    /// Rate-limit windows and usage: in this process, or shared in Redis.
    counters: Counters,
    pub metrics: Arc<Metrics>,
    decisions: Option<DecisionLog>,
    /// Serialises reloads, so two never interleave.
    reloading: Mutex<()>,
    /// Why the last registry reload failed, until one succeeds.
    registry_problem: Mutex<Option<String>>,
    /// The stamp of the registry file whose contents are in force.
    registry_stamp: Mutex<Option<RegistryStamp>>,
    /// Management writes between their start and their change in force:
    /// the file watcher waits for them, so that it does not read again a
    /// change this process wrote.
    writes_in_flight: AtomicUsize,
    /// The keys that sign and verify access tokens, reloaded on rotation.
    signing: RwLock<Arc<SigningKeys>>,
    /// How long an access token lives.
    pub token_ttl: Duration,
}

impl Shared {
    pub fn new(
        registry_file: RegistryFile,
        engine: PolicyEngine,
        policy_source: PolicySource,
        counters: Counters,
        decisions: Option<DecisionLog>,
        token_ttl: Duration,
    ) -> Result<Shared> {
        let cache_dir = crate::side_files::cache_root();
        // Its writes keep the snapshot of what they wrote, which serve
        // then takes as it is; a write of keys alone needs it.
        let registry_file = registry_file.keeping_snapshots(cache_dir.clone());
        let (registry, stamp) = CompactRegistry::current(&registry_file, cache_dir.as_deref())?;
        let signing = SigningKeys::open_or_create(registry_file.path(), Timestamp::now())?;
        let policy = load_policy(&engine, &policy_source)?;
        let mut metrics = Metrics::new();
        if let Counters::Redis(redis) = &counters {
            metrics.count_state_errors(redis.error_counter());
        }
        if let Some(log) = &decisions {
            metrics.count_dropped_decisions(log.dropped());
        }
        let pool =
            PolicyPool::configured(policy, registry.policy_config(), metrics.instance_gauges());
        Ok(Shared {
            registry_file,
            cache_dir,
            registry: RwLock::new(Arc::new(registry)),
            policy: RwLock::new(Arc::new(pool)),
            policy_source,
            engine,
            counters,
            metrics: Arc::new(metrics),
            decisions,
            reloading: Mutex::new(()),
            registry_problem: Mutex::new(None),
            registry_stamp: Mutex::new(Some(stamp)),
            writes_in_flight: AtomicUsize::new(0),
            signing: RwLock::new(Arc::new(signing)),
            token_ttl,
        })
    }

    /// The keys that sign and verify access tokens now.
    pub fn signing_keys(&self) -> Arc<SigningKeys> {
        self.signing.read().expect("signing lock").clone()
    }

    /// Re-reads the signing keys after a rotation; on failure the old ones
    /// stay.
    pub fn reload_signing_keys(&self) {
        match SigningKeys::open(self.registry_file.path(), Timestamp::now()) {
            Ok(Some(keys)) => {
                tracing::info!(kid = keys.signing_kid(), "token signing keys reloaded");
                *self.signing.write().expect("signing lock") = Arc::new(keys);
            }
            Ok(None) => {
                tracing::error!("the token signing keys are gone; keeping the previous ones")
            }
            Err(e) => tracing::error!(
                "cannot reload the token signing keys; keeping the previous ones: {e:#}"
            ),
        }
    }

    pub fn checker(&self) -> Arc<CompactRegistry> {
        self.registry.read().expect("registry lock").clone()
    }

    fn pool(&self) -> Arc<PolicyPool> {
        self.policy.read().expect("policy lock").clone()
    }

    /// The verdict on a presented key or access token, with the key it is
    /// about. The policy's call is awaited right here, on the server's own
    /// threads: no hand-off to another thread, and a policy that runs long
    /// yields at every epoch tick to the other requests.
    pub async fn check(&self, presented: &str, request: &CheckRequest) -> Checked {
        let checker = self.checker();
        let revision = checker.revision();
        let found = if token::looks_like_token(presented) {
            let keys = self.signing_keys();
            find_token(&*checker, Some(keys.verifier()), presented, request)
                .map(|found| Some(found.into_owned()))
        } else {
            match find(&*checker, presented) {
                Ok(found) => found.map(|found| found.map(Found::into_owned)),
                Err(e) => Err(token::unreadable(e)),
            }
        };
        drop(checker);
        let found = match found {
            Err(refused) => {
                return Checked {
                    verdict: refused,
                    found: None,
                    revision,
                };
            }
            Ok(found) => found,
        };
        let verdict = match prepare(found.as_ref(), request) {
            Prepared::Decided(verdict) => verdict,
            Prepared::Ask(question) => {
                let pool = self.pool();
                let answer = pool
                    .decide(question.key, question.identity, request, question.now)
                    .await;
                question.conclude(answer)
            }
        };
        Checked {
            verdict,
            found,
            revision,
        }
    }

    /// The rest of the pipeline after [`check`](Self::check): the rate
    /// limit (which may wait on Redis, so it is awaited, not blocked on),
    /// usage, metrics and the decision log.
    pub async fn finish(
        &self,
        checked: Checked,
        request: &CheckRequest,
        started: Instant,
    ) -> Evaluated {
        let Checked {
            mut verdict,
            found,
            revision,
        } = checked;
        let mut retry_after = None;
        if let (Verdict::Allow { key, .. }, Some(found)) = (&verdict, &found) {
            let limit = found.key.rate_limit;
            let limited = match limit {
                Some(limit) => self.counters.take(&key.key_id, limit, started).await,
                None => Limited::Allowed,
            };
            let refused = match (limited, limit) {
                (Limited::Wait(wait), Some(limit)) => {
                    Some((wait, format!("the key's rate limit of {limit} is used up")))
                }
                (Limited::Unreachable, _) => Some((
                    Duration::from_secs(1),
                    "the shared rate limiter cannot be reached, and rate limits fail closed (--on-state-error closed) until it is back".to_string(),
                )),
                _ => None,
            };
            match refused {
                Some((wait, reason)) => {
                    retry_after = Some(wait);
                    verdict = Verdict::Deny {
                        code: DenyCode::RateLimited,
                        reason,
                        key: Some(key.clone()),
                    };
                }
                None => self.counters.record(
                    &key.key_id,
                    Use {
                        at: Timestamp::now(),
                        service: request.service.as_deref(),
                        address: request.source_ip.as_deref(),
                    },
                ),
            }
        }
        self.record(request, &verdict, started);
        Evaluated {
            verdict,
            retry_after,
            found,
            revision,
        }
    }

    /// The verdict on a request that carries no key; recorded like any other.
    pub fn unkeyed(&self, request: &CheckRequest) -> Evaluated {
        let verdict = Verdict::Deny {
            code: DenyCode::NotFound,
            reason: keyhost_core::http::NO_KEY.into(),
            key: None,
        };
        self.record(request, &verdict, Instant::now());
        Evaluated {
            verdict,
            retry_after: None,
            found: None,
            revision: self.checker().revision(),
        }
    }

    /// Every decision is counted and, with a decision log, logged.
    fn record(&self, request: &CheckRequest, verdict: &Verdict, started: Instant) {
        let took = started.elapsed();
        self.metrics.check(verdict.code(), took);
        if let Some(log) = &self.decisions {
            log.record(request, verdict, took);
        }
    }

    /// Re-reads the registry; on failure the old one stays, and `/healthz`
    /// says why until a reload succeeds. A registry whose revision is older
    /// than the one in force (the file swapped for an earlier copy, which
    /// could bring back a revoked key) is refused the same way; restart
    /// serve to go back on purpose. The keys go live whatever the policy
    /// says of new settings: if it refuses them, checks fail closed with
    /// `policy_error` (and /healthz says why) until a later registry or
    /// policy change is taken.
    ///
    /// Unless `anyway` (SIGHUP, or the snapshot in force found damaged), a
    /// file whose stamp is the one in force is not read again (serve wrote
    /// it, or read it, itself), and a snapshot of it in the cache is taken
    /// as it is; `anyway`, the TOML is read and the snapshot made again.
    pub fn reload_registry(&self, anyway: bool) {
        let _guard = self.reloading.lock().expect("reload lock");
        if !anyway
            && self.registry_in_force_is(RegistryStamp::of(self.registry_file.path()).ok().as_ref())
        {
            // The file in force is back, if it was ever unreadable.
            *self.registry_problem.lock().expect("problem lock") = None;
            return;
        }
        let cache_dir = self.cache_dir.as_deref();
        let made = if anyway {
            CompactRegistry::from_toml(&self.registry_file, cache_dir)
        } else {
            CompactRegistry::current(&self.registry_file, cache_dir)
        };
        let outcome = made.and_then(|(registry, stamp)| {
                let current = self.checker().revision();
                if registry.revision() < current {
                    anyhow::bail!(
                        "the registry's revision went back from {current} to {}: an older copy replaced it",
                        registry.revision()
                    );
                }
                Ok(self.put_in_force(registry, stamp))
            });
        self.metrics.reload("registry", outcome.is_ok());
        let mut problem = self.registry_problem.lock().expect("problem lock");
        match outcome {
            Ok(revision) => {
                tracing::info!(revision, "registry reloaded");
                *problem = None;
            }
            Err(e) => {
                tracing::error!("registry reload failed; keeping the previous one: {e:#}");
                *problem = Some(format!("{e:#}"));
            }
        }
    }

    /// Puts a change this process just committed in force. When it was
    /// made to the very file in force, it goes in as it was written: the
    /// file is not read again, by this or by the watcher, which finds the
    /// stamp in force. Otherwise something else changed the file first,
    /// and the file is read as any change is (with its revision checked).
    pub fn take_committed(&self, written: Written, base: &RegistryStamp, stamp: RegistryStamp) {
        {
            let _guard = self.reloading.lock().expect("reload lock");
            if self.registry_in_force_is(Some(base)) {
                let snapshot = match written {
                    Written::Snapshot(snapshot) => *snapshot,
                    Written::Registry(registry) => CompactRegistry::of_committed(
                        &registry,
                        &stamp.main,
                        self.registry_file.path(),
                        self.cache_dir.as_deref(),
                    ),
                };
                let revision = self.put_in_force(snapshot, stamp);
                tracing::info!(revision, "registry change in force");
                *self.registry_problem.lock().expect("problem lock") = None;
                return;
            }
        }
        self.reload_registry(false);
    }

    /// Swaps in `registry`, the snapshot of the file stamped `stamp`, and
    /// a policy pool configured anew if its settings changed; its revision.
    fn put_in_force(&self, registry: CompactRegistry, stamp: RegistryStamp) -> u64 {
        let config = registry.policy_config();
        let current = self.pool();
        if config != current.config() {
            let pool = PolicyPool::configured(
                current.policy().clone(),
                config,
                self.metrics.instance_gauges(),
            );
            *self.policy.write().expect("policy lock") = Arc::new(pool);
        }
        let revision = registry.revision();
        *self.registry.write().expect("registry lock") = Arc::new(registry);
        *self.registry_stamp.lock().expect("stamp lock") = Some(stamp);
        revision
    }

    /// Whether a read of the snapshot in force failed: its bytes changed on
    /// disk since they were checked, and it must be made again.
    pub fn snapshot_damaged(&self) -> bool {
        self.checker().damaged()
    }

    /// Whether the registry file stamped `stamp` is the one in force.
    pub fn registry_in_force_is(&self, stamp: Option<&RegistryStamp>) -> bool {
        stamp.is_some() && self.registry_stamp.lock().expect("stamp lock").as_ref() == stamp
    }

    /// Whether a management write may be changing the registry now (the
    /// watcher waits a little for it to put its change in force).
    pub fn writing(&self) -> bool {
        self.writes_in_flight.load(Ordering::Acquire) > 0
    }

    /// Counts a management write as in flight until the guard is dropped.
    pub fn start_write(self: &Arc<Self>) -> WriteInFlight {
        self.writes_in_flight.fetch_add(1, Ordering::AcqRel);
        WriteInFlight(self.clone())
    }

    /// Why the registry in force may be stale, if it may.
    pub fn registry_problem(&self) -> Option<String> {
        self.registry_problem.lock().expect("problem lock").clone()
    }

    /// The live use counts and last uses of keys, as `show` reports them.
    /// Blocks when the counters are in Redis.
    pub fn usage_of(
        &self,
        key_ids: &[&str],
    ) -> std::collections::BTreeMap<String, crate::usage::Usage> {
        self.counters.usage_of(key_ids)
    }

    /// Why the shared counters may be off, if they may.
    pub fn counters_problem(&self) -> Option<String> {
        self.counters.problem()
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

    /// The flush at shutdown: uses that cannot be written now are lost,
    /// and the log says so; every decision made is written to the
    /// decision log.
    pub fn flush_at_shutdown(&self) {
        if let Err(e) = self.counters.flush() {
            tracing::error!("stopping with uses not written, which are lost: {e:#}");
        }
        if let Some(log) = &self.decisions {
            log.close();
        }
    }

    pub fn flush_usage(&self) {
        if let Err(e) = self.counters.flush() {
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
