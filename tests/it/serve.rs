//! `keyhost serve` behind a real nginx, the Envoy and Traefik
//! contracts, live changes, the management API, rate limits, and logs that
//! never hold a secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::nginx::Nginx;
use crate::support::{Sandbox, Server, decisions, http, policy};
use serde_json::{Value, json};

fn get(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, ureq::http::HeaderMap) {
    let mut request = http().get(&server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        headers,
    )
}

fn send(server: &Server, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let agent = http();
    let url = server.url(path);
    let bearer = format!("Bearer {key}");
    let mut response = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &bearer).call(),
        ("DELETE", _) => agent.delete(&url).header("authorization", &bearer).call(),
        ("POST", body) => agent
            .post(&url)
            .header("authorization", &bearer)
            .send_json(body.unwrap_or(json!({}))),
        ("PATCH", body) => agent
            .patch(&url)
            .header("authorization", &bearer)
            .send_json(body.unwrap_or(json!({}))),
        (other, _) => panic!("no method {other}"),
    }
    .expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn header<'a>(headers: &'a ureq::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn nginx_auth_request_in_front_of_an_upstream() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "web"]);
    let (disabled_id, disabled) = s.create(&["--as", "user:alice", "--name", "off"]);
    s.ok(&["disable", &disabled_id, "--as", "user:alice"]);
    let server = s.serve(&["--trusted-proxy", "127.0.0.1"]);
    let nginx = Nginx::start(&s, &server);

    let (status, body, _) = nginx.get(Some(&key));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("upstream saw key id [{id}] owner [user:alice]")),
        "{body}"
    );

    let other = Sandbox::new().with_people();
    let (_, unknown) = other.create(&["--as", "user:alice", "--name", "elsewhere"]);
    let (status, _, challenge) = nginx.get(Some(&unknown));
    assert_eq!(status, 401);
    assert!(
        challenge.is_some_and(|c| c.starts_with("Bearer")),
        "nginx passes WWW-Authenticate on"
    );
    assert_eq!(nginx.get(None).0, 401);

    assert_eq!(nginx.get(Some(&disabled)).0, 403);
}

#[test]
fn a_service_or_scope_header_that_is_not_plain_text_is_refused_not_dropped() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "reader", "--scope", "read"]);
    let server = s.serve(&["--trusted-proxy", "127.0.0.1"]);
    let status = |name: &str, value: &[u8]| {
        let value = ureq::http::HeaderValue::from_bytes(value).expect("a header value");
        let mut response = http()
            .get(&server.url("/auth"))
            .header("x-api-key", &key)
            .header(name, value)
            .call()
            .unwrap();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), body)
    };
    // Read as absent, a scope the key lacks would be no scope at all, and
    // the request would pass.
    assert_eq!(status("x-keyhost-scope", b"write").0, 403);
    for (name, value) in [
        ("x-keyhost-scope", &b"write\xff"[..]),
        ("x-keyhost-scope", "\u{202E}write".as_bytes()),
        ("x-keyhost-service", &b"bill\xffing"[..]),
        ("x-keyhost-service", "\u{FEFF}billing".as_bytes()),
        ("x-forwarded-uri", &b"/admin\x80"[..]),
    ] {
        let (code, body) = status(name, value);
        assert_eq!(code, 403, "{name}: {value:?}: {body}");
        assert!(body.contains("\"denied\""), "{name}: {body}");
    }
    // Text that is UTF-8 and safe is read as it is.
    assert_eq!(status("x-keyhost-service", "café".as_bytes()).0, 200);
}

#[test]
fn envoy_ext_authz_http_contract() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "mesh", "--scope", "read"]);
    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&["--decision-log", log.to_str().unwrap()]);
    // Envoy sends the original method, and the original path after the
    // configured path_prefix, with the allowed headers.
    let mut response = http()
        .put(&server.url("/auth/api/items/7?dry=1"))
        .header("authorization", &format!("Bearer {key}"))
        .header("x-keyhost-service", "inventory")
        .header("x-keyhost-scope", "read")
        .send_empty()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(response.headers(), "x-keyhost-key-id"),
        Some(id.as_str())
    );
    assert_eq!(
        header(response.headers(), "x-keyhost-owner"),
        Some("user:alice")
    );
    assert_eq!(header(response.headers(), "x-keyhost-kind"), Some("user"));
    let _ = response.body_mut().read_to_string();

    // A denial: any status but 200, with a JSON body the client receives.
    let mut response = http()
        .delete(&server.url("/auth/api/items/7"))
        .header("authorization", &format!("Bearer {key}"))
        .header("x-keyhost-scope", "write")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["code"], "insufficient_scope");
    assert!(body["reason"].is_string());

    let entries = decisions(&log, 2);
    assert_eq!(entries[0]["method"], "PUT");
    assert_eq!(entries[0]["path"], "/api/items/7?dry=1");
    assert_eq!(entries[0]["service"], "inventory");
    assert_eq!(entries[1]["method"], "DELETE");
    assert_eq!(entries[1]["code"], "insufficient_scope");
}

