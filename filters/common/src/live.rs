//! Fetching snapshots from `keyhost serve`'s snapshot endpoint: the request
//! a filter sends, and what it makes of the answer. The sending is the
//! proxy's (proxy-wasm's `dispatch_http_call`); requests never wait on it.
//!
//! A fetch proves the replica credential without sending it, and takes only
//! an answer serve proved for this fetch's nonce (`replica_proof`): whoever
//! sits between the proxy and serve cannot forge or replay a snapshot or a
//! "not modified".

use keyhost_core::key_hash::KeyHash;
use keyhost_core::lookup::Lookup;
use keyhost_core::replica_proof;
use keyhost_core::snapshot::Snapshot;

use crate::config::{Live, verified};

/// One fetch: what it sent, to check the answer against.
pub struct Fetch {
    /// The nonce it sent.
    pub nonce: String,
    /// The entity tag of the snapshot held when it was sent.
    pub sent_etag: Option<String>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
}

/// The prefix of the shared data in which a proxy's VMs share what one
/// endpoint gave them (its snapshot, tag, due and proven times), for the
/// holder of the credential whose SHA-256 is `key`. Cluster, authority,
/// path and credential all name it: filters that reach two registries
/// through one cluster, or one with two credentials, never take each
/// other's snapshot, nor count a proven answer of the other's.
pub fn shared_name(live: &Live, key: &[u8; 32]) -> String {
    // Each part with its length, so that none can be shifted into the next.
    let endpoint: String = [&live.cluster, &live.authority, &live.path]
        .iter()
        .map(|part| format!("{}:{part}\n", part.len()))
        .chain([KeyHash(*key).to_string()])
        .collect();
    format!("keyhost/{}", KeyHash::of(&endpoint))
}

/// A new nonce: 16 random bytes, hex.
fn nonce() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a nonce: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fetch by the holder of the credential whose SHA-256 is `key`. With
/// `have`, it sends that snapshot's entity tag, so an unchanged registry
/// costs a "not modified" and no body.
pub fn fetch(
    live: &Live,
    key: &[u8; 32],
    have: Option<&Snapshot<Vec<u8>>>,
) -> Result<Fetch, String> {
    let nonce = nonce()?;
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), live.path.clone()),
        (":authority".to_string(), live.authority.clone()),
        (
            "authorization".to_string(),
            replica_proof::authorization(key, &nonce, &live.path),
        ),
    ];
    let sent_etag = have.and_then(|snapshot| snapshot.etag().ok());
    if let Some(etag) = &sent_etag {
        headers.push(("if-none-match".to_string(), etag.clone()));
    }
    Ok(Fetch {
        nonce,
        sent_etag,
        headers,
    })
}

/// What a fetch brought.
pub enum Fetched {
    /// The registry has not changed.
    Unchanged,
    /// A newer snapshot, verified whole.
    New(Box<Snapshot<Vec<u8>>>),
}

/// The answer with `status`, serve's `proof` and `body` to `fetch`, made
/// while holding `have`, by the holder of `key`. An `Err` says why it is
/// refused; the snapshot in force stays.
pub fn answer(
    fetch: &Fetch,
    key: &[u8; 32],
    status: Option<&str>,
    proof: Option<&str>,
    body: Option<Vec<u8>>,
    have: Option<&Snapshot<Vec<u8>>>,
) -> Result<Fetched, String> {
    let proven = |status: u16, etag: &str| {
        proof.is_some_and(|proof| {
            replica_proof::verify_answer(key, &fetch.nonce, status, etag, proof)
        })
    };
    match status {
        Some("304") => {
            let etag = fetch.sent_etag.as_deref().unwrap_or_default();
            if !proven(304, etag) {
                return Err(
                    "its \"not modified\" is not proven by keyhost serve for this fetch".into(),
                );
            }
            Ok(Fetched::Unchanged)
        }
        Some("200") => {
            let snapshot = verified(body.unwrap_or_default())
                .map_err(|e| format!("the snapshot it sent is refused: {e}"))?;
            let etag = snapshot.etag().map_err(|e| format!("{e:#}"))?;
            if !proven(200, &etag) {
                return Err(
                    "the snapshot it sent is refused: it is not proven by keyhost serve for this fetch"
                        .into(),
                );
            }
            newer_than(snapshot, have).map(|snapshot| Fetched::New(Box::new(snapshot)))
        }
        // An answer keyhost serve made carries its proof; one without came
        // from Envoy itself, which answers 503 when it cannot connect.
        Some(other) if proof.is_none() => Err(format!(
            "keyhost serve could not be reached (the proxy answered {other} itself: no connection to the cluster, or it reset)"
        )),
        Some(other) => Err(format!("keyhost serve answered {other}")),
        None => Err("keyhost serve did not answer".into()),
    }
}

