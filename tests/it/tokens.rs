//! Logging in with a key: `POST /identity/token` exchanges an API key for a
//! short-lived ES256 token, `GET /identity/keys` publishes the keys that
//! verify it, and the token works wherever a key does (`/auth`, the
//! management API, `keyhost check`), until its key is disabled, deleted or
//! leaked.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::foreign::python;
use crate::support::root;
use crate::support::{Sandbox, Server, http};

const GRANT: &str = "urn:ibm:params:oauth:grant-type:apikey";
/// A token is valid for the service it was issued for (`keyhost` unless the
/// exchange names one), and only where a request names it.
const KEYHOST: [(&str, &str); 1] = [("x-keyhost-service", "keyhost")];

/// `POST /identity/token` with `form`; the status and the JSON answer.
fn exchange(server: &Server, form: &[(&str, &str)]) -> (u16, Value) {
    let mut response = http()
        .post(&server.url("/identity/token"))
        .send_form(form.iter().copied())
        .expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A token for `key`, for the service `keyhost` unless `service` says.
fn token_for(server: &Server, key: &str, service: Option<&str>) -> String {
    let mut form = vec![("grant_type", GRANT), ("apikey", key)];
    if let Some(service) = service {
        form.push(("service", service));
    }
    let (status, body) = exchange(server, &form);
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("a token").to_string()
}

/// `/auth` with a bearer credential and headers; the status and body.
fn auth(server: &Server, credential: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http()
        .get(&server.url("/auth"))
        .header("authorization", &format!("Bearer {credential}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// Polls `/auth` with `headers` until it answers `status`, for at most
/// `within`; how long that took, and the answer.
fn until_status(
    server: &Server,
    token: &str,
    headers: &[(&str, &str)],
    status: u16,
    within: Duration,
) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let (now, body) = auth(server, token, headers);
        if now == status {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < within,
            "/auth still answers {now} after {within:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_token_verifies_against_the_published_keys_with_an_independent_library() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "cli", "--scope", "read"]);
    let server = s.serve(&[]);
    let (status, body) = exchange(&server, &[("grant_type", GRANT), ("apikey", &key)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{body}");
    let token = body["access_token"].as_str().unwrap();

    // PyJWT fetches /identity/keys itself and checks signature, issuer and
    // expiry.
    let mut verify = python()
        .arg(root().join("tests/foreign/python/verify_token.py"))
        .arg(server.url("/identity/keys"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    verify
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let output = verify.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let claims: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(claims["iam_id"], "user:alice");
    assert_eq!(claims["sub"], "user:alice");
    assert_eq!(claims["key_id"], id.as_str());
    assert_eq!(claims["key_kind"], "user");
    assert_eq!(
        claims["scope"], "read",
        "the key's scopes narrow the identity's"
    );
    assert_eq!(claims["service"], "keyhost");
    assert!(claims["rev"].as_u64().is_some());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The token works at /auth, for what the key may do.
    let (status, _) = auth(&server, token, &[KEYHOST[0], ("x-keyhost-scope", "read")]);
    assert_eq!(status, 200);
    let (status, body) = auth(&server, token, &[KEYHOST[0], ("x-keyhost-scope", "write")]);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, body) = auth(&server, token, &[("x-keyhost-service", "databases")]);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("wrong_service"))
    );

    // The JWKS holds public keys only.
    let mut response = http().get(&server.url("/identity/keys")).call().unwrap();
    let jwks: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let published = &jwks["keys"][0];
    assert_eq!(
        (published["kty"].as_str(), published["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(
        published.get("d").is_none(),
        "a private key was published: {published}"
    );
    assert!(!server.log().contains(token), "the token reached the log");
}

#[test]
fn tampered_expired_unknown_key_and_unsigned_tokens_get_401() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "cli"]);
    let server = s.serve(&["--token-ttl", "2s"]);
    let token = token_for(&server, &key, None);
    assert_eq!(auth(&server, &token, &KEYHOST).0, 200);

    // A changed payload (a wider scope) no longer matches the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims = claims_of(&token);
    claims["scope"] = "read write admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let (status, body) = auth(&server, &tampered, &KEYHOST);
    assert_eq!(status, 401, "{body}");

    // `alg: none`, with no signature.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{header}.{}.", parts[1]);
    assert_eq!(auth(&server, &unsigned, &KEYHOST).0, 401);

    // A token another keyhost signed names a key this one does not have.
    let other = Sandbox::new().with_people();
    let (_, other_key) = other.create(&["--as", "user:alice", "--name", "cli"]);
    let other_server = other.serve(&[]);
    let foreign = token_for(&other_server, &other_key, None);
    let (status, body) = auth(&server, &foreign, &KEYHOST);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("unknown key"),
        "{body}"
    );

    // Past its two seconds, the token is refused.
    std::thread::sleep(Duration::from_millis(2100));
    let (status, body) = auth(&server, &token, &KEYHOST);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[test]
fn disabling_deleting_or_leaking_the_key_stops_its_token_within_five_seconds() {
    let s = Sandbox::new().with_people();
    let cases = [
        ("disable", "disabled", 403),
        ("leak", "leaked", 403),
        ("delete", "not_found", 401),
    ];
    let keys: Vec<(String, String)> = cases
        .iter()
        .map(|(action, _, _)| s.create(&["--as", "user:alice", "--name", action]))
        .collect();
    let server = s.serve(&[]);
    for ((action, code, status), (id, key)) in cases.into_iter().zip(keys) {
        let token = token_for(&server, &key, None);
        assert_eq!(auth(&server, &token, &KEYHOST).0, 200);
        s.ok(&[action, &id, "--as", "user:alice"]);
        let (took, body) = until_status(&server, &token, &KEYHOST, status, Duration::from_secs(5));
        assert_eq!(body["code"], code, "after {action}");
        assert!(took < Duration::from_secs(5), "{action} took {took:?}");
    }
}

#[test]
fn a_rotated_signing_key_verifies_its_tokens_until_the_overlap_ends() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "cli"]);
    let server = s.serve(&[]);
    let old = token_for(&server, &key, None);
    let rotated = s.ok(&["token", "rotate-signing-key", "--overlap", "3s"]);
    let new_kid = rotated["kid"].as_str().unwrap().to_string();

    // serve takes the new key: new tokens name it, and both verify.
    let started = Instant::now();
    let new = loop {
        let token = token_for(&server, &key, None);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        if header["kid"] == new_kid.as_str() {
            break token;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "serve kept the old key"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        auth(&server, &old, &KEYHOST).0,
        200,
        "the old key still verifies"
    );
    assert_eq!(auth(&server, &new, &KEYHOST).0, 200);

    // Once the overlap is over (its end rounded up to the second), the old
    // key verifies nothing.
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = auth(&server, &old, &KEYHOST);
    assert_eq!(status, 401, "{body}");
    assert_eq!(auth(&server, &new, &KEYHOST).0, 200);
    let signing =
        std::fs::metadata(format!("{}.signing-keys.json", s.registry().display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(signing.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_rotated_signing_keys_overlap_ends_no_sooner_than_asked() {
    let s = Sandbox::new().with_people();
    // The first makes a signing key; the second gives it an end.
    s.ok(&["token", "rotate-signing-key", "--overlap", "2s"]);
    let asked = std::time::SystemTime::now() + Duration::from_secs(2);
    s.ok(&["token", "rotate-signing-key", "--overlap", "2s"]);
    let published: Value = serde_json::from_slice(
        &std::fs::read(format!("{}.token-keys.json", s.registry().display())).unwrap(),
    )
    .unwrap();
    let ends: Vec<std::time::SystemTime> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|key| key["verify_until"].as_str())
        .map(|until| humantime::parse_rfc3339(until).unwrap())
        .collect();
    assert!(
        ends.iter().max().is_some_and(|end| *end >= asked),
        "the overlap ends before 2 s from the rotation: {published}"
    );
}

#[test]
fn a_rate_limited_exchange_says_when_to_try_again_and_a_doubled_field_is_named() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "slow",
        "--rate-limit",
        "1/min",
    ]);
    let server = s.serve(&[]);
    token_for(&server, &key, None);
    let mut response = http()
        .post(&server.url("/identity/token"))
        .send_form([("grant_type", GRANT), ("apikey", key.as_str())])
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("rate_limited")
    );

    let (status, body) = exchange(
        &server,
        &[("grant_type", GRANT), ("apikey", &key), ("apikey", &key)],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let said = body["error_description"].as_str().unwrap();
    assert!(said.contains("duplicate field `apikey`"), "{said}");
    assert!(!said.contains(key.as_str()), "{said}");
}

#[test]
fn a_token_manages_keys_and_passes_keyhost_check() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "cli"]);
    let server = s.serve(&[]);
    let token = token_for(&server, &key, None);
    let mut response = http()
        .get(&server.url("/v1/keys"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let listed: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str())
    );

    let run = s.run_with(&["check", "--json", "--service", "keyhost"], &token, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["key_id"], id.as_str());
    let run = s.run_with(&["check", "--json", "--service", "databases"], &token, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["code"], "wrong_service");
}