#[test]
fn traefik_forward_auth_contract() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "edge",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&[
        "--decision-log",
        log.to_str().unwrap(),
        "--service",
        "shop",
        "--trusted-proxy",
        "127.0.0.0/8",
    ]);
    let forward = |client: &str| {
        get(
            &server,
            "/auth",
            &[
                ("x-api-key", key.as_str()),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-uri", "/cart/checkout"),
                ("x-forwarded-for", client),
            ],
        )
    };
    let (status, _, headers) = forward("10.9.8.7");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-keyhost-key-id"), Some(id.as_str()));
    let (status, body, _) = forward("192.0.2.50");
    assert_eq!(status, 403);
    assert_eq!(body["code"], "ip_not_allowed");
    let first = &decisions(&log, 1)[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/cart/checkout");
    assert_eq!(first["ip"], "10.9.8.7");
    assert_eq!(first["service"], "shop");
}

#[test]
fn json_verify_endpoint() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "api",
        "--for",
        "service-id:billing",
    ]);
    let server = s.serve(&[]);
    let verify = |body: Value| {
        let mut response = http()
            .post(&server.url("/v1/keys/verify"))
            .send_json(body)
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        serde_json::from_str::<Value>(&response.body_mut().read_to_string().unwrap()).unwrap()
    };
    let ok = verify(json!({ "key": key, "service": "databases", "scope": "read" }));
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["key_id"], id.as_str());
    assert_eq!(ok["owner"], "service-id:billing");
    assert_eq!(ok["kind"], "service-id");
    let no = verify(json!({ "key": key, "service": "classic-infrastructure" }));
    assert_eq!(
        (no["valid"].as_bool(), no["code"].as_str()),
        (Some(false), Some("wrong_service"))
    );
    let bad = verify(json!({ "key": "kh_usr_nope" }));
    assert_eq!(bad["code"], "malformed");
}

#[test]
fn a_key_created_with_the_cli_passes_within_one_second() {
    let s = Sandbox::new().with_people();
    let server = s.serve(&[]);
    let (_, key) = s.create(&["--as", "user:alice", "--name", "fresh"]);
    let created = Instant::now();
    loop {
        let (status, _, _) = get(&server, "/auth", &[("x-api-key", &key)]);
        if status == 200 {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "not live after 1 s (status {status})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_policy_swap_under_load_fails_no_request_and_changes_decisions() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "plain"]);
    let live = s.dir.path().join("live.wasm");
    std::fs::copy(policy("keyhost_policy_default.wasm"), &live).unwrap();
    let server = Arc::new(s.serve(&["--policy", live.to_str().unwrap()]));

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (server, stop, key) = (server.clone(), stop.clone(), key.clone());
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = http()
                    .get(&server.url("/auth"))
                    .header("x-api-key", &key)
                    .call();
                statuses.push(match response {
                    Ok(mut r) => {
                        let body = r.body_mut().read_to_string().unwrap_or_default();
                        let code: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        (
                            r.status().as_u16(),
                            code["code"].as_str().unwrap_or("").to_string(),
                        )
                    }
                    Err(_) => (0, "transport error".to_string()),
                });
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    // Swap by renaming a complete file into place, as a deploy would.
    let staged = s.dir.path().join("staged.wasm");
    std::fs::copy(policy("keyhost_policy_strict.wasm"), &staged).unwrap();
    std::fs::rename(&staged, &live).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().unwrap();

    assert!(statuses.len() > 50, "only {} requests", statuses.len());
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| ![200, 403].contains(status))
        .collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(statuses[0].0, 200, "the default policy allows the key");
    assert_eq!(
        statuses.last().unwrap(),
        &(403, "denied".to_string()),
        "the strict policy denies it"
    );
    let first_deny = statuses
        .iter()
        .position(|(status, _)| *status == 403)
        .unwrap();
    assert!(
        statuses[first_deny..]
            .iter()
            .all(|(status, _)| *status == 403),
        "decisions flip once"
    );
    assert!(server.log().contains("policy swapped"));
}

#[test]
fn a_broken_policy_file_keeps_the_old_policy_and_logs_why() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "plain"]);
    let live = s.dir.path().join("live.wasm");
    std::fs::copy(policy("keyhost_policy_default.wasm"), &live).unwrap();
    let server = s.serve(&["--policy", live.to_str().unwrap()]);
    std::fs::write(&live, b"not a component").unwrap();
    server.signal("HUP");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(get(&server, "/auth", &[("x-api-key", &key)]).0, 200);
    assert!(
        server.log().contains("policy reload failed"),
        "{}",
        server.log()
    );
    let (_, _, _) = get(&server, "/healthz", &[]);
    let mut metrics = http().get(&server.url("/metrics")).call().unwrap();
    let text = metrics.body_mut().read_to_string().unwrap();
    assert!(
        text.contains(r#"keyhost_reloads_total{what="policy",result="error"}"#),
        "{text}"
    );
}

