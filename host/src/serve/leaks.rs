//! `POST /v1/leaks/github`: GitHub's secret scanning partner alerts. GitHub
//! finds keyhost keys in public code by their shape (a fixed prefix, high
//! entropy, a 32-bit checksum) and posts the tokens it found, signed with
//! ECDSA P-256 over the body by a key it publishes. serve checks the
//! signature against the keys in `--github-keys FILE` (GitHub's published
//! set, as its API gives it), finds each token as a check would, marks the
//! keys whose current secret it is as leaked (the registry's
//! `action_when_leaked` follows), stops a rotated-out secret that was seen,
//! and answers with which tokens were true positives.
//!
//! A replay of an old alert changes nothing that should not change: a key
//! already marked stays marked, a key rotated since keeps its new secret
//! (only the old one, still in its grace, stops), and a secret gone is a
//! false positive. The tokens are never logged or echoed: the answer names
//! each by its SHA-256, which GitHub accepts.

use std::collections::BTreeMap;
use std::path::Path;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::caller::write_keys;
use super::errors::{ApiError, ApiResult};
use super::openapi::ErrorAnswer;
use crate::iam::IamId;
use crate::lifecycle;
use crate::registry::{KeyHash, LeakAction, Touches};
use crate::time::Timestamp;

/// The most tokens one alert may carry.
pub const MAX_TOKENS: usize = 1000;
/// The most bytes of one alert's body: a thousand tokens with their URLs.
pub const MAX_ALERT_BYTES: usize = 1 << 20;
/// The longest token looked at; a longer one is no keyhost key.
const MAX_TOKEN_BYTES: usize = 1024;
/// The most bytes of the key set file read.
const MAX_KEY_SET_BYTES: u64 = 1 << 20;

/// The header naming the key GitHub signed with.
const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// The header holding the signature, base64 of its DER form.
const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// One token GitHub found. GitHub also says where (`url`, `source`):
/// keyhost has no use for it, and reads past it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FoundToken {
    /// The token as found.
    token: String,
    /// The token type GitHub matched (keyhost's pattern name).
    #[serde(rename = "type")]
    token_type: String,
}

/// What keyhost says of one token, in GitHub's partner format.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenLabel {
    /// The token's SHA-256, in hex.
    token_hash: String,
    /// The type GitHub gave.
    token_type: String,
    /// `true_positive` for a secret of this registry, `false_positive`
    /// otherwise.
    label: &'static str,
}