#[test]
fn the_exchange_refuses_what_the_key_may_not_do_in_oauth_form() {
    let s = Sandbox::new().with_people();
    let (_, classic) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "classic",
        "--kind",
        "classic-infrastructure",
    ]);
    let (_, expiring) = s.create(&["--as", "user:alice", "--name", "short", "--expires", "30s"]);
    let server = s.serve(&[]);

    // A classic-infrastructure key reaches only its one service.
    let (status, body) = exchange(&server, &[("grant_type", GRANT), ("apikey", &classic)]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("wrong_service")
    );
    token_for(&server, &classic, Some("classic-infrastructure"));

    let (status, body) = exchange(&server, &[("grant_type", GRANT), ("apikey", "kh_usr_nope")]);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = exchange(&server, &[("grant_type", "password"), ("apikey", &classic)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = exchange(&server, &[("grant_type", GRANT)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // A token is not a key: it cannot be exchanged for a longer one.
    let token = token_for(&server, &classic, Some("classic-infrastructure"));
    let (status, body) = exchange(&server, &[("grant_type", GRANT), ("apikey", &token)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A token never outlives its key.
    let short = token_for(&server, &expiring, None);
    let claims = claims_of(&short);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(lifetime <= 30, "a 30 s key got a {lifetime} s token");
}

#[test]
fn rotating_the_secret_ends_its_tokens_and_a_leaked_key_stays_shut() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "rotated"]);
    let (leaky, leaky_key) = s.create(&["--as", "user:alice", "--name", "leaky"]);
    let server = s.serve(&[]);
    let token = token_for(&server, &key, Some("databases"));
    let service = [("x-keyhost-service", "databases")];
    assert_eq!(auth(&server, &token, &service).0, 200);

    // During a rotation's grace period, the old secret still works, and so
    // does a token exchanged for it; end-grace ends both.
    let rotated = s.ok(&["rotate", &id, "--as", "user:alice", "--grace", "1h"]);
    let new_key = rotated["key"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(auth(&server, &token, &service).0, 200);
    let on_new = token_for(&server, &new_key, Some("databases"));
    s.ok(&["end-grace", &id, "--as", "user:alice"]);
    let (_, body) = until_status(&server, &token, &KEYHOST, 401, Duration::from_secs(5));
    assert!(
        body["reason"].as_str().unwrap().contains("rotated"),
        "{body}"
    );
    assert_eq!(auth(&server, &on_new, &service).0, 200);

    // Leak, then rotate (which clears the flag): the leaked secret's token
    // stays refused.
    let leaked_token = token_for(&server, &leaky_key, Some("databases"));
    s.ok(&["leak", &leaky, "--as", "user:alice"]);
    until_status(
        &server,
        &leaked_token,
        &KEYHOST,
        403,
        Duration::from_secs(5),
    );
    s.ok(&["rotate", &leaky, "--as", "user:alice"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(auth(&server, &leaked_token, &service).0, 401);
}

#[test]
fn a_token_is_valid_only_where_its_service_is_named() {
    let s = Sandbox::new().with_people();
    let (_, bound) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "db",
        "--kind",
        "service-specific",
        "--service",
        "db",
    ]);
    let server = s.serve(&[]);
    let token = token_for(&server, &bound, Some("db"));
    assert_eq!(auth(&server, &token, &[("x-keyhost-service", "db")]).0, 200);
    // No service named: refused, as a service-bound key would be.
    let (status, body) = auth(&server, &token, &[]);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("wrong_service")),
        "{body}"
    );
    let mut response = http()
        .post(&server.url("/v1/keys/verify"))
        .send_json(serde_json::json!({ "key": token }))
        .unwrap();
    let verified: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(verified["valid"], false, "{verified}");
    // A token for the management API is no token for an upstream.
    let (_, user_key) = s.create(&["--as", "user:alice", "--name", "console"]);
    std::thread::sleep(Duration::from_millis(600));
    let console = token_for(&server, &user_key, None);
    let (status, body) = auth(&server, &console, &[("x-keyhost-service", "databases")]);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("wrong_service"))
    );
}

