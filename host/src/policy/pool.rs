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

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use super::{Policy, PolicyFault, PolicySlot};
use crate::check::{CheckRequest, Decider};
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
    freed: Condvar,
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
    /// a policy that cannot start never replaces one that can.
    pub fn new(
        policy: Policy,
        config: Vec<(String, String)>,
        gauges: InstanceGauges,
    ) -> Result<PolicyPool, PolicyFault> {
        let mut first = PolicySlot::new(policy.clone(), config.clone());
        first.warm()?;
        gauges.idle.inc();
        Ok(PolicyPool {
            policy,
            config,
            refusal: None,
            slots: Mutex::new(Slots {
                idle: vec![(first, Instant::now())],
                busy: 0,
            }),
            freed: Condvar::new(),
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
        match PolicyPool::new(policy.clone(), config.clone(), gauges.clone()) {
            Ok(pool) => pool,
            Err(fault) => {
                tracing::error!(
                    "the policy does not take the registry's [policy.config]; checks fail closed until it does: {fault}"
                );
                PolicyPool {
                    policy,
                    config,
                    refusal: Some(fault),
                    slots: Mutex::new(Slots::default()),
                    freed: Condvar::new(),
                    gauges,
                }
            }
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
    /// fresh one, else any idle one, else a new one if the cap allows.
    fn take(&self, key_id: &str) -> Result<PolicySlot, PolicyFault> {
        let deadline = Instant::now() + WAIT_FOR_INSTANCE;
        let mut slots = self.slots.lock().expect("pool lock");
        loop {
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
                return Ok(slot);
            }
            if slots.busy < MAX_INSTANCES {
                slots.busy += 1;
                self.gauges.busy.inc();
                return Ok(PolicySlot::new(self.policy.clone(), self.config.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PolicyFault::Busy {
                    label: self.policy.label().to_string(),
                    max: MAX_INSTANCES,
                });
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .expect("pool lock")
                .0;
        }
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

impl Decider for &PolicyPool {
    type Fault = PolicyFault;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        if let Some(fault) = &self.refusal {
            return Err(fault.clone());
        }
        let mut slot = self.take(&key.id)?;
        let decision = slot.decide(key, identity, request, now);
        self.give_back(slot);
        decision
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
            .map(|i| pool.take(&format!("kid_{i}")).unwrap())
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

    #[test]
    fn past_the_cap_a_check_waits_then_fails_closed() {
        let pool = pool(&InstanceGauges::default());
        let held: Vec<PolicySlot> = (0..MAX_INSTANCES)
            .map(|i| pool.take(&format!("kid_{i}")).unwrap())
            .collect();
        let fault = pool.take("kid_late").err().expect("every instance is busy");
        assert!(matches!(fault, PolicyFault::Busy { .. }), "{fault}");
        pool.give_back(held.into_iter().next().unwrap());
        assert!(pool.take("kid_late").is_ok());
    }
}