/// GitHub's published key set, as `GET /meta/public_keys/secret_scanning`
/// gives it.
#[derive(Deserialize)]
struct KeySet {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

/// The tokens of one key an alert holds, and who manages the key.
struct Sighted {
    manager: IamId,
    /// Where each token is in the alert, and its hash.
    tokens: Vec<(usize, KeyHash)>,
}

#[utoipa::path(
    post,
    path = "/v1/leaks/github",
    tag = "keys",
    description = "GitHub's secret scanning partner alert: the tokens GitHub found in \
        public code, signed by a key GitHub publishes (`Github-Public-Key-Identifier`, \
        `Github-Public-Key-Signature`). The keys whose current secret was found are \
        marked as leaked; a rotated-out secret that was found stops.",
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The key GitHub signed with"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 of the DER ECDSA P-256 signature of the body"),
    ),
    request_body = Vec<FoundToken>,
    responses(
        (status = 200, description = "Each token's label", body = Vec<TokenLabel>),
        (status = 400, description = "No signature headers, or a body that is not an alert", body = ErrorAnswer),
        (status = 401, description = "The signature does not verify with a current GitHub key", body = ErrorAnswer),
        (status = 404, description = "serve was not started with --github-keys", body = ErrorAnswer),
        (status = 413, description = "More than 1000 tokens, or a body over 1 MiB", body = ErrorAnswer),
    ),
)]
pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let deadline = std::time::Instant::now() + state.request_timeout;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("an alert may be at most {MAX_ALERT_BYTES} bytes; nothing was changed"),
        )
    };
    // A body said to be too large is refused before any of it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_ALERT_BYTES as u64) {
        return Err(too_large());
    }
    let Some(key_set) = state.github_keys.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "GitHub's alerts are not taken here: start serve with --github-keys FILE",
        ));
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let (Some(key_id), Some(signature)) = (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(ApiError::bad_request(
            "an alert carries Github-Public-Key-Identifier and Github-Public-Key-Signature; nothing was changed",
        ));
    };
    let (key_id, signature) = (key_id.to_string(), signature.to_string());
    let read =
        tokio::time::timeout_at(deadline.into(), axum::body::to_bytes(body, MAX_ALERT_BYTES));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the alert was not sent in time; nothing was changed",
            ));
        }
    };
    let verified = tokio::task::spawn_blocking(move || {
        verify(&key_set, &key_id, &signature, &body).map(|()| body)
    })
    .await
    .map_err(|e| ApiError::from(anyhow::anyhow!("the signature check failed: {e}")))?;
    let body = verified.map_err(|why| {
        tracing::warn!("a GitHub alert was refused: {why}");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("{why}; nothing was changed"),
        )
    })?;
    let tokens: Vec<FoundToken> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the alert is not a JSON array of {{token, type, url, source}} (line {}, column {}); nothing was changed",
            e.line(),
            e.column()
        ))
    })?;
    if tokens.len() > MAX_TOKENS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "an alert may hold at most {MAX_TOKENS} tokens; this one holds {}; nothing was changed",
                tokens.len()
            ),
        ));
    }

    // Each token is found as a check finds a key, in the registry in
    // force. Each key found is then written alone, as its manager would
    // write it (so an alert costs what it changes, at any registry size),
    // deciding afresh under the registry's lock: a key rotated in between
    // keeps its new secret unmarked.
    // Every token is named by its hash in the answer: made once.
    let hashes: Vec<KeyHash> = tokens
        .iter()
        .map(|token| KeyHash::of(&token.token))
        .collect();
    let checker = state.shared.checker();
    let mut found: BTreeMap<String, Sighted> = BTreeMap::new();
    let mut settled = Vec::new();
    for (at, token) in tokens.iter().enumerate() {
        if token.token.len() > MAX_TOKEN_BYTES {
            continue;
        }
        let Ok(Ok(Some(key))) = keyhost_core::check::find(&*checker, &token.token) else {
            continue;
        };
        let Some(identity) = key.identity.as_deref() else {
            continue;
        };
        let hash = hashes[at];
        // Its current secret, and marked before: the action was taken then,
        // and a replay writes nothing.
        if key.key.leaked && key.key.hash.same_as(&hash) {
            settled.push(at);
            continue;
        }
        let sighted = found.entry(key.key.id.clone()).or_insert_with(|| Sighted {
            manager: identity.manager().clone(),
            tokens: Vec::new(),
        });
        sighted.tokens.push((at, hash));
    }
    drop(checker);
    let mut true_positive = vec![false; tokens.len()];
    for at in settled {
        true_positive[at] = true;
    }
    let mut changes = Vec::new();
    let now = Timestamp::now();
    for (id, sighted) in found {
        let Sighted { manager, tokens } = sighted;
        let target = id.clone();
        let (decided, _) = write_keys(
            &state,
            deadline,
            manager,
            Touches::Key(id),
            move |registry, _| {
                let mut decided = Vec::new();
                for (at, hash) in tokens {
                    let Some(key) = registry.key(&target) else {
                        break;
                    };
                    if key.hash.same_as(&hash) {
                        let action = lifecycle::mark_leaked(registry, &target, now)?;
                        decided.push((
                            at,
                            format!("{target} marked as leaked ({})", action_name(action)),
                        ));
                    } else if lifecycle::end_leaked_retired_secret(registry, &target, &hash, now)? {
                        decided.push((at, format!("{target}'s rotated-out secret stopped")));
                    }
                }
                Ok(decided)
            },
        )
        .await?;
        for (at, change) in decided {
            true_positive[at] = true;
            changes.push(change);
        }
    }
    if !changes.is_empty() {
        tracing::warn!(
            "GitHub reported {} tokens of this registry: {}",
            changes.len(),
            changes.join(", ")
        );
    }
    let labels: Vec<TokenLabel> = tokens
        .iter()
        .zip(hashes)
        .zip(true_positive)
        .map(|((token, hash), real)| TokenLabel {
            token_hash: hash.to_string(),
            token_type: token.token_type.clone(),
            label: if real {
                "true_positive"
            } else {
                "false_positive"
            },
        })
        .collect();
    Ok(Json(labels).into_response())
}

fn action_name(action: LeakAction) -> &'static str {
    match action {
        LeakAction::None => "action_when_leaked = none",
        LeakAction::Disable => "disabled",
        LeakAction::Delete => "deleted",
    }
}

/// Checks `signature` (base64 of DER) of `body` against the current key
/// `key_id` of the set in `path`. The reasons say what failed, never what
/// the body holds.
fn verify(path: &Path, key_id: &str, signature: &str, body: &[u8]) -> Result<(), String> {
    // What costs nothing to check is checked before the key set is read.
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "the signature is not base64")?;
    let signature =
        Signature::from_der(&der).map_err(|_| "the signature is not a DER ECDSA signature")?;
    let key_set = read_key_set(path)?;
    let published = key_set
        .public_keys
        .iter()
        .find(|key| key.key_identifier == key_id)
        .ok_or("the alert was signed with a key GitHub does not publish")?;
    if !published.is_current {
        return Err("the alert was signed with a key GitHub no longer uses".into());
    }
    let key = VerifyingKey::from_public_key_pem(&published.key).map_err(|_| {
        tracing::error!(
            "{}: GitHub's key {key_id:?} is not a P-256 public key in PEM",
            path.display()
        );
        "GitHub's key cannot be read here".to_string()
    })?;
    key.verify(body, &signature)
        .map_err(|_| "the signature does not match the body".to_string())
}

fn read_key_set(path: &Path) -> Result<KeySet, String> {
    use std::io::Read;
    let unreadable = |why: String| {
        tracing::error!("{}: GitHub's key set cannot be read: {why}", path.display());
        "GitHub's key set cannot be read here".to_string()
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_SET_BYTES).read_to_string(&mut text))
        .map_err(|e| unreadable(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))
}