#[test]
fn the_policy_decides_on_a_token_as_on_its_key() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "no-expiry"]);
    let live = s.dir.path().join("live.wasm");
    std::fs::copy(crate::support::policy("keyhost_policy_default.wasm"), &live).unwrap();
    let server = s.serve(&["--policy", live.to_str().unwrap()]);
    let token = token_for(&server, &key, Some("databases"));
    let service = [("x-keyhost-service", "databases")];
    assert_eq!(auth(&server, &token, &service).0, 200);
    // The strict policy wants an expiry on every key: swapped in, it refuses
    // the token too, without a new exchange.
    std::fs::copy(crate::support::policy("keyhost_policy_strict.wasm"), &live).unwrap();
    let (_, body) = until_status(&server, &token, &service, 403, Duration::from_secs(10));
    assert_eq!(body["code"], "denied", "{body}");
    // keyhost check takes --policy for a token as for a key.
    let strict = crate::support::policy("keyhost_policy_strict.wasm");
    let run = s.run_with(
        &[
            "check",
            "--json",
            "--service",
            "databases",
            "--policy",
            strict.to_str().unwrap(),
        ],
        &token,
        &[],
    );
    assert_eq!((run.code, run.json()["code"].as_str()), (1, Some("denied")));
}

#[test]
fn a_scope_or_address_taken_away_after_the_exchange_is_refused() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&[]);
    let token = token_for(&server, &key, Some("databases"));
    let write = [
        ("x-keyhost-service", "databases"),
        ("x-keyhost-scope", "write"),
    ];
    assert_eq!(auth(&server, &token, &write).0, 200);
    s.ok(&[
        "identity",
        "update",
        "user:alice",
        "--remove-scope",
        "write",
    ]);
    let (_, body) = until_status(&server, &token, &write, 403, Duration::from_secs(5));
    assert_eq!(body["code"], "insufficient_scope", "{body}");
    s.ok(&[
        "update",
        &id,
        "--as",
        "user:alice",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let service = [("x-keyhost-service", "databases")];
    let (_, body) = until_status(&server, &token, &service, 403, Duration::from_secs(5));
    assert_eq!(body["code"], "ip_not_allowed", "{body}");
}

#[test]
fn forged_headers_and_a_service_ids_token_get_nothing() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let (_, app) = s.create(&[
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        "--name",
        "app",
    ]);
    let server = s.serve(&[]);
    let token = token_for(&server, &key, None);
    let parts: Vec<&str> = token.split('.').collect();

    // HS256 keyed with the published public key, a missing kid, and a
    // header that points at a key of the attacker's.
    let mut response = http().get(&server.url("/identity/keys")).call().unwrap();
    let jwks = response.body_mut().read_to_string().unwrap();
    for header in [
        r#"{"alg":"HS256","typ":"JWT"}"#.to_string(),
        r#"{"alg":"ES256","typ":"JWT"}"#.to_string(),
        format!(r#"{{"alg":"ES256","kid":"x","jku":"http://127.0.0.1:1/","jwk":{jwks}}}"#),
    ] {
        let forged = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            parts[1],
            parts[2]
        );
        let (status, body) = auth(&server, &forged, &KEYHOST);
        assert_eq!(status, 401, "{header}: {body}");
    }
    let app_token = token_for(&server, &app, None);
    let mut response = http()
        .get(&server.url("/v1/keys"))
        .header("authorization", &format!("Bearer {app_token}"))
        .call()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        403,
        "{}",
        response.body_mut().read_to_string().unwrap()
    );
}

#[test]
fn past_its_overlap_an_old_signing_key_is_neither_published_nor_kept() {
    let s = Sandbox::new().with_people();
    // `token keys` only reads: it makes no key.
    assert_eq!(s.ok(&["token", "keys"])["keys"], serde_json::json!([]));
    let signing = format!("{}.signing-keys.json", s.registry().display());
    assert!(!std::path::Path::new(&signing).exists());

    let server = s.serve(&[]);
    let first = s.ok(&["token", "keys"])["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&["token", "rotate-signing-key", "--overlap", "1s"]);
    // The overlap's end is rounded up to the second: 1 to 2 s from now.
    std::thread::sleep(Duration::from_millis(2100));
    let published = |server: &Server| -> Vec<String> {
        let mut response = http().get(&server.url("/identity/keys")).call().unwrap();
        let jwks: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        !published(&server).contains(&first),
        "{:?}",
        published(&server)
    );
    assert!(
        !s.ok(&["token", "keys"])["keys"]
            .to_string()
            .contains(&first)
    );
    // A restart drops it from the file of private keys.
    drop(server);
    let server = s.serve(&[]);
    assert!(!std::fs::read_to_string(&signing).unwrap().contains(&first));
    assert_eq!(published(&server).len(), 1);
}
