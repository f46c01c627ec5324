//! What a token says, how one is issued for a key that passed its check,
//! and the verdict on a request that carries one.

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{ISSUER, SigningKeys};
use crate::check::CheckRequest;
use crate::iam::KeyKind;
use crate::net::parse_cidr;
use crate::registry::{Identity, KeyRecord, LoadedRegistry};
use crate::time::Timestamp;
use crate::verdict::{DenyCode, KeyRef, Verdict};

/// How long a token lives unless serve is told otherwise (IBM's hour).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// A token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The IAM id the key acts as.
    pub sub: String,
    /// The same, under IBM's name.
    pub iam_id: String,
    /// The key the token was exchanged for.
    pub key_id: String,
    /// That key's kind.
    pub key_kind: KeyKind,
    /// The effective scopes, space-separated (OAuth's `scope`).
    pub scope: String,
    /// The service the token was issued for; it is valid for that one only.
    pub service: String,
    /// Issued at, in Unix seconds.
    pub iat: i64,
    /// Expires at, in Unix seconds.
    pub exp: i64,
    /// The registry revision the key was checked against.
    pub rev: u64,
    /// A unique id.
    pub jti: String,
}

impl Claims {
    /// The scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

/// The scopes `key` may use: its identity's rights, narrowed by the key's
/// own scopes when it has any.
pub fn effective_scopes<'a>(key: &'a KeyRecord, identity: &'a Identity) -> Vec<&'a str> {
    identity
        .rights()
        .filter(|right| key.scopes.is_empty() || key.scopes.iter().any(|own| own == right))
        .collect()
}

/// A signed token for `key` of `identity`, which was just allowed for
/// `service`. It lives `ttl`, but never past the key's own expiry.
pub fn issue(
    keys: &SigningKeys,
    key: &KeyRecord,
    identity: &Identity,
    service: &str,
    revision: u64,
    ttl: Duration,
    now: Timestamp,
) -> Result<(String, Claims)> {
    let mut exp = now.plus(ttl);
    if let Some(expiry) = key.expires_at {
        exp = exp.min(expiry);
    }
    let mut jti = [0u8; 12];
    getrandom::fill(&mut jti)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
    let claims = Claims {
        iss: ISSUER.to_string(),
        sub: identity.iam_id.to_string(),
        iam_id: identity.iam_id.to_string(),
        key_id: key.id.clone(),
        key_kind: key.kind,
        scope: effective_scopes(key, identity).join(" "),
        service: service.to_string(),
        iat: now.0,
        exp: exp.0,
        rev: revision,
        jti: hex::encode(jti),
    };
    Ok((keys.sign(&claims)?, claims))
}

/// The verdict on `request` carrying a token with `claims`, whose signature
/// and expiry were verified. The key it names is read from `registry`, the
/// one in force: a key deleted, disabled, leaked or expired since the token
/// was issued refuses it, and a scope taken from the key or its identity
/// since then is no longer granted.
pub fn decide(
    claims: &Claims,
    registry: &LoadedRegistry,
    request: &CheckRequest,
    now: Timestamp,
) -> Verdict {
    let Some((index, key)) = registry.key_by_id(&claims.key_id) else {
        return Verdict::deny(
            DenyCode::NotFound,
            "the key this token was issued for no longer exists",
            None,
        );
    };
    let key_ref = KeyRef {
        index,
        key_id: key.id.clone(),
        owner: key.owner.to_string(),
        kind: key.kind,
    };
    let deny = |code, reason: String| Verdict::deny(code, reason, Some(key_ref.clone()));
    if key.owner.as_str() != claims.sub {
        return deny(
            DenyCode::NotFound,
            "the key this token was issued for no longer exists".into(),
        );
    }
    if key.leaked {
        return deny(
            DenyCode::Leaked,
            format!("key {} was found exposed", key.id),
        );
    }
    if key.disabled {
        return deny(DenyCode::Disabled, format!("key {} is disabled", key.id));
    }
    if key.is_expired(now) {
        return deny(DenyCode::Expired, format!("key {} has expired", key.id));
    }
    let Some(identity) = registry.identity_of(key) else {
        return deny(
            DenyCode::NotFound,
            "the key's identity no longer exists".into(),
        );
    };
    if let Some(service) = &request.service
        && service != &claims.service
    {
        return deny(
            DenyCode::WrongService,
            format!(
                "the token was issued for the service {:?}, not {service:?}",
                claims.service
            ),
        );
    }
    if let Some(scope) = &request.scope {
        let granted = claims.scopes().any(|s| s == scope)
            && effective_scopes(key, identity).contains(&scope.as_str());
        if !granted {
            return deny(
                DenyCode::InsufficientScope,
                format!("the token does not carry the scope {scope:?}"),
            );
        }
    }
    if !key.allowed_ips.is_empty() {
        let allowed = request
            .source_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| {
                key.allowed_ips
                    .iter()
                    .filter_map(|entry| parse_cidr(entry).ok())
                    .any(|net| net.contains(&ip))
            });
        if !allowed {
            return deny(
                DenyCode::IpNotAllowed,
                format!("key {} may not be used from this address", key.id),
            );
        }
    }
    Verdict::Allow {
        key: key_ref,
        info: Vec::new(),
    }
}
