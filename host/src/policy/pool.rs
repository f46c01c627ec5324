//! The instances of the live policy that serve requests.
//!
//! An instance serves one caller: a check of a key takes an idle instance
//! that served that key, else a fresh one, else any idle one, which the
//! slot replaces before the call (see `PolicySlot`). So what a policy keeps
//! between calls never reaches another key's caller.
//!
//! Each instance may hold the sandbox's memory limit, so their number is
//! capped (a check waits a moment for one when all are busy, then fails
//! closed), at most a few are kept idle after a burst, and idle ones unused
//! for a while are dropped. `/metrics` counts them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use super::{Policy, PolicyFault, PolicySlot};
use crate::check::CheckRequest;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::Decision;

/// The most instances, busy and idle, of one policy.
pub const MAX_INSTANCES: usize = 32;
/// The most idle instances kept once a burst is over.
pub const MAX_IDLE: usize = 4;
/// An idle instance unused this long is dropped, but for the last one.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// How long a check waits for an instance when all are busy.
const WAIT_FOR_INSTANCE: Duration = Duration::from_secs(2);

/// How many instances are idle and busy, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct InstanceGauges {
    /// Instances kept for the next check.
    pub idle: Gauge,
    /// Instances in a check.
    pub busy: Gauge,
}

/// A policy with its configuration and its instances.
pub struct PolicyPool {
    policy: Policy,
    config: Vec<(String, String)>,
    /// Why the policy does not take `config`: every check fails closed.
    refusal: Option<PolicyFault>,
    slots: Mutex<Slots>,
    /// Told when a slot comes back, for a check waiting for one.
    freed: Notify,
    gauges: InstanceGauges,
}

#[derive(Default)]
struct Slots {
    /// Idle slots, the most recently used last.
    idle: Vec<(PolicySlot, Instant)>,
    busy: usize,
}

impl PolicyPool {
    /// Instantiates and configures the policy once before it goes live, so
    /// a policy that cannot start never replaces one that can. It runs on
    /// the calling thread (server start, a reload off the async threads).
    pub fn new(
        policy: Policy,
        config: Vec<(String, String)>,
        gauges: InstanceGauges,
    ) -> Result<PolicyPool, PolicyFault> {
        let mut first = PolicySlot::new(policy.clone(), config.clone());
        futures_executor::block_on(first.warm())?;
        gauges.idle.inc();
        Ok(PolicyPool {
            policy,
            config,
            refusal: None,
            slots: Mutex::new(Slots {
                idle: vec![(first, Instant::now())],
                busy: 0,
            }),
            freed: Notify::new(),
            gauges,
        })
    }

    /// Like [`PolicyPool::new`], but a policy that does not take `config`
    /// still gives a pool, whose checks all fail closed with the reason.
    pub fn configured(
        policy: Policy,
        config: Vec<(String, String)>,
        gauges: InstanceGauges,
    ) -> PolicyPool {
        let fault = match PolicyPool::new(policy.clone(), config.clone(), gauges.clone()) {
            Ok(pool) => return pool,
            Err(fault) => fault,
        };
        // An instance that could not be made now (the engine's instance
        // pool full for a moment) is not the policy refusing its settings:
        // each check makes its own instance, and fails closed if it still
        // cannot.
        let refusal = if matches!(fault, PolicyFault::Busy { .. }) {
            tracing::error!(
                "the policy could not start with the registry's [policy.config]; each check tries again: {fault}"
            );
            None
        } else {
            tracing::error!(
                "the policy does not take the registry's [policy.config]; checks fail closed until it does: {fault}"
            );
            Some(fault)
        };
        PolicyPool {
            policy,
            config,
            refusal,
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
            gauges,
        }
    }

    /// The pooled policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The settings every instance was configured with.
    pub fn config(&self) -> &[(String, String)] {
        &self.config
    }

    /// Why the policy refuses the settings, when it does.
    pub fn refusal(&self) -> Option<&PolicyFault> {
        self.refusal.as_ref()
    }

