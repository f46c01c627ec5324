//! `keyhost:policy@0.1.0`: its generated bindings, and the conversions
//! between them and the host's own types. Nothing generated leaves the
//! policy modules: the rest of the host speaks `registry`, `check` and
//! `verdict`. In 0.1 `configure` and `validate` are world exports; 0.2
//! (`v0_2`) moves them into an interface and keeps these types, so it
//! lowers its records with [`Records`].

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
        path: "../wit/v0_1",
        world: "policy",
        ownership: Borrowing { duplicate_if_necessary: true },
        exports: { default: async },
    });
}

pub use bindings::keyhost::policy::types as wit;

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
        self.0.call_configure(store, &pairs(config)).await
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
            .call_validate(store, records.key(), records.identity(), records.request())
            .await?;
        Ok(decision_of(decision))
    }
}

/// A call's records, borrowed from the registry and the request: nothing
/// is copied on the host side but the slices of the string lists.
pub(super) struct Records<'a> {
    key: &'a KeyRecord,
    identity: &'a Identity,
    request: &'a CheckRequest,
    now: Timestamp,
    key_scopes: Vec<&'a str>,
    allowed_ips: Vec<&'a str>,
    identity_scopes: Vec<&'a str>,
    attributes: Vec<(&'a str, &'a str)>,
}

impl<'a> Records<'a> {
    pub(super) fn new(
        key: &'a KeyRecord,
        identity: &'a Identity,
        request: &'a CheckRequest,
        now: Timestamp,
    ) -> Records<'a> {
        fn strs(list: &[String]) -> Vec<&str> {
            list.iter().map(String::as_str).collect()
        }
        Records {
            key,
            identity,
            request,
            now,
            key_scopes: strs(&key.scopes),
            allowed_ips: strs(&key.allowed_ips),
            identity_scopes: identity.rights().collect(),
            attributes: pairs(&request.attributes),
        }
    }

    pub(super) fn key(&self) -> wit::KeyRecord<'_> {
        let key = self.key;
        wit::KeyRecord {
            id: &key.id,
            name: &key.name,
            kind: key_kind(key.kind),
            owner: key.owner.as_str(),
            service: key.service.as_deref(),
            scopes: &self.key_scopes,
            allowed_ips: &self.allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        }
    }

    pub(super) fn identity(&self) -> wit::Identity<'_> {
        let identity = self.identity;
        wit::Identity {
            iam_id: identity.iam_id.as_str(),
            kind: match identity.kind() {
                IdentityKind::User => wit::IdentityKind::User,
                IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
            },
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &self.identity_scopes,
        }
    }

    pub(super) fn request(&self) -> wit::Request<'_> {
        let request = self.request;
        wit::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &self.attributes,
            now: self.now.0,
        }
    }
}

/// Name/value pairs as the contract borrows them.
pub(super) fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// A policy's answer as the host's decision (made safe by the caller).
pub(super) fn decision_of(decision: wit::Decision) -> Decision {
    match decision {
        wit::Decision::Allow(info) => Decision::Allow(info),
        wit::Decision::Deny(deny) => Decision::Deny {
            code: deny_code(deny.code),
            message: deny.message,
        },
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
