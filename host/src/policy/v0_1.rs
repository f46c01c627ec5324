//! `keyhost:policy@0.1.0`: its generated bindings, and the conversions
//! between them and the host's own types. Nothing generated leaves this
//! module: the rest of the host speaks `registry`, `check` and `verdict`.
//! A later contract version gets a module of its own beside this one.

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::Sandbox;
use crate::check::CheckRequest;
use crate::iam::{IdentityKind, KeyKind};
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::{Decision, DenyCode};

mod bindings {
    //! Host types generated from `wit/`. They are never written by hand.
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        ownership: Borrowing { duplicate_if_necessary: true },
        exports: { default: async },
    });
}

use bindings::keyhost::policy::types as wit;

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
        let pairs: Vec<(&str, &str)> = config
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        self.0.call_configure(store, &pairs).await
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
        // The records borrow from the registry: nothing is copied on the
        // host side but the slices of the string lists.
        fn strs(list: &[String]) -> Vec<&str> {
            list.iter().map(String::as_str).collect()
        }
        let (key_scopes, allowed_ips) = (strs(&key.scopes), strs(&key.allowed_ips));
        let identity_scopes: Vec<&str> = identity.rights().collect();
        let attributes: Vec<(&str, &str)> = request
            .attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let key = wit::KeyRecord {
            id: &key.id,
            name: &key.name,
            kind: key_kind(key.kind),
            owner: key.owner.as_str(),
            service: key.service.as_deref(),
            scopes: &key_scopes,
            allowed_ips: &allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        };
        let identity = wit::Identity {
            iam_id: identity.iam_id.as_str(),
            kind: match identity.kind() {
                IdentityKind::User => wit::IdentityKind::User,
                IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
            },
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &identity_scopes,
        };
        let request = wit::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &attributes,
            now: now.0,
        };
        let decision = self.0.call_validate(store, key, identity, request).await?;
        Ok(match decision {
            wit::Decision::Allow(info) => Decision::Allow(info),
            wit::Decision::Deny(deny) => Decision::Deny {
                code: deny_code(deny.code),
                message: deny.message,
            },
        })
    }
}

fn key_kind(kind: KeyKind) -> wit::KeyKind {
    match kind {
        KeyKind::User => wit::KeyKind::User,
        KeyKind::ServiceId => wit::KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure => wit::KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific => wit::KeyKind::ServiceSpecific,
    }
}

fn deny_code(code: wit::DenyCode) -> DenyCode {
    match code {
        wit::DenyCode::NotFound => DenyCode::NotFound,
        wit::DenyCode::Malformed => DenyCode::Malformed,
        wit::DenyCode::Disabled => DenyCode::Disabled,
        wit::DenyCode::Expired => DenyCode::Expired,
        wit::DenyCode::Leaked => DenyCode::Leaked,
        wit::DenyCode::WrongService => DenyCode::WrongService,
        wit::DenyCode::InsufficientScope => DenyCode::InsufficientScope,
        wit::DenyCode::IpNotAllowed => DenyCode::IpNotAllowed,
        wit::DenyCode::RateLimited => DenyCode::RateLimited,
        wit::DenyCode::PolicyError => DenyCode::PolicyError,
        wit::DenyCode::Denied => DenyCode::Denied,
    }
}