/// `snapshot`, unless it is older than `have`: an older registry could
/// bring back a revoked key.
pub fn newer_than(
    snapshot: Snapshot<Vec<u8>>,
    have: Option<&Snapshot<Vec<u8>>>,
) -> Result<Snapshot<Vec<u8>>, String> {
    match have {
        Some(have) if snapshot.revision() < have.revision() => Err(format!(
            "the snapshot it sent is refused: its revision {} is older than {} in force",
            snapshot.revision(),
            have.revision()
        )),
        _ => Ok(snapshot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::tests::snapshot_of;

    const KEY: [u8; 32] = [9u8; 32];

    fn live() -> Live {
        serde_json::from_str(r#"{"cluster": "keyhost"}"#).unwrap()
    }

    /// serve's answer to `fetch`, with `body`, proven with `key`.
    fn proven(fetch: &Fetch, key: &[u8; 32], status: u16, body: &[u8]) -> String {
        let etag = match status {
            200 => Snapshot::open(body).unwrap().etag().unwrap(),
            _ => fetch.sent_etag.clone().unwrap(),
        };
        replica_proof::answer_proof(key, &fetch.nonce, status, &etag)
    }

    #[test]
    fn filters_share_what_they_fetched_only_with_filters_of_the_same_endpoint_and_credential() {
        let name =
            |json: &str, key: [u8; 32]| shared_name(&serde_json::from_str(json).unwrap(), &key);
        let base = name(r#"{"cluster": "keyhost"}"#, KEY);
        assert_eq!(base, shared_name(&live(), &KEY));
        for (json, key) in [
            (r#"{"cluster": "keyhost", "authority": "tenant-b"}"#, KEY),
            (r#"{"cluster": "keyhost", "path": "/b/v1/snapshot"}"#, KEY),
            (r#"{"cluster": "keyhost-b"}"#, KEY),
            (r#"{"cluster": "keyhost"}"#, [8u8; 32]),
        ] {
            assert_ne!(name(json, key), base, "{json} shares with the first");
        }
        // Fields cannot be shifted from one into the next.
        assert_ne!(
            name(r#"{"cluster": "a", "authority": "b\nc"}"#, KEY),
            name(r#"{"cluster": "a\nb", "authority": "c"}"#, KEY)
        );
    }

    #[test]
    fn only_a_whole_newer_proven_snapshot_is_taken() {
        let (current, _) = snapshot_of(5, &[]);
        let have = Snapshot::open(current).unwrap();
        let fetch = fetch(&live(), &KEY, Some(&have)).unwrap();
        let unchanged = proven(&fetch, &KEY, 304, b"");
        assert!(matches!(
            answer(
                &fetch,
                &KEY,
                Some("304"),
                Some(&unchanged),
                None,
                Some(&have)
            ),
            Ok(Fetched::Unchanged)
        ));
        // A "not modified" nobody proved, or proved for another fetch.
        let other = super::fetch(&live(), &KEY, Some(&have)).unwrap();
        for proof in [None, Some(proven(&other, &KEY, 304, b""))] {
            assert!(
                answer(
                    &fetch,
                    &KEY,
                    Some("304"),
                    proof.as_deref(),
                    None,
                    Some(&have)
                )
                .is_err()
            );
        }
        let (newer, _) = snapshot_of(6, &[]);
        let proof = proven(&fetch, &KEY, 200, &newer);
        assert!(matches!(
            answer(
                &fetch,
                &KEY,
                Some("200"),
                Some(&proof),
                Some(newer.clone()),
                Some(&have)
            ),
            Ok(Fetched::New(_))
        ));
        // The same snapshot proven with another key, or replayed to another fetch.
        let forged = proven(&fetch, &[1u8; 32], 200, &newer);
        let replayed = proven(&other, &KEY, 200, &newer);
        for proof in [forged, replayed] {
            let refused = answer(
                &fetch,
                &KEY,
                Some("200"),
                Some(&proof),
                Some(newer.clone()),
                Some(&have),
            );
            assert!(refused.is_err_and(|e| e.contains("not proven")));
        }
        let mut flipped = newer.clone();
        let last = flipped.len() - 40;
        flipped[last] ^= 1;
        let truncated = newer[..newer.len() - 1].to_vec();
        let (older, _) = snapshot_of(4, &[]);
        let older_proof = proven(&fetch, &KEY, 200, &older);
        for (body, proof, why) in [
            (flipped, proof.clone(), "checksum"),
            (truncated, proof.clone(), "truncated"),
            (older, older_proof, "older"),
            (b"<html>".to_vec(), proof.clone(), "snapshot"),
        ] {
            let refused = answer(
                &fetch,
                &KEY,
                Some("200"),
                Some(&proof),
                Some(body),
                Some(&have),
            );
            let Err(e) = refused else {
                panic!("{why}: taken")
            };
            assert!(e.contains(why), "{why}: {e}");
        }
        // The proxy's own 503 (no connection to serve) says so; serve's
        // own answer of another status is named as serve's.
        let own = answer(&fetch, &KEY, Some("503"), None, None, Some(&have));
        assert!(own.is_err_and(|e| e.contains("could not be reached")));
        let served = answer(&fetch, &KEY, Some("503"), Some("x"), None, Some(&have));
        assert!(served.is_err_and(|e| e.contains("keyhost serve answered 503")));
        assert!(answer(&fetch, &KEY, Some("401"), None, None, Some(&have)).is_err());
        assert!(answer(&fetch, &KEY, None, None, None, None).is_err());
    }

    #[test]
    fn a_fetch_proves_the_credential_without_sending_it() {
        let (bytes, _) = snapshot_of(1, &[]);
        let have = Snapshot::open(bytes).unwrap();
        let sent = fetch(&live(), &KEY, Some(&have)).unwrap();
        let get = |name: &str| {
            sent.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(":path").as_deref(), Some("/v1/snapshot"));
        let authorization = get("authorization").unwrap();
        let (nonce, proof) = replica_proof::parse_authorization(&authorization).unwrap();
        assert!(replica_proof::verify_request(
            &KEY,
            nonce,
            "/v1/snapshot",
            proof
        ));
        assert_eq!(get("if-none-match"), Some(have.etag().unwrap()));
        let again = fetch(&live(), &KEY, None).unwrap();
        assert_ne!(again.nonce, sent.nonce, "a nonce is never reused");
        assert!(again.headers.iter().all(|(n, _)| n != "if-none-match"));
    }
}
