//! The one place that picks a component's contract version: each version's
//! module (`v0_1`, `v0_2`) owns its bindings, and this dispatches to the one
//! the component speaks.

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::contract::Spoken;
use super::{Sandbox, v0_1, v0_2};
use crate::check::CheckRequest;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::Decision;

/// A linked policy of some version, ready to instantiate.
pub enum Pre {
    V0_1(v0_1::Pre),
    V0_2(v0_2::Pre),
}

impl Pre {
    /// The component's exports as the version it names; one that names
    /// none is taken as whichever version its exports fit, the current one
    /// first.
    pub fn new(instance_pre: InstancePre<Sandbox>, spoken: Option<Spoken>) -> Result<Pre> {
        match spoken {
            Some(Spoken::V0_1) => Ok(Pre::V0_1(v0_1::Pre::new(instance_pre)?)),
            Some(Spoken::V0_2) => Ok(Pre::V0_2(v0_2::Pre::new(instance_pre)?)),
            None => match v0_2::Pre::new(instance_pre.clone()) {
                Ok(pre) => Ok(Pre::V0_2(pre)),
                Err(current) => v0_1::Pre::new(instance_pre)
                    .map(Pre::V0_1)
                    .map_err(|_| current),
            },
        }
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store).await?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store).await?),
        })
    }
}

/// A live instance of a policy of some version.
pub enum Instance {
    V0_1(v0_1::Instance),
    V0_2(v0_2::Instance),
}

impl Instance {
    /// Calls `configure`; the inner `Err` is the policy refusing `config`.
    pub async fn configure(
        &self,
        store: &mut Store<Sandbox>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Instance::V0_1(instance) => instance.configure(store, config).await,
            Instance::V0_2(instance) => instance.configure(store, config).await,
        }
    }

    /// Calls `validate` on a key, its identity and a request at `now`.
    pub async fn validate(
        &self,
        store: &mut Store<Sandbox>,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> wasmtime::Result<Decision> {
        match self {
            Instance::V0_1(instance) => instance.validate(store, key, identity, request, now).await,
            Instance::V0_2(instance) => instance.validate(store, key, identity, request, now).await,
        }
    }
}
