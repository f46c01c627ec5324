//! The keys that sign access tokens: ES256 (P-256), kept beside the registry
//! (`side_files::signing_keys_path`), mode 0600, created on first use. Their
//! public halves are written beside them too (`token_keys_path`), so that a
//! verifier (`keyhost check`) never needs the private keys.
//!
//! The newest key signs. A rotation adds a new key and gives each older one
//! a `verify_until`: it verifies until the last token it signed has expired,
//! and after that it is neither published nor trusted, and is dropped from
//! the file at the next rotation or serve start. A private key never leaves
//! its file: no output, log, error or JWKS carries it.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lru::LruCache;
use p256::pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Claims, ISSUER, TokenError};
use crate::durable;
use crate::side_files::{signing_keys_path, token_keys_path};
use crate::time::Timestamp;

/// One private key as its file keeps it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at: Timestamp,
    /// Set once the key no longer signs: it verifies until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_until: Option<Timestamp>,
    /// The private key, PKCS#8 DER in base64.
    pkcs8: String,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stored {
    /// The last one signs.
    keys: Vec<StoredKey>,
}

/// One public key as the public file keeps it.
#[derive(Serialize, Deserialize)]
struct PublicKey {
    verify_until: Option<Timestamp>,
    jwk: Jwk,
}

#[derive(Default, Serialize, Deserialize)]
struct Published {
    keys: Vec<PublicKey>,
}

/// A key that verifies, with its public JWK.
struct Verifier {
    kid: String,
    key: DecodingKey,
    jwk: Jwk,
    verify_until: Option<Timestamp>,
}

impl Verifier {
    fn of(jwk: Jwk, verify_until: Option<Timestamp>) -> Result<Verifier> {
        let kid = jwk
            .common
            .key_id
            .clone()
            .context("a signing key has no kid")?;
        let key = DecodingKey::from_jwk(&jwk)
            .with_context(|| format!("signing key {kid} has no usable public key"))?;
        Ok(Verifier {
            kid,
            key,
            jwk,
            verify_until,
        })
    }

    fn trusted_at(&self, now: Timestamp) -> bool {
        self.verify_until.is_none_or(|until| now < until)
    }
}

/// How many verified tokens are remembered.
const VERIFIED_CACHE: usize = 4096;

/// The public keys that verify tokens, and the tokens they verified lately:
/// an ECDSA verification costs ten times a whole `/auth` check, and a
/// client sends the same token again and again. An entry is found only by
/// the SHA-256 of the exact token, and its expiry and key are checked again
/// on every use.
pub struct TokenVerifier {
    verifiers: Vec<Verifier>,
    verified: Mutex<LruCache<[u8; 32], (String, Claims)>>,
}

impl TokenVerifier {
    /// The public keys written beside `registry`; `None` when it never
    /// issued a token.
    pub fn open(registry: &Path) -> Result<Option<TokenVerifier>> {
        let path = token_keys_path(registry);
        let published: Published = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("token keys {} are not valid", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read token keys {}", path.display()));
            }
        };
        let verifiers = published
            .keys
            .into_iter()
            .map(|key| Verifier::of(key.jwk, key.verify_until))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TokenVerifier::new(verifiers)))
    }

    fn new(verifiers: Vec<Verifier>) -> TokenVerifier {
        let size = NonZeroUsize::new(VERIFIED_CACHE).expect("not zero");
        TokenVerifier {
            verifiers,
            verified: Mutex::new(LruCache::new(size)),
        }
    }

    /// The claims of `token`, if one of these keys signed it, it has not
    /// expired at `now`, and it names this issuer.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self
            .verified
            .lock()
            .expect("token cache")
            .get(&digest)
            .cloned();
        if let Some((kid, claims)) = remembered {
            let trusted = self
                .verifiers
                .iter()
                .any(|v| v.kid == kid && v.trusted_at(now));
            return match (trusted, now.0 >= claims.exp) {
                (false, _) => Err(TokenError::UnknownKey),
                (true, true) => Err(TokenError::Expired),
                (true, false) => Ok(claims),
            };
        }
        let (kid, claims) = self.verify_signature(token, now)?;
        if now.0 >= claims.exp {
            return Err(TokenError::Expired);
        }
        self.verified
            .lock()
            .expect("token cache")
            .put(digest, (kid, claims.clone()));
        Ok(claims)
    }

    /// The key id and claims of `token`, if one of these keys signed it and
    /// it names this issuer; its expiry is the caller's to check.
    fn verify_signature(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<(String, Claims), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let verifier = self
            .verifiers
            .iter()
            .find(|v| v.kid == kid && v.trusted_at(now))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked below against `now`, to the second; the audience
        // is the token's service, which `admit` holds the request to.
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &verifier.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?
            .claims;
        Ok((kid, claims))
    }

    /// The public keys trusted at `now`, as a JWKS.
    pub fn jwks(&self, now: Timestamp) -> JwkSet {
        JwkSet {
            keys: self
                .verifiers
                .iter()
                .filter(|v| v.trusted_at(now))
                .map(|v| v.jwk.clone())
                .collect(),
        }
    }
}

