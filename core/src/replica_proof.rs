//! How a replica (a proxy filter fetching snapshots) proves to `keyhost
//! serve` that it holds a replica credential without sending it, and how
//! serve proves that an answer is its own and fresh: HMAC-SHA-256 keyed by
//! the credential's SHA-256 (the form serve keeps), over a nonce the
//! replica chose for this fetch. Whoever sits on the wire between them can
//! neither learn the credential, nor forge or replay a snapshot or a "not
//! modified"; what the snapshot says (hashes and records) is theirs to read
//! unless TLS carries it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The `Authorization` scheme of a proven fetch.
pub const SCHEME: &str = "KeyhostReplica";
/// The header of serve's answer that carries its proof.
pub const ANSWER_PROOF_HEADER: &str = "x-keyhost-answer-proof";

fn mac(key: &[u8; 32], parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `nonce` is one a replica may send: 16 to 64 letters and digits.
pub fn is_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `Authorization` value of a fetch of `path` with `nonce`, by the
/// holder of the credential whose SHA-256 is `key`.
pub fn authorization(key: &[u8; 32], nonce: &str, path: &str) -> String {
    let proof = mac(key, &["keyhost replica fetch", nonce, path]);
    format!("{SCHEME} nonce={nonce}, proof={proof}")
}

/// The nonce and proof of an `Authorization` value in this scheme.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.trim().strip_prefix(SCHEME)?.trim_start();
    let (mut nonce, mut proof) = (None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "nonce" => nonce = Some(value),
            "proof" => proof = Some(value),
            _ => return None,
        }
    }
    let nonce = nonce.filter(|n| is_nonce(n))?;
    Some((nonce, proof?))
}

/// Whether `proof` proves a fetch of `path` with `nonce` by the holder of
/// `key`. Compared in constant time.
pub fn verify_request(key: &[u8; 32], nonce: &str, path: &str, proof: &str) -> bool {
    let expected = mac(key, &["keyhost replica fetch", nonce, path]);
    bool::from(expected.as_bytes().ct_eq(proof.as_bytes()))
}

/// Serve's proof of an answer to the fetch with `nonce`: `status` (200 or
/// 304) for the snapshot with entity tag `etag` (the one sent, or the one
/// the replica holds and serve confirms).
pub fn answer_proof(key: &[u8; 32], nonce: &str, status: u16, etag: &str) -> String {
    mac(
        key,
        &["keyhost snapshot answer", nonce, &status.to_string(), etag],
    )
}

/// Whether `proof` is serve's for that answer. Compared in constant time.
pub fn verify_answer(key: &[u8; 32], nonce: &str, status: u16, etag: &str, proof: &str) -> bool {
    let expected = answer_proof(key, nonce, status, etag);
    bool::from(expected.as_bytes().ct_eq(proof.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_key_nonce_path_and_answer() {
        let key = [7u8; 32];
        let other = [8u8; 32];
        let nonce = "0123456789abcdef0123";
        let header = authorization(&key, nonce, "/v1/snapshot");
        let (n, proof) = parse_authorization(&header).unwrap();
        assert_eq!(n, nonce);
        assert!(verify_request(&key, nonce, "/v1/snapshot", proof));
        assert!(!verify_request(&other, nonce, "/v1/snapshot", proof));
        assert!(!verify_request(
            &key,
            "0123456789abcdef0124",
            "/v1/snapshot",
            proof
        ));
        assert!(!verify_request(&key, nonce, "/v1/other", proof));
        let answer = answer_proof(&key, nonce, 200, "\"aa\"");
        assert!(verify_answer(&key, nonce, 200, "\"aa\"", &answer));
        for (status, etag, nonce) in [
            (304, "\"aa\"", nonce),
            (200, "\"ab\"", nonce),
            (200, "\"aa\"", "fedcba9876543210fedc"),
        ] {
            assert!(!verify_answer(&key, nonce, status, etag, &answer));
        }
        for bad in [
            "Bearer x",
            "KeyhostReplica nonce=short, proof=x",
            "KeyhostReplica nonce=0123456789abcdef, extra=1",
        ] {
            assert_eq!(parse_authorization(bad), None, "{bad}");
        }
    }
}
