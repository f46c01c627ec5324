//! Registries of any size, for the benchmarks. Every key is a user key of
//! one of `keys / 20` users, limited to the scope `read` and to three CIDRs
//! (loopback among them, so the HTTP benchmarks' clients are allowed), with
//! an expiry a year ahead: the request in [`sample_request`] goes through
//! every rule of the default policy before it is allowed.
//!
//! `cargo run --release --example synthetic_registry -- --keys N --registry FILE --secrets FILE`
//! writes one to disk; the criterion benches build them in memory with the
//! same function.

use std::time::Duration;

use crate::check::CheckRequest;
use crate::iam::{IamId, KeyKind};
use crate::key_format;
use crate::registry::{DEFAULT_MAX_KEYS_PER_IDENTITY, Identity, KeyRecord, Registry};
use crate::time::Timestamp;

/// A registry and the secrets of a few of its keys, spread over the registry.
pub struct Synthetic {
    /// The registry.
    pub registry: Registry,
    /// Secrets of some of its keys.
    pub secrets: Vec<String>,
}

/// A registry of `keys` keys; `samples` of their secrets are kept.
pub fn registry(keys: usize, samples: usize) -> Synthetic {
    let now = Timestamp::now();
    let expiry = now.plus(Duration::from_secs(365 * 24 * 3600));
    let per_user = DEFAULT_MAX_KEYS_PER_IDENTITY as usize;
    let users = keys.div_ceil(per_user).max(1);
    let mut registry = Registry::new(crate::registry::DEFAULT_PREFIX);
    registry.identities = (0..users)
        .map(|user| Identity {
            iam_id: user_id(user),
            owner: None,
            scopes: vec!["read".into(), "write".into()],
            created_at: now,
        })
        .collect();
    let stride = (keys / samples.max(1)).max(1);
    let mut secrets = Vec::with_capacity(samples);
    registry.keys = (0..keys)
        .map(|position| {
            let secret = key_format::generate(&registry.prefix, KeyKind::User);
            if position % stride == stride / 2 && secrets.len() < samples {
                secrets.push(secret.expose().to_string());
            }
            KeyRecord {
                id: format!("kid_{position:020x}"),
                name: format!("key {position}"),
                kind: KeyKind::User,
                owner: user_id(position / per_user),
                service: None,
                description: String::new(),
                scopes: vec!["read".into()],
                allowed_ips: vec![
                    "10.0.0.0/8".into(),
                    "192.0.2.0/24".into(),
                    "127.0.0.0/8".into(),
                ],
                hash: crate::registry::KeyHash::of(secret.expose()),
                created_at: now,
                updated_at: now,
                expires_at: Some(expiry),
                locked: false,
                disabled: false,
                leaked: false,
                rate_limit: None,
                retired: Vec::new(),
            }
        })
        .collect();
    Synthetic { registry, secrets }
}

fn user_id(user: usize) -> IamId {
    format!("user:bench{user}").parse().expect("a valid IAM id")
}

/// The request the benchmarks check every key with: allowed, after every
/// rule has run.
pub fn sample_request() -> CheckRequest {
    CheckRequest {
        service: Some("billing".into()),
        scope: Some("read".into()),
        source_ip: Some("10.1.2.3".into()),
        ..CheckRequest::default()
    }
}