#[test]
fn the_management_api_enforces_ownership() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "admin"]);
    let server = s.serve(&[]);

    let (status, created) = send(
        &server,
        "POST",
        "/v1/keys",
        &alice,
        Some(json!({ "name": "ci", "for": "service-id:billing" })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert_eq!(get(&server, "/auth", &[("x-api-key", &secret)]).0, 200);

    // Bob is refused on every call on alice's key.
    let path = format!("/v1/keys/{id}");
    for (method, path, body) in [
        ("GET", path.clone(), None),
        ("PATCH", path.clone(), Some(json!({ "name": "mine" }))),
        ("POST", format!("{path}/lock"), None),
        ("POST", format!("{path}/unlock"), None),
        ("POST", format!("{path}/disable"), None),
        ("POST", format!("{path}/enable"), None),
        ("POST", format!("{path}/rotate"), None),
        ("DELETE", path.clone(), None),
    ] {
        let (status, body) = send(&server, method, &path, &bob, body);
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (status, _) = send(
        &server,
        "POST",
        "/v1/keys",
        &bob,
        Some(json!({ "name": "x", "for": "service-id:billing" })),
    );
    assert_eq!(status, 403);
    let (_, bobs) = send(&server, "GET", "/v1/keys", &bob, None);
    assert!(
        bobs["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["owner"] == "user:bob")
    );

    // Alice manages it.
    let (status, listed) = send(&server, "GET", "/v1/keys", &alice, None);
    assert_eq!(status, 200);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str())
    );
    let (status, rotated) = send(
        &server,
        "POST",
        &format!("{path}/rotate"),
        &alice,
        Some(json!({ "grace": "1h" })),
    );
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(get(&server, "/auth", &[("x-api-key", &new_secret)]).0, 200);
    let (status, _) = send(&server, "DELETE", &path, &alice, None);
    assert_eq!(status, 200);
    assert_eq!(get(&server, "/auth", &[("x-api-key", &new_secret)]).0, 401);
    assert_eq!(send(&server, "GET", &path, &alice, None).0, 404);

    // A service ID's key does not manage keys; no key is 401.
    let (_, sid) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "app",
        "--for",
        "service-id:billing",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(send(&server, "GET", "/v1/keys", &sid, None).0, 403);
    assert_eq!(get(&server, "/v1/keys", &[]).0, 401);

    // The registry holds hashes only.
    let text = s.registry_text();
    for secret in [&alice, &bob, &secret, &new_secret, &sid] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[test]
fn exceeding_the_rate_limit_gives_429_and_the_next_window_passes() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "metered",
        "--rate-limit",
        "3/2s",
    ]);
    let server = s.serve(&[]);
    for _ in 0..3 {
        assert_eq!(get(&server, "/auth", &[("x-api-key", &key)]).0, 200);
    }
    let (status, body, headers) = get(&server, "/auth", &[("x-api-key", &key)]);
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limited");
    let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(get(&server, "/auth", &[("x-api-key", &key)]).0, 200);
}