/// The signing key and the keys that verify. Deliberately not `Debug`: it
/// holds a private key.
pub struct SigningKeys {
    kid: String,
    signing: EncodingKey,
    verifier: TokenVerifier,
}

impl SigningKeys {
    /// The keys beside `registry`, made on first use; keys past their
    /// overlap are dropped from the file.
    pub fn open_or_create(registry: &Path, now: Timestamp) -> Result<SigningKeys> {
        SigningKeys::change(registry, now, |stored| {
            if stored.keys.is_empty() {
                stored.keys.push(new_key(now)?);
                tracing::info!("made the first token signing key");
            }
            Ok(())
        })
    }

    /// The keys beside `registry`, read without a change; `None` when there
    /// are none.
    pub fn open(registry: &Path, now: Timestamp) -> Result<Option<SigningKeys>> {
        match read(&signing_keys_path(registry))? {
            Some(stored) if !stored.keys.is_empty() => {
                SigningKeys::from_stored(&stored, now).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Makes a new signing key. Each older key verifies for `overlap` more
    /// (the longest a token lives), to the second rounded up, so that no
    /// token it signed stops verifying early. Returns the new key's id.
    pub fn rotate(registry: &Path, overlap: Duration, now: Timestamp) -> Result<String> {
        let until = Timestamp::now_plus_rounded_up(overlap).max(now.plus(overlap));
        let keys = SigningKeys::change(registry, now, |stored| {
            for key in &mut stored.keys {
                key.verify_until.get_or_insert(until);
            }
            stored.keys.push(new_key(now)?);
            Ok(())
        })?;
        Ok(keys.kid)
    }

    /// Applies `change` to the stored keys under the lock, drops keys past
    /// their overlap, and writes both files when anything changed.
    fn change(
        registry: &Path,
        now: Timestamp,
        change: impl FnOnce(&mut Stored) -> Result<()>,
    ) -> Result<SigningKeys> {
        let path = signing_keys_path(registry);
        let _lock = durable::lock(&path)?;
        durable::remove_stale_temps(&path);
        durable::remove_stale_temps(&token_keys_path(registry));
        let before = read(&path)?;
        let mut stored = before.clone().unwrap_or_default();
        stored
            .keys
            .retain(|key| key.verify_until.is_none_or(|until| now < until));
        change(&mut stored)?;
        let unchanged = before.as_ref() == Some(&stored);
        let keys = SigningKeys::from_stored(&stored, now)?;
        if !unchanged || !token_keys_path(registry).exists() {
            write(&path, &serde_json::to_vec_pretty(&stored)?)?;
            let published = Published {
                keys: keys
                    .verifier
                    .verifiers
                    .iter()
                    .map(|v| PublicKey {
                        verify_until: v.verify_until,
                        jwk: v.jwk.clone(),
                    })
                    .collect(),
            };
            write(
                &token_keys_path(registry),
                &serde_json::to_vec_pretty(&published)?,
            )?;
        }
        Ok(keys)
    }

    fn from_stored(stored: &Stored, now: Timestamp) -> Result<SigningKeys> {
        let mut verifiers = Vec::new();
        let mut signing = None;
        for (position, key) in stored.keys.iter().enumerate() {
            let der = STANDARD
                .decode(&key.pkcs8)
                .with_context(|| format!("signing key {} is not valid base64", key.kid))?;
            let encoding = EncodingKey::from_ec_der(&der);
            let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
                .with_context(|| format!("signing key {} is not a P-256 key", key.kid))?;
            jwk.common.key_id = Some(key.kid.clone());
            let verifier = Verifier::of(jwk, key.verify_until)?;
            if verifier.trusted_at(now) {
                verifiers.push(verifier);
            }
            if position + 1 == stored.keys.len() {
                signing = Some((key.kid.clone(), encoding));
            }
        }
        let (kid, signing) = signing.context("no signing key")?;
        Ok(SigningKeys {
            kid,
            signing,
            verifier: TokenVerifier::new(verifiers),
        })
    }

    /// The id of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).context("cannot sign a token")
    }

    /// The public keys that verify, and the tokens they verified lately.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// As [`TokenVerifier::jwks`].
    pub fn jwks(&self, now: Timestamp) -> JwkSet {
        self.verifier.jwks(now)
    }
}

/// A new P-256 key, its id the start of its public key's RFC 7638
/// thumbprint.
fn new_key(now: Timestamp) -> Result<StoredKey> {
    let secret = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
        // Almost every 32 bytes is a valid scalar; the rest are drawn again.
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            break secret;
        }
    };
    let der = secret
        .to_pkcs8_der()
        .context("cannot encode a signing key")?;
    let encoding = EncodingKey::from_ec_der(der.as_bytes());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
        .context("cannot read the new signing key's public half")?;
    let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256);
    Ok(StoredKey {
        kid: thumbprint.chars().take(16).collect(),
        created_at: now,
        verify_until: None,
        pkcs8: STANDARD.encode(der.as_bytes()),
    })
}

fn read(path: &Path) -> Result<Option<Stored>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("signing keys {} are not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read signing keys {}", path.display())),
    }
}

/// Durably replaces `path` (through a mode 0600 temporary file).
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::replace(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