    /// A slot for a check of `key_id`: one that served that key, else a
    /// fresh one, else any idle one, else a new one if the cap allows, else
    /// the first one given back within [`WAIT_FOR_INSTANCE`].
    async fn take(&self, key_id: &str) -> Result<PolicySlot, PolicyFault> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_INSTANCE;
        loop {
            // Registered before the slots are looked at, so a slot given
            // back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_take(key_id) {
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(PolicyFault::Busy {
                    label: self.policy.label().to_string(),
                    max: MAX_INSTANCES,
                });
            }
        }
    }

    /// [`take`](Self::take) without waiting: `None` when every instance
    /// the cap allows is busy.
    fn try_take(&self, key_id: &str) -> Option<PolicySlot> {
        let mut slots = self.slots.lock().expect("pool lock");
        let idle = &slots.idle;
        let position = idle
            .iter()
            .rposition(|(slot, _)| slot.caller() == Some(key_id))
            .or_else(|| idle.iter().rposition(|(slot, _)| slot.caller().is_none()))
            .or_else(|| idle.len().checked_sub(1));
        if let Some(position) = position {
            let (slot, _) = slots.idle.remove(position);
            slots.busy += 1;
            self.gauges.idle.dec();
            self.gauges.busy.inc();
            return Some(slot);
        }
        if slots.busy < MAX_INSTANCES {
            slots.busy += 1;
            self.gauges.busy.inc();
            return Some(PolicySlot::new(self.policy.clone(), self.config.clone()));
        }
        None
    }

    /// Returns a slot after a check; beyond [`MAX_IDLE`], the least
    /// recently used idle slot is dropped.
    fn give_back(&self, slot: PolicySlot) {
        let dropped = {
            let mut slots = self.slots.lock().expect("pool lock");
            slots.busy -= 1;
            self.gauges.busy.dec();
            slots.idle.push((slot, Instant::now()));
            self.gauges.idle.inc();
            let over = slots.idle.len().saturating_sub(MAX_IDLE);
            self.gauges.idle.dec_by(over as i64);
            slots.idle.drain(..over).collect::<Vec<_>>()
        };
        self.freed.notify_one();
        // Instances are dropped outside the lock: freeing a store takes time.
        drop(dropped);
    }

    /// Drops the idle slots unused for [`IDLE_FOR`], keeping the last one.
    pub fn trim(&self) {
        self.trim_unused_for(IDLE_FOR);
    }

    fn trim_unused_for(&self, unused: Duration) {
        let dropped = {
            let mut slots = self.slots.lock().expect("pool lock");
            let stale = slots
                .idle
                .iter()
                .take(slots.idle.len().saturating_sub(1))
                .take_while(|(_, since)| since.elapsed() >= unused)
                .count();
            self.gauges.idle.dec_by(stale as i64);
            slots.idle.drain(..stale).collect::<Vec<_>>()
        };
        drop(dropped);
    }
}

impl Drop for PolicyPool {
    fn drop(&mut self) {
        let idle = self.slots.get_mut().map_or(0, |slots| slots.idle.len());
        self.gauges.idle.dec_by(idle as i64);
    }
}

impl PolicyPool {
    /// The policy's decision on `key` of `identity` making `request` at
    /// `now`, from an instance of the pool. Awaited on the server's own
    /// threads: a policy that runs long yields at every epoch tick.
    pub async fn decide(
        &self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        if let Some(fault) = &self.refusal {
            return Err(fault.clone());
        }
        let mut lease = Lease {
            pool: self,
            slot: Some(self.take(&key.id).await?),
        };
        let slot = lease.slot.as_mut().expect("a leased slot");
        let decision = slot.ask(key, identity, request, now).await;
        if let Some(slot) = lease.slot.take() {
            self.give_back(slot);
        }
        decision
    }

    /// Counts a busy slot that will not come back.
    fn forget_busy(&self) {
        self.slots.lock().expect("pool lock").busy -= 1;
        self.gauges.busy.dec();
        self.freed.notify_one();
    }
}

/// A busy slot. A check dropped half-way (its request timed out, its client
/// left) drops the slot with it: a store stopped in the middle of a call is
/// never reused, but its place under the cap is freed.
struct Lease<'a> {
    pool: &'a PolicyPool,
    slot: Option<PolicySlot>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.slot.take().is_some() {
            self.pool.forget_busy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompiledCache, PolicyEngine, SandboxLimits};

    fn pool(gauges: &InstanceGauges) -> PolicyPool {
        let engine =
            PolicyEngine::new(CompiledCache::disabled(), SandboxLimits::default()).unwrap();
        let policy = engine.load_default().unwrap();
        PolicyPool::new(policy, Vec::new(), gauges.clone()).unwrap()
    }

    fn idle(pool: &PolicyPool) -> usize {
        pool.slots.lock().unwrap().idle.len()
    }

    #[test]
    fn a_burst_leaves_a_few_idle_instances_and_trimming_keeps_one() {
        let gauges = InstanceGauges::default();
        let pool = pool(&gauges);
        let burst: Vec<PolicySlot> = (0..10)
            .map(|i| pool.try_take(&format!("kid_{i}")).unwrap())
            .collect();
        assert_eq!((gauges.busy.get(), gauges.idle.get()), (10, 0));
        for slot in burst {
            pool.give_back(slot);
        }
        assert_eq!(idle(&pool), MAX_IDLE);
        assert_eq!((gauges.busy.get(), gauges.idle.get()), (0, MAX_IDLE as i64));
        pool.trim();
        assert_eq!(idle(&pool), MAX_IDLE, "none was unused for long");
        pool.trim_unused_for(Duration::ZERO);
        assert_eq!((idle(&pool), gauges.idle.get()), (1, 1));
        drop(pool);
        assert_eq!(gauges.idle.get(), 0);
    }

    #[tokio::test]
    async fn past_the_cap_a_check_waits_then_fails_closed() {
        let pool = pool(&InstanceGauges::default());
        let held: Vec<PolicySlot> = (0..MAX_INSTANCES)
            .map(|i| pool.try_take(&format!("kid_{i}")).unwrap())
            .collect();
        let fault = pool
            .take("kid_late")
            .await
            .err()
            .expect("every instance is busy");
        assert!(matches!(fault, PolicyFault::Busy { .. }), "{fault}");
        // A slot given back while a check waits goes to that check.
        let mut held = held.into_iter();
        let first = held.next().unwrap();
        let give_back = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pool.give_back(first);
        };
        let (taken, ()) = tokio::join!(pool.take("kid_late"), give_back);
        assert!(taken.is_ok());
    }
}
