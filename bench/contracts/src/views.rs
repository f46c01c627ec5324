//! The default rules (`keyhost_policy_rules::decide`) over fields read
//! through a trait, for the candidates whose data is not a `&[String]`:
//! borrowed views of a buffer, a resource's getters, vocabulary indices.
//!
//! `rules::decide` takes the key's lists as `&[String]`, so calling it
//! would mean copying every view into owned strings first, which is the
//! cost those candidates exist to avoid. This is the same checks in the
//! same order with the same messages, reading each field only when a rule
//! reaches it (what the `lazy` candidate needs). host/benches/contracts.rs
//! compiles this file natively too and checks it against `rules::decide`.

use std::borrow::Cow;
use std::net::IpAddr;

use keyhost_policy_rules::{Deny, DenyCode, KeyKind, Settings, cidr_contains};

/// The fields of a call the rules read, each read when a rule needs it.
pub trait Facts {
    fn disabled(&self) -> bool;
    fn leaked(&self) -> bool;
    fn expires_at(&self) -> Option<i64>;
    fn now(&self) -> i64;
    fn key_kind(&self) -> KeyKind;
    fn key_service(&self) -> Option<Cow<'_, str>>;
    fn key_scopes(&self) -> impl Iterator<Item = Cow<'_, str>>;
    fn allowed_ips(&self) -> impl Iterator<Item = Cow<'_, str>>;
    fn identity_scopes(&self) -> impl Iterator<Item = Cow<'_, str>>;
    fn request_service(&self) -> Option<Cow<'_, str>>;
    fn request_scope(&self) -> Option<Cow<'_, str>>;
    fn source_ip(&self) -> Option<Cow<'_, str>>;
}

/// `keyhost_policy_rules::decide`, over [`Facts`].
pub fn decide(settings: &Settings, facts: &impl Facts) -> Result<(), Deny> {
    check_state(facts)?;
    check_service(settings, facts)?;
    check_source_ip(facts)?;
    check_scope(facts)
}

fn check_state(facts: &impl Facts) -> Result<(), Deny> {
    if facts.disabled() {
        return Err(Deny::new(DenyCode::Disabled, "the key is disabled"));
    }
    if facts.leaked() {
        return Err(Deny::new(
            DenyCode::Leaked,
            "the key was reported as leaked",
        ));
    }
    match facts.expires_at() {
        Some(expiry) if facts.now() >= expiry => {
            Err(Deny::new(DenyCode::Expired, "the key has expired"))
        }
        _ => Ok(()),
    }
}

fn check_service(settings: &Settings, facts: &impl Facts) -> Result<(), Deny> {
    let kind = facts.key_kind();
    // A user key reaches every service: nothing more to read.
    if kind == KeyKind::User {
        return Ok(());
    }
    let classic = settings.classic_service.as_str();
    let service = facts.request_service();
    let service = service.as_deref();
    let bound = match kind {
        KeyKind::ServiceSpecific => facts.key_service(),
        _ => None,
    };
    let bound = bound.as_deref();
    let allowed = match kind {
        KeyKind::User => true,
        KeyKind::ServiceId => service != Some(classic),
        KeyKind::ClassicInfrastructure => service == Some(classic),
        KeyKind::ServiceSpecific => service.is_some() && service == bound,
    };
    if allowed {
        return Ok(());
    }
    let wanted = service.unwrap_or("(no service)");
    let message = match kind {
        KeyKind::User => unreachable!("user keys returned above"),
        KeyKind::ServiceId => format!("service ID keys are not valid for {classic}"),
        KeyKind::ClassicInfrastructure => {
            format!("classic infrastructure keys are valid only for {classic}, not {wanted}")
        }
        KeyKind::ServiceSpecific => format!(
            "the key is bound to service {}, not {wanted}",
            bound.unwrap_or("(none)")
        ),
    };
    Err(Deny::new(DenyCode::WrongService, message))
}

fn check_source_ip(facts: &impl Facts) -> Result<(), Deny> {
    let mut allowed = facts.allowed_ips().peekable();
    if allowed.peek().is_none() {
        return Ok(());
    }
    let Some(text) = facts.source_ip() else {
        return Err(Deny::new(
            DenyCode::IpNotAllowed,
            "the key is limited to some addresses and the request gave none",
        ));
    };
    let text: &str = &text;
    let Ok(address) = text.trim().parse::<IpAddr>() else {
        return Err(Deny::new(
            DenyCode::IpNotAllowed,
            format!("the source address {text:?} is not an IP address"),
        ));
    };
    if allowed.any(|entry| cidr_contains(&entry, address)) {
        Ok(())
    } else {
        Err(Deny::new(
            DenyCode::IpNotAllowed,
            format!("{address} is outside the key's allowed addresses"),
        ))
    }
}

fn check_scope(facts: &impl Facts) -> Result<(), Deny> {
    let Some(scope) = facts.request_scope() else {
        return Ok(());
    };
    let scope: &str = &scope;
    // As `rules::scope_granted`: the identity must hold the scope, and the
    // key must list it or list nothing.
    let granted = facts.identity_scopes().any(|s| s == scope) && {
        let mut key_scopes = facts.key_scopes().peekable();
        key_scopes.peek().is_none() || key_scopes.any(|s| s == scope)
    };
    if granted {
        Ok(())
    } else {
        Err(Deny::new(
            DenyCode::InsufficientScope,
            format!("the key does not carry the scope {scope}"),
        ))
    }
}
