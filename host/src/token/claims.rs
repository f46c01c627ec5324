//! What a token says, how one is issued for a key that passed its check,
//! and the verdict on a request that carries one.

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{ISSUER, SigningKeys};
use crate::check::CheckRequest;
use crate::iam::KeyKind;
use crate::net::parse_cidr;
use crate::registry::{Found, Identity, KeyHash, KeyRecord, Lookup};
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
    /// The same, as the audience, for JWT libraries that check one.
    pub aud: String,
    /// The first bytes of the SHA-256 of the secret that was exchanged, in
    /// hex: the token lives only as long as that secret does (a rotation, or
    /// the end of its grace period, ends it).
    pub sec: String,
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

/// The `sec` claim of a secret whose SHA-256 is `hash`.
fn secret_claim(hash: &KeyHash) -> String {
    hex::encode(&hash.0[..8])
}

/// A signed token for `key` of `identity`, which was just allowed for
/// `service` with the secret whose SHA-256 is `secret`. It lives `ttl`, but
/// never past the key's own expiry.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    keys: &SigningKeys,
    key: &KeyRecord,
    identity: &Identity,
    secret: &KeyHash,
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
        aud: service.to_string(),
        sec: secret_claim(secret),
        iat: now.0,
        exp: exp.0,
        rev: revision,
        jti: hex::encode(jti),
    };
    Ok((keys.sign(&claims)?, claims))
}

/// The verdict on `request` carrying a token with `claims`, whose signature
/// and expiry were verified, before the policy has its say (the caller asks
/// it next, as for a key). The key it names is read from `registry`, the one
/// in force: a key deleted, disabled, leaked or expired since the token was
/// issued refuses it, so does a rotation of the secret it was exchanged
/// for, and a scope taken from the key or its identity since then is no
/// longer granted. The request must name the token's service.
pub fn admit<'r, L: Lookup + ?Sized>(
    claims: &Claims,
    registry: &'r L,
    request: &CheckRequest,
    now: Timestamp,
) -> Result<Found<'r>, Verdict> {
    let found = match registry.find_by_id(&claims.key_id) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(Verdict::deny(
                DenyCode::NotFound,
                "the key this token was issued for no longer exists",
                None,
            ));
        }
        Err(e) => return Err(unreadable(e)),
    };
    let key = &*found.key;
    let key_ref = KeyRef {
        index: found.position,
        key_id: key.id.clone(),
        owner: key.owner.to_string(),
        kind: key.kind,
    };
    let deny = |code, reason: String| Err(Verdict::deny(code, reason, Some(key_ref.clone())));
    if key.owner.as_str() != claims.sub {
        return deny(
            DenyCode::NotFound,
            "the key this token was issued for no longer exists".into(),
        );
    }
    let current = secret_claim(&key.hash) == claims.sec;
    let in_grace = key
        .retired
        .iter()
        .any(|retired| secret_claim(&retired.hash) == claims.sec && now < retired.valid_until);
    if !current && !in_grace {
        return deny(
            DenyCode::NotFound,
            format!(
                "the secret this token was exchanged for no longer works (key {} was rotated)",
                key.id
            ),
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
    let Some(identity) = found.identity.as_deref() else {
        return deny(
            DenyCode::NotFound,
            "the key's identity no longer exists".into(),
        );
    };
    if request.service.as_deref() != Some(claims.service.as_str()) {
        let asked = match &request.service {
            Some(service) => format!("{service:?}"),
            None => "none".to_string(),
        };
        return deny(
            DenyCode::WrongService,
            format!(
                "the token is valid for the service {:?} only; the request names {asked}",
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
    Ok(found)
}

/// The verdict when the registry in force cannot be read: the check fails
/// closed, and the log says why (the caller is told no more).
pub fn unreadable(error: anyhow::Error) -> Verdict {
    tracing::error!("the registry in force cannot be read: {error:#}");
    Verdict::deny(
        DenyCode::PolicyError,
        "the registry in force cannot be read",
        None,
    )
}
