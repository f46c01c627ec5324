//! `keyhost:policy@0.2.0`, the contract this keyhost speaks: its generated
//! bindings. 0.2 keeps 0.1's types unchanged and moves `configure` and
//! `validate` into the `validator` interface, so its bindings take the
//! types (and their conversions) from `v0_1` rather than generating a
//! second copy of them.

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::Sandbox;
use super::v0_1::{Records, decision_of, pairs};
use crate::check::CheckRequest;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::Decision;

mod bindings {
    //! Host types generated from `wit/`. They are never written by hand.
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        ownership: Borrowing { duplicate_if_necessary: true },
        exports: { default: async },
        with: { "keyhost:policy/types": super::super::v0_1::wit },
    });
}

/// A policy component of this version, linked and ready to instantiate.
pub struct Pre(bindings::PolicyPre<Sandbox>);

impl Pre {
    /// Checks that the linked component exports this version's world.
    pub fn new(instance_pre: InstancePre<Sandbox>) -> Result<Pre> {
        Ok(Pre(bindings::PolicyPre::new(instance_pre)?))
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Instance> {
        Ok(Instance(self.0.instantiate_async(store).await?))
    }
}

/// A live instance of a policy of this version.
pub struct Instance(bindings::Policy);

impl Instance {
    /// Calls `configure`; the inner `Err` is the policy refusing `config`.
    pub async fn configure(
        &self,
        store: &mut Store<Sandbox>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        self.0
            .keyhost_policy_validator()
            .call_configure(store, &pairs(config))
            .await
    }

    /// Calls `validate` on the contract's records of a key, its identity
    /// and a request at `now`.
    pub async fn validate(
        &self,
        store: &mut Store<Sandbox>,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> wasmtime::Result<Decision> {
        let records = Records::new(key, identity, request, now);
        let decision = self
            .0
            .keyhost_policy_validator()
            .call_validate(store, records.key(), records.identity(), records.request())
            .await?;
        Ok(decision_of(decision))
    }
}