#[test]
fn usage_is_tracked_and_shown_and_logs_never_hold_a_secret() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "counted"]);
    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&["--decision-log", log.to_str().unwrap()]);
    for _ in 0..4 {
        assert_eq!(
            get(
                &server,
                "/auth",
                &[("authorization", &format!("Bearer {key}"))]
            )
            .0,
            200
        );
    }
    let mut bad = key.clone();
    bad.pop();
    assert_eq!(get(&server, "/auth", &[("x-api-key", &bad)]).0, 401);
    let (_, created) = send(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "second" })),
    );
    let second = created["key"].as_str().unwrap().to_string();
    let server_log_path = server.stderr_path.clone();
    assert_eq!(server.stop(), 0, "SIGTERM shuts down cleanly");

    let shown = s.ok(&["show", &id]);
    assert_eq!(
        shown["key"]["use_count"], 5,
        "4 checks and 1 management call: {shown}"
    );
    assert!(shown["key"]["last_used"].is_string());
    let usage_file = format!("{}.usage.json", s.registry().display());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&usage_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let decisions = std::fs::read_to_string(&log).unwrap();
    let server_log = std::fs::read_to_string(server_log_path).unwrap();
    assert!(decisions.lines().count() >= 6);
    for secret in [&key, &bad, &second] {
        assert!(
            !decisions.contains(secret.as_str()),
            "a secret is in the decision log"
        );
        assert!(
            !server_log.contains(secret.as_str()),
            "a secret is in the server log"
        );
    }
}

#[test]
fn oversized_headers_and_bodies_are_refused() {
    let s = Sandbox::new().with_people();
    let server = s.serve(&[]);
    let big = "x".repeat(20 << 10);
    let (status, _, _) = get(&server, "/auth", &[("x-padding", &big)]);
    assert_eq!(status, 431);
    let response = http()
        .post(&server.url("/v1/keys/verify"))
        .header("content-type", "application/json")
        .send(format!("{{\"key\": \"{}\"}}", "k".repeat(100 << 10)))
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[test]
fn usage_per_hour_and_me_show_a_user_their_own_keys_only() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "used"]);
    let (_, reader) = s.create(&["--as", "user:alice", "--name", "reader"]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "bob"]);
    let server = s.serve(&[]);
    for _ in 0..3 {
        let (status, _, _) = get(
            &server,
            "/auth",
            &[("authorization", &format!("Bearer {key}"))],
        );
        assert_eq!(status, 200);
    }
    let (status, body) = send(
        &server,
        "GET",
        &format!("/v1/keys/{id}/usage"),
        &reader,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let hours = body["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[23]["count"], 3, "{body}");
    let total: u64 = hours.iter().map(|h| h["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 3);
    let last_start = hours[23]["start"].as_str().unwrap();
    assert!(last_start.ends_with(":00:00Z"), "{last_start}");

    let (status, body) = send(&server, "GET", &format!("/v1/keys/{id}/usage"), &bob, None);
    assert_eq!(status, 403, "bob reads alice's usage: {body}");

    let (status, me) = send(&server, "GET", "/v1/me", &reader, None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["iam_id"], "user:alice");
    assert_eq!(me["service_ids"][0]["iam_id"], "service-id:billing");
    let (_, me) = send(&server, "GET", "/v1/me", &bob, None);
    assert_eq!(me["iam_id"], "user:bob");
    assert_eq!(me["service_ids"], json!([]));
}

/// A request with `host` as its Host, over a plain socket (clients set the
/// Host themselves): the status and the whole answer.
fn with_host(server: &Server, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer}"));
    (status, answer)
}

#[test]
fn a_loopback_serve_answers_only_local_host_names_but_checks_whatever_the_host() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&[]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    // A page rebound to 127.0.0.1 names its own host: refused, on every
    // route a page could use.
    let rebound = format!("rebind.example:{port}");
    for path in [
        "/healthz",
        "/metrics",
        "/v1/keys/verify",
        "/v1/keys",
        "/console/",
        "/identity/keys",
    ] {
        let (status, answer) = with_host(&server, path, &rebound, &[]);
        assert_eq!(status, 421, "{path}: {answer}");
        assert!(answer.contains("--allowed-host"), "{answer}");
    }
    // The names a local caller uses are answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "keyhost".into(),
    ] {
        assert_eq!(with_host(&server, "/healthz", &host, &[]).0, 200, "{host}");
    }
    // A proxy's check is answered whatever the Host: Envoy passes the
    // original on. A browser's own request to /auth is held to the names.
    let (status, answer) = with_host(&server, "/auth", &rebound, &[("x-api-key", &key)]);
    assert_eq!(status, 200, "{answer}");
    for marker in [
        ("sec-fetch-site", "same-origin"),
        ("origin", "http://rebind.example"),
    ] {
        let (status, answer) =
            with_host(&server, "/auth", &rebound, &[("x-api-key", &key), marker]);
        assert_eq!(status, 421, "{marker:?}: {answer}");
    }
    // A name given with --allowed-host is answered.
    let named = s.serve(&["--allowed-host", "keys.example"]);
    let port = named.base.rsplit(':').next().unwrap();
    assert_eq!(
        with_host(&named, "/healthz", &format!("keys.example:{port}"), &[]).0,
        200
    );
    assert_eq!(with_host(&named, "/healthz", &rebound, &[]).0, 421);
    // A name that is not one is refused before serve starts.
    let run = s.run(&["serve", "--listen", "127.0.0.1:0", "--allowed-host", "a b"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("--allowed-host"), "{}", run.stderr);
}

#[test]
fn every_answer_says_nosniff_and_the_root_points_at_the_console() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&[]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let host = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {key}");
    for (path, headers) in [
        ("/v1/keys", vec![("authorization", bearer.as_str())]),
        (
            "/v1/keys/kid_none",
            vec![("authorization", bearer.as_str())],
        ),
        ("/v1/me", vec![]),
        ("/healthz", vec![]),
        ("/auth", vec![("x-api-key", key.as_str())]),
    ] {
        let (_, answer) = with_host(&server, path, &host, &headers);
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
    }
    let (status, answer) = with_host(&server, "/", &host, &[]);
    assert_eq!(status, 404);
    assert!(answer.contains("/console/"), "{answer}");
}

