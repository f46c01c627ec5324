//! GitHub's secret scanning alerts (`POST /v1/leaks/github`), signed with a
//! P-256 key set the test publishes itself, as GitHub publishes its own:
//! a real alert marks the keys leaked; a forged, replayed, stale-keyed or
//! oversized one changes nothing it should not.

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Sandbox, Server, http};

/// A signing key from fixed bytes: the test's stand-in for one of GitHub's.
fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).expect("a P-256 scalar")
}

fn pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("a PEM public key")
}

/// Writes the published set: `current` in use, `old` no longer.
fn publish(s: &Sandbox, current: &SigningKey, old: &SigningKey) -> String {
    let set = json!({ "public_keys": [
        { "key_identifier": "current-key", "key": pem(current), "is_current": true },
        { "key_identifier": "old-key", "key": pem(old), "is_current": false },
    ]});
    let path = s.dir.path().join("github-keys.json");
    std::fs::write(&path, set.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// Posts `body` as an alert with these signature headers: status and body.
fn alert(
    server: &Server,
    body: &[u8],
    key_id: Option<&str>,
    signature: Option<&str>,
) -> (u16, Value) {
    let mut request = http()
        .post(server.url("/v1/leaks/github"))
        .header("content-type", "application/json");
    if let Some(key_id) = key_id {
        request = request.header("github-public-key-identifier", key_id);
    }
    if let Some(signature) = signature {
        request = request.header("github-public-key-signature", signature);
    }
    let mut response = request.send(body).expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn tokens(secrets: &[&str]) -> Vec<u8> {
    let list: Vec<Value> = secrets
        .iter()
        .map(|token| {
            json!({ "token": token, "type": "keyhost_api_key", "url": "https://github.com/o/r/blob/x/f", "source": "content" })
        })
        .collect();
    serde_json::to_vec(&list).unwrap()
}

fn hash_hex(token: &str) -> String {
    Sha256::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leaked(s: &Sandbox, id: &str) -> bool {
    s.ok(&["show", id])["key"]["leaked"].as_bool().unwrap()
}

#[test]
fn a_signed_alert_marks_the_keys_found_and_labels_every_token() {
    let s = Sandbox::new().with_people();
    let (found, found_secret) = s.create(&["--as", "user:alice", "--name", "pushed"]);
    let (rotated, old_secret) = s.create(&["--as", "user:alice", "--name", "rotated"]);
    let new_secret = s.ok(&["rotate", &rotated, "--as", "user:alice", "--grace", "1h"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (untouched, _) = s.create(&["--as", "user:bob", "--name", "quiet"]);
    let (current, old) = (signing_key(7), signing_key(9));
    let keys = publish(&s, &current, &old);
    let server = s.serve(&["--github-keys", &keys]);

    let body = tokens(&[
        &found_secret,
        &old_secret,
        "kh_usr_notakeyatall",
        "ghp_somethingelse",
    ]);
    let (status, labels) = alert(
        &server,
        &body,
        Some("current-key"),
        Some(&sign(&current, &body)),
    );
    assert_eq!(status, 200, "{labels}");
    let labels = labels.as_array().unwrap();
    let said: Vec<(&str, &str)> = labels
        .iter()
        .map(|l| {
            (
                l["token_hash"].as_str().unwrap(),
                l["label"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            (hash_hex(&found_secret).as_str(), "true_positive"),
            (hash_hex(&old_secret).as_str(), "true_positive"),
            (hash_hex("kh_usr_notakeyatall").as_str(), "false_positive"),
            (hash_hex("ghp_somethingelse").as_str(), "false_positive"),
        ]
    );
    assert_eq!(labels[0]["token_type"], "keyhost_api_key");
    // No token comes back, and none is logged.
    let answer = Value::Array(labels.clone()).to_string();
    assert!(!answer.contains(&found_secret) && !answer.contains(&old_secret));

    assert!(leaked(&s, &found));
    // The rotated key's old secret was seen: it stops now, and the key's
    // new secret, which nobody saw, goes on working.
    assert!(!leaked(&s, &rotated));
    assert_eq!(s.decide(&old_secret, &[]), "not_found");
    assert_eq!(s.decide(&new_secret, &[]), "allow");
    assert!(!leaked(&s, &untouched));
    let log = server.log();
    assert!(
        log.contains(&found) && !log.contains(&found_secret),
        "{log}"
    );

    // The same alert again, once the leaked key is rotated (a leaked
    // secret gets no grace): the new secret, which nobody saw, is not
    // marked, and the old one is no key any more.
    let fresh = s.ok(&["rotate", &found, "--as", "user:alice"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!leaked(&s, &found), "rotating clears the leak");
    // Once serve has the rotation in force:
    server.auth_becomes_within(
        &fresh,
        200,
        "the rotated key's new secret",
        std::time::Duration::from_secs(5),
    );
    let (status, again) = alert(
        &server,
        &body,
        Some("current-key"),
        Some(&sign(&current, &body)),
    );
    assert_eq!(status, 200);
    assert_eq!(again[0]["label"], "false_positive", "{again}");
    assert!(!leaked(&s, &found), "a replay marked the new secret");
    assert_eq!(s.decide(&fresh, &[]), "allow");
    assert_eq!(s.decide(&found_secret, &[]), "not_found");
    assert!(!server.log().contains(&fresh));
}

/// An alert that must be refused: what it is, its body, its key id and
/// signature headers, and the status it gets.
type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<String>, u16);

#[test]
fn a_forged_stale_or_oversized_alert_changes_nothing() {
    let s = Sandbox::new().with_people();
    let (id, secret) = s.create(&["--as", "user:alice", "--name", "pushed"]);
    let (current, old) = (signing_key(7), signing_key(9));
    let keys = publish(&s, &current, &old);
    let server = s.serve(&["--github-keys", &keys]);
    let body = tokens(&[&secret]);
    let before = std::fs::read(s.registry()).unwrap();

    let other = tokens(&["kh_usr_somethingharmless"]);
    let forged = signing_key(11);
    let thousand_and_one: Vec<String> = (0..1001).map(|n| format!("token-{n}")).collect();
    let many = tokens(
        &thousand_and_one
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let cases: Vec<Case> = vec![
        // A valid signature, for another payload.
        (
            "another payload's signature",
            body.clone(),
            Some("current-key"),
            Some(sign(&current, &other)),
            401,
        ),
        (
            "a key GitHub no longer uses",
            body.clone(),
            Some("old-key"),
            Some(sign(&old, &body)),
            401,
        ),
        (
            "a key GitHub never published",
            body.clone(),
            Some("nobody"),
            Some(sign(&forged, &body)),
            401,
        ),
        (
            "a forger's key named as GitHub's",
            body.clone(),
            Some("current-key"),
            Some(sign(&forged, &body)),
            401,
        ),
        ("no signature", body.clone(), Some("current-key"), None, 400),
        (
            "a signature that is not base64",
            body.clone(),
            Some("current-key"),
            Some("%%%".into()),
            401,
        ),
        (
            "too many tokens",
            many.clone(),
            Some("current-key"),
            Some(sign(&current, &many)),
            413,
        ),
    ];
    for (what, body, key_id, signature, status) in cases {
        let (got, answer) = alert(&server, &body, key_id, signature.as_deref());
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer["error"]["message"].as_str().is_some(),
            "{what}: {answer}"
        );
    }
    // A body said to be past the alert limit (1 MiB; here 100 MB) is
    // refused before it is read: the head alone is answered.
    let huge = 100 << 20;
    let answer = server.raw(
        format!(
            "POST /v1/leaks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Github-Public-Key-Identifier: current-key\r\nGithub-Public-Key-Signature: {}\r\n\
             Content-Length: {huge}\r\nConnection: close\r\n\r\n[",
            sign(&current, b"[")
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Signed, but not an alert.
    let junk = b"{\"token\": 1}".to_vec();
    let (status, _) = alert(
        &server,
        &junk,
        Some("current-key"),
        Some(&sign(&current, &junk)),
    );
    assert_eq!(status, 400);

    assert!(
        std::fs::read(s.registry()).unwrap() == before,
        "a refused alert wrote"
    );
    assert!(!leaked(&s, &id));

    // A serve without the key set takes no alert at all.
    let plain = s.serve(&[]);
    let (status, _) = alert(
        &plain,
        &body,
        Some("current-key"),
        Some(&sign(&current, &body)),
    );
    assert_eq!(status, 404);
    assert!(!leaked(&s, &id));
}
