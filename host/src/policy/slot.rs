//! One policy instance reused for the checks of one key only: a check of
//! another key, or a call that failed, gets a fresh instance, so nothing a
//! policy keeps can reach another caller.

use super::{Policy, PolicyFault, PolicyInstance};
use crate::check::{CheckRequest, Decider};
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::Decision;

/// A policy with its configuration and, once used, an instance.
pub struct PolicySlot {
    policy: Policy,
    config: Vec<(String, String)>,
    instance: Option<PolicyInstance>,
    /// The key id the instance has served, if it has served one.
    caller: Option<String>,
}

impl PolicySlot {
    /// A slot that instantiates `policy` with `config` when first used.
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
    pub async fn warm(&mut self) -> Result<(), PolicyFault> {
        if self.instance.is_none() {
            self.instance = Some(self.policy.instantiate(&self.config).await?);
        }
        Ok(())
    }

    /// The policy's decision on `key` of `identity` making `request` at
    /// `now`, from the instance that served this key before, else a fresh
    /// one. A call that failed leaves no instance behind.
    pub async fn ask(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        if self
            .caller
            .as_deref()
            .is_some_and(|caller| caller != key.id)
        {
            self.instance = None;
            self.caller = None;
        }
        self.warm().await?;
        let instance = self.instance.as_mut().expect("warm() made an instance");
        self.caller = Some(key.id.clone());
        let result = instance.validate(key, identity, request, now).await;
        if result.is_err() {
            self.instance = None;
            self.caller = None;
        }
        result
    }
}

/// A one-shot check (the CLI, the demo, the benchmarks) waits for the
/// policy on its own thread: nothing else shares it.
impl Decider for PolicySlot {
    type Fault = PolicyFault;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, PolicyFault> {
        futures_executor::block_on(self.ask(key, identity, request, now))
    }
}
