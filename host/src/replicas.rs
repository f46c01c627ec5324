//! Replica credentials: what a proxy filter presents to fetch the
//! registry's snapshot from `keyhost serve` (`GET /v1/snapshot`). A replica
//! credential is not a user's key: it reads the snapshot (hashes and
//! records, never a secret) and nothing else, and no key check accepts it.
//!
//! They are kept beside the registry (`side_files::replicas_path`, mode
//! 0600) as SHA-256 hashes, under a name; the secret is printed once, at
//! `keyhost replica add`. Revoking one takes effect at the next fetch: serve
//! reads the file on every fetch.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::durable;
use crate::key_format::{self, Secret};
use crate::side_files::replicas_path;
use crate::time::Timestamp;
use keyhost_core::replica_proof;

/// One credential as its file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The name it was added under (a proxy, a site).
    pub name: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// The SHA-256 of the secret, hex.
    #[serde(rename = "sha256")]
    hash: String,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stored {
    replicas: Vec<Replica>,
}

/// Whether `name` may name a replica: printable, short, no spaces.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        bail!("replica name {name:?} must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`");
    }
    Ok(())
}

/// Adds a credential named `name` for the registry at `registry` (whose
/// secrets start with `prefix`), and returns its secret: shown once, kept
/// nowhere.
pub fn add(registry: &Path, prefix: &str, name: &str, now: Timestamp) -> Result<Secret> {
    validate_name(name)?;
    let secret = key_format::generate_replica(prefix);
    change(registry, |stored| {
        if stored.replicas.iter().any(|r| r.name == name) {
            bail!(
                "a replica credential named {name:?} exists; revoke it first, or choose another name"
            );
        }
        stored.replicas.push(Replica {
            name: name.to_string(),
            created_at: now,
            hash: hex::encode(key_format::hash(secret.expose())),
        });
        Ok(())
    })?;
    Ok(secret)
}

/// Revokes the credential named `name`.
pub fn revoke(registry: &Path, name: &str) -> Result<()> {
    change(registry, |stored| {
        let before = stored.replicas.len();
        stored.replicas.retain(|r| r.name != name);
        if stored.replicas.len() == before {
            bail!("no replica credential is named {name:?}");
        }
        Ok(())
    })
}

/// Every credential, oldest first.
pub fn list(registry: &Path) -> Result<Vec<Replica>> {
    Ok(read(&replicas_path(registry))?.unwrap_or_default().replicas)
}

/// The name of the credential `presented` is, if it is one. Every stored
/// hash is compared, in constant time.
pub fn verify(registry: &Path, presented: &str) -> Result<Option<String>> {
    Ok(named(&list(registry)?, presented))
}

/// The name of the credential among `replicas` that `presented` is, if it
/// is one. Every stored hash is compared, in constant time.
pub fn named(replicas: &[Replica], presented: &str) -> Option<String> {
    let hash = key_format::hash(presented);
    let mut found = None;
    for replica in replicas {
        let Ok(stored) = hex::decode(&replica.hash) else {
            continue;
        };
        if bool::from(stored.as_slice().ct_eq(&hash)) {
            found = Some(replica.name.clone());
        }
    }
    found
}

/// The name and key (the credential's SHA-256) of the credential that
/// proves a fetch of `path` with `nonce` (`replica_proof`), if one does.
/// Every stored credential is tried, each compared in constant time.
pub fn verify_proof(
    registry: &Path,
    nonce: &str,
    path: &str,
    proof: &str,
) -> Result<Option<(String, [u8; 32])>> {
    let mut found = None;
    for replica in list(registry)? {
        let Ok(key) = <[u8; 32]>::try_from(hex::decode(&replica.hash).unwrap_or_default()) else {
            continue;
        };
        if replica_proof::verify_request(&key, nonce, path, proof) {
            found = Some((replica.name, key));
        }
    }
    Ok(found)
}

fn change(registry: &Path, change: impl FnOnce(&mut Stored) -> Result<()>) -> Result<()> {
    let path = replicas_path(registry);
    let _lock = durable::lock(&path)?;
    durable::remove_stale_temps(&path);
    let mut stored = read(&path)?.unwrap_or_default();
    change(&mut stored)?;
    durable::replace(&path, &serde_json::to_vec_pretty(&stored)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read(path: &Path) -> Result<Option<Stored>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("replica credentials {} are not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read replica credentials {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_verifies_until_revoked_and_only_its_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("keys.toml");
        let now = Timestamp(1_700_000_000);
        let secret = add(&registry, "kh", "envoy-1", now).unwrap();
        assert!(secret.expose().starts_with("kh_rep_"));
        assert!(
            key_format::parse("kh", secret.expose()).is_err(),
            "no key check accepts it"
        );
        let file = std::fs::read_to_string(replicas_path(&registry)).unwrap();
        assert!(!file.contains(secret.expose()));
        assert_eq!(
            verify(&registry, secret.expose()).unwrap().as_deref(),
            Some("envoy-1")
        );
        assert_eq!(verify(&registry, "kh_rep_guess").unwrap(), None);
        let nonce = "00112233445566778899";
        let key = key_format::hash(secret.expose());
        let header = replica_proof::authorization(&key, nonce, "/v1/snapshot");
        let (nonce, proof) = replica_proof::parse_authorization(&header).unwrap();
        let proven = verify_proof(&registry, nonce, "/v1/snapshot", proof).unwrap();
        assert_eq!(proven, Some(("envoy-1".to_string(), key)));
        assert_eq!(
            verify_proof(&registry, nonce, "/v1/keys", proof).unwrap(),
            None
        );
        assert!(
            add(&registry, "kh", "envoy-1", now).is_err(),
            "names are unique"
        );
        assert!(add(&registry, "kh", "bad name\n", now).is_err());
        revoke(&registry, "envoy-1").unwrap();
        assert_eq!(verify(&registry, secret.expose()).unwrap(), None);
        assert!(revoke(&registry, "envoy-1").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(replicas_path(&registry))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