#[test]
fn refusals_carry_the_challenges_of_rfc_6750() {
    let s = Sandbox::new().with_people();
    let (_, reader) = s.create(&["--as", "user:alice", "--name", "r", "--scope", "read"]);
    let server = s.serve(&[]);
    let challenge =
        |headers: &ureq::http::HeaderMap| header(headers, "www-authenticate").map(String::from);
    // No credential: a challenge with no error.
    let (status, _, headers) = get(&server, "/auth", &[]);
    assert_eq!(status, 401);
    let said = challenge(&headers).expect("a challenge");
    assert!(said.starts_with("Bearer realm=\"keyhost\""), "{said}");
    assert!(!said.contains("error"), "{said}");
    // A credential that is not a key.
    let (status, _, headers) = get(&server, "/auth", &[("x-api-key", "kh_usr_nope")]);
    assert_eq!(status, 401);
    assert!(
        challenge(&headers)
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // A key without the scope asked for.
    let (status, body, headers) = get(
        &server,
        "/auth",
        &[("x-api-key", &reader), ("x-keyhost-scope", "write")],
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let said = challenge(&headers).expect("a challenge on insufficient_scope");
    assert!(said.contains("error=\"insufficient_scope\""), "{said}");
    assert!(said.contains("scope=\"write\""), "{said}");
}

#[test]
fn a_key_checked_before_is_decided_afresh_after_each_change_through_serve() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (id, key) = s.create(&["--as", "user:alice", "--name", "app", "--scope", "read"]);
    let server = s.serve(&[]);
    let scoped = |scope: &str| {
        get(
            &server,
            "/auth",
            &[("x-api-key", key.as_str()), ("x-keyhost-scope", scope)],
        )
        .0
    };
    // Checked many times, so its record is kept decoded.
    for _ in 0..5 {
        assert_eq!(scoped("read"), 200);
    }
    let path = format!("/v1/keys/{id}");
    let (status, body) = send(
        &server,
        "PATCH",
        &path,
        &alice,
        Some(json!({ "scopes": ["write"] })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(scoped("read"), 403, "the narrowed scopes hold at once");
    assert_eq!(scoped("write"), 200);
    let (status, body) = send(&server, "POST", &format!("{path}/disable"), &alice, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(scoped("write"), 403, "a disabled key is refused at once");
    let (status, body) = send(&server, "POST", &format!("{path}/enable"), &alice, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(scoped("write"), 200);
    let (status, body) = send(&server, "DELETE", &path, &alice, None);
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(scoped("write"), 401, "a deleted key is unknown at once");
}
