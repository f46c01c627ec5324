//! Hardening: what a user holding one valid key tries against
//! keyhost, through the API, the CLI and a live nginx. Each test names the
//! attack and asserts that it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::nginx::Nginx;
use crate::support::{Sandbox, Server, decision_log, decisions, http};
use serde_json::{Value, json};

/// `method path` with the key as a bearer token and an optional JSON body;
/// (status, JSON body, headers).
fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value, ureq::http::HeaderMap) {
    raw(
        server,
        method,
        path,
        key,
        body.map(|b| ("application/json", b.to_string())),
    )
}

/// As [`call`], with any content type and body.
fn raw(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<(&str, String)>,
) -> (u16, Value, ureq::http::HeaderMap) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(server.url(path))
        .header("authorization", format!("Bearer {key}"));
    let text = match body {
        Some((content_type, text)) => {
            request = request.header("content-type", content_type);
            text
        }
        None => String::new(),
    };
    let mut response = http().run(request.body(text).unwrap()).expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| json!({ "raw": body })),
        headers,
    )
}

/// The `/auth` status of `key` with extra headers.
fn auth(server: &Server, key: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http()
        .get(server.url("/auth"))
        .header("x-api-key", key)
        .header("x-keyhost-service", "storage");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("auth request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn eve() -> (Sandbox, String, String) {
    let s = Sandbox::new();
    s.ok(&[
        "identity", "add", "user:eve", "--scope", "read", "--scope", "write",
    ]);
    let (id, key) = s.create(&["--as", "user:eve", "--name", "e"]);
    (s, id, key)
}

#[test]
fn a_field_that_would_make_the_registry_unreadable_is_refused_everywhere() {
    let (s, _, key) = eve();
    let server = s.serve(&[]);
    let before = s.registry_text();
    let hoard = "\u{7f}".repeat(11_000);
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "x", "description": hoard })),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("description"), "{message}");
    assert!(
        !message.contains("--"),
        "no CLI flag in an HTTP error: {message}"
    );
    for (field, value) in [
        ("name", json!("tab\there")),
        ("name", json!("a\u{202E}b")),
        ("description", json!("x".repeat(1025))),
        (
            "scopes",
            json!((0..65).map(|i| format!("s{i}")).collect::<Vec<_>>()),
        ),
    ] {
        let mut create = json!({ "name": "ok" });
        create[field] = value;
        let (status, body, _) = call(&server, "POST", "/v1/keys", &key, Some(create));
        assert_eq!(status, 400, "{field}: {body}");
    }
    assert_eq!(s.registry_text(), before, "nothing was written");

    let run = s.run(&[
        "create",
        "--as",
        "user:eve",
        "--name",
        "y",
        "--description",
        &"\u{7f}".repeat(11_000),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("description"), "{}", run.stderr);
    assert_eq!(s.registry_text(), before);
    assert_eq!(s.run(&["list"]).code, 0, "the registry still reads");
}

#[test]
fn the_largest_accepted_fields_round_trip_through_the_registry() {
    let s = Sandbox::new();
    let scopes: Vec<String> = (0..64)
        .map(|i| format!("{i:03}{}", "ж".repeat(125)))
        .collect();
    let mut add = vec!["identity", "add", "user:eve"];
    for scope in &scopes {
        add.extend(["--scope", scope]);
    }
    s.ok(&add);
    let name = "名".repeat(256);
    let description = "🔑".repeat(1024);
    let mut create = vec![
        "create",
        "--as",
        "user:eve",
        "--name",
        &name,
        "--description",
        &description,
    ];
    for scope in &scopes {
        create.extend(["--scope", scope]);
    }
    let out = s.ok(&create);
    let id = out["id"].as_str().unwrap();
    let shown = s.ok(&["show", id]);
    assert_eq!(shown["key"]["name"], name.as_str());
    assert_eq!(shown["key"]["description"], description.as_str());
    assert_eq!(shown["key"]["scopes"].as_array().unwrap().len(), 64);
    let key = out["key"].as_str().unwrap();
    assert_eq!(s.decide(key, &["--scope", &scopes[63]]), "allow");
}

#[test]
fn a_management_write_that_misses_its_deadline_never_commits() {
    let (s, _, key) = eve();
    let server = s.serve(&["--request-timeout", "1s"]);
    let before = s.registry_text();
    // Another writer holds the registry's lock for longer than the deadline.
    let mut lock_path = s.registry().into_os_string();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();
    let started = Instant::now();
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "late" })),
    );
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    lock.unlock().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.registry_text(),
        before,
        "the timed-out create did not land"
    );
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "on time" })),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let (s, _, _) = eve();
    let (_, key) = s.create(&[
        "--as",
        "user:eve",
        "--name",
        "inside",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let open = s.serve(&[]);
    for forged in [("x-forwarded-for", "10.9.9.9"), ("x-real-ip", "10.9.9.9")] {
        let (status, body) = auth(&open, &key, &[forged]);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("ip_not_allowed")),
            "{forged:?}"
        );
    }
    let behind_proxy = s.serve(&["--trusted-proxy", "127.0.0.1/32"]);
    assert_eq!(
        auth(&behind_proxy, &key, &[("x-forwarded-for", "10.9.9.9")]).0,
        200
    );
    assert_eq!(
        auth(&behind_proxy, &key, &[("x-forwarded-for", "192.0.2.1")]).0,
        403
    );
}

#[test]
fn through_nginx_a_client_cannot_forge_the_method_path_address_or_scope() {
    let (s, id, key) = eve();
    let (_, inside) = s.create(&[
        "--as",
        "user:eve",
        "--name",
        "inside",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let (_, write_only) = s.create(&["--as", "user:eve", "--name", "w", "--scope", "write"]);
    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let nginx = Nginx::start(&s, &server);
    let forged = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public"),
        ("x-original-method", "GET"),
        ("x-original-uri", "/public"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-real-ip", "10.9.9.9"),
        ("x-keyhost-scope", "write"),
        ("x-keyhost-key-id", "kid_forged"),
        ("x-keyhost-kind", "service-id"),
    ];
    let answer = nginx.send("DELETE", "/admin/x", Some(&key), &forged);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.trim_end().ends_with("kind [user]"),
        "the client's X-Keyhost-Kind never reaches the upstream: {}",
        answer.body
    );
    assert!(
        answer
            .body
            .starts_with(&format!("upstream saw key id [{id}]")),
        "the client's X-Keyhost-Key-Id never reaches the upstream: {}",
        answer.body
    );
    let entry = decisions(&log, 1).pop().unwrap();
    assert_eq!(
        (entry["method"].as_str(), entry["path"].as_str()),
        (Some("DELETE"), Some("/admin/x"))
    );
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(
        entry["scope"], "read",
        "nginx sets the scope, not the client"
    );
    assert_eq!(nginx.send("GET", "/x", Some(&inside), &forged).status, 403);
    assert_eq!(
        nginx.send("GET", "/x", Some(&write_only), &forged).status,
        403
    );
}

/// Paths that read as one place to a policy and as another to a server
/// behind the proxy.
const CLIMBING: [&str; 7] = [
    "/public/../admin",
    "/public/..;/admin",
    "/public/%2e%2E/admin",
    "/public%2f..%2fadmin",
    "/public%5c..%5cadmin",
    "/public/%252e%252e/admin",
    "/public/%c0%ae%c0%ae/admin",
];

/// More of them, that an HTTP client would not send as a request target
/// but a proxy's header can carry.
const CLIMBING_IN_HEADERS: [&str; 4] = [
    "/public#/../admin",
    "//admin",
    "/public/%u002e%u002e/admin",
    "/%61dmin",
];

#[test]
fn a_path_that_climbs_is_refused_by_check_and_by_serve_however_it_comes() {
    let (s, _, key) = eve();
    for path in CLIMBING.iter().chain(&CLIMBING_IN_HEADERS) {
        assert_eq!(
            s.decide(&key, &["--service", "storage", "--path", path]),
            "denied",
            "keyhost check --path {path}"
        );
    }
    assert_eq!(
        s.decide(&key, &["--service", "storage", "--path", "/public/..b/c"]),
        "allow",
        "a name that starts with dots does not climb"
    );
    let server = s.serve(&["--trusted-proxy", "127.0.0.1"]);
    for path in CLIMBING.iter().chain(&CLIMBING_IN_HEADERS) {
        // From a trusted proxy's header, as nginx and Traefik send it.
        for header in ["x-original-uri", "x-forwarded-uri"] {
            let (status, body) = auth(&server, &key, &[(header, path)]);
            assert_eq!(
                (status, body["code"].as_str()),
                (403, Some("denied")),
                "{header}: {path}"
            );
        }
    }
    for path in CLIMBING {
        // After /auth, as Envoy's ext_authz sends it.
        let mut response = http()
            .get(server.url(&format!("/auth{path}")))
            .header("x-api-key", &key)
            .header("x-keyhost-service", "storage")
            .call()
            .unwrap();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(
            (response.status().as_u16(), body["code"].as_str()),
            (403, Some("denied")),
            "/auth{path}"
        );
    }
    let (status, _) = auth(&server, &key, &[("x-original-uri", "/public/x")]);
    assert_eq!(status, 200, "a plain path still passes");
}

/// A key of eve's that manages keys but is narrowed: the scopes `read`,
/// `keys:read` and `keys:write`, an hour to live, and `limits`.
fn narrow_manager(s: &Sandbox, limits: &[&str]) -> (String, String) {
    let mut args = vec![
        "--as",
        "user:eve",
        "--name",
        "narrow",
        "--scope",
        "read",
        "--scope",
        "keys:read",
        "--scope",
        "keys:write",
        "--expires",
        "1h",
    ];
    args.extend_from_slice(limits);
    s.create(&args)
}

#[test]
fn a_narrowed_key_can_neither_lift_its_limits_nor_mint_a_wider_key() {
    let (s, _, _) = eve();
    let (id, key) = narrow_manager(
        &s,
        &["--allow-ip", "127.0.0.0/8", "--rate-limit", "100/min"],
    );
    let server = s.serve(&[]);
    let path = format!("/v1/keys/{id}");
    for lift in [
        json!({ "scopes": [] }),
        json!({ "scopes": ["read", "write", "keys:read", "keys:write"] }),
        json!({ "allowed_ips": [] }),
        json!({ "allowed_ips": ["0.0.0.0/0"] }),
        json!({ "expires": "never" }),
        json!({ "expires": "30d" }),
        json!({ "rate_limit": "none" }),
        json!({ "rate_limit": "1000/min" }),
    ] {
        let (status, body, _) = call(&server, "PATCH", &path, &key, Some(lift.clone()));
        assert_eq!(status, 403, "{lift}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot grant more"),
            "{body}"
        );
    }
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "wide" })),
    );
    assert_eq!(status, 403, "{body}");
    let narrower = json!({
        "name": "narrower", "scopes": ["read"], "allowed_ips": ["127.0.0.1"],
        "expires": "30m", "rate_limit": "10/min"
    });
    let (status, body, headers) = call(&server, "POST", "/v1/keys", &key, Some(narrower));
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    // The key still cannot pass the scope it never had.
    let (status, _) = auth(&server, &key, &[("x-keyhost-scope", "write")]);
    assert_eq!(status, 403);

    // Managing keys is a scope of its own: reading needs keys:read, changing keys:write.
    let (_, reader) = s.create(&["--as", "user:eve", "--name", "r", "--scope", "keys:read"]);
    let (_, plain) = s.create(&["--as", "user:eve", "--name", "p", "--scope", "read"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(call(&server, "GET", "/v1/keys", &reader, None).0, 200);
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &reader,
        Some(json!({ "name": "n", "scopes": ["keys:read"] })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    let (status, body, _) = call(&server, "GET", "/v1/keys", &plain, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
}

#[test]
fn a_narrowed_key_cannot_take_a_new_secret_of_a_wider_key_nor_bring_one_back() {
    let (s, wide_id, wide_key) = eve();
    let (_, narrow) = narrow_manager(&s, &[]);
    let (spare_id, _) = s.create(&[
        "--as",
        "user:eve",
        "--name",
        "spare",
        "--scope",
        "read",
        "--expires",
        "30m",
    ]);
    let server = s.serve(&[]);
    let act = |id: &str, action: &str| {
        call(
            &server,
            "POST",
            &format!("/v1/keys/{id}/{action}"),
            &narrow,
            None,
        )
    };
    let refused = |(status, body, _): (u16, Value, ureq::http::HeaderMap), what: &str| {
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body.get("key").is_none(), "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot grant more"),
            "{what}: {body}"
        );
    };
    // A new secret of the wider key would be a wider key in the narrow
    // key's hands; nothing is written, so the old secret still works.
    refused(act(&wide_id, "rotate"), "rotate");
    assert_eq!(auth(&server, &wide_key, &[]).0, 200);
    // Taking the wider key out of use is any manager's; bringing it back,
    // or lifting its lock, is not the narrow key's.
    assert_eq!(act(&wide_id, "disable").0, 200);
    refused(act(&wide_id, "enable"), "enable");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(auth(&server, &wide_key, &[]).0, 403, "still disabled");
    assert_eq!(act(&wide_id, "lock").0, 200);
    refused(act(&wide_id, "unlock"), "unlock");
    // A key no wider than the narrow one is rotated as before.
    let (status, body, headers) = act(&spare_id, "rotate");
    assert_eq!(status, 200, "{body}");
    assert!(body["key"].as_str().is_some(), "{body}");
    // An answer with a secret in it is kept by no cache on the way.
    assert_eq!(headers["cache-control"], "no-store");
}

/// A raw connection that sends `bytes` and reports how long until the
/// server closed it (None if still open after `wait`).
fn closed_within(server: &Server, bytes: &[u8], wait: Duration) -> Option<Duration> {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(bytes).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => Some(started.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(started.elapsed()),
        Err(_) => None,
    }
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_capped() {
    let (s, _, _) = eve();
    let server = s.serve(&["--header-timeout", "1s", "--max-connections", "8"]);
    let half = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let took = closed_within(&server, half, Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(3)),
        "slowloris held on: {took:?}"
    );
    let took = closed_within(&server, b"", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(3)),
        "an idle socket held on: {took:?}"
    );

    // Past the cap: a clear answer at once, not a hang.
    let address = server.base.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&address).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let mut response = http().get(server.url("/metrics")).call().unwrap();
    let metrics = response.body_mut().read_to_string().unwrap();
    assert!(
        metrics.contains("keyhost_connections_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
}

#[test]
fn shutdown_does_not_wait_for_a_half_sent_request() {
    let (s, _, _) = eve();
    let server = s.serve(&["--header-timeout", "60s", "--shutdown-timeout", "1s"]);
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .write_all(b"POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let code = server.stop();
    assert_eq!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_decision_log_holds_every_decision_and_no_secret() {
    let (s, _, key) = eve();
    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&["--decision-log", log.to_str().unwrap()]);
    let mut response = http()
        .get(server.url(&format!("/auth/download?api_key={key}&x=1")))
        .call()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        401,
        "a key in the query is no key"
    );
    let _ = response.body_mut().read_to_string();
    let text = decision_log(&log, 1);
    assert!(!text.contains(&key), "the secret reached the log: {text}");
    let entry: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        entry["code"], "not_found",
        "a request without a key is logged"
    );
    assert_eq!(entry["path"], "/download?api_key=<redacted key>&x=1");
    // Escaped, the secret is the same secret to whoever reads the path.
    let escaped = key.replace('_', "%5F");
    for (path, service) in [
        (format!("/auth/x?api_key={escaped}"), "storage".to_string()),
        (format!("/auth/{escaped}"), "storage".to_string()),
        ("/auth/x".to_string(), escaped.clone()),
    ] {
        let mut response = http()
            .get(server.url(&path))
            .header("x-keyhost-service", service)
            .call()
            .unwrap();
        let _ = response.body_mut().read_to_string();
    }
    let text = decision_log(&log, 4);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        !text.contains(&key[7..]),
        "the secret reached the log: {text}"
    );
    // Nothing was dropped, and /metrics says so.
    let mut response = http().get(server.url("/metrics")).call().unwrap();
    let metrics = response.body_mut().read_to_string().unwrap();
    assert!(
        metrics.contains("keyhost_decision_log_dropped_total 0"),
        "{metrics}"
    );
}

#[test]
fn a_secret_given_where_an_id_or_name_belongs_is_never_echoed_or_stored() {
    let (s, _, key) = eve();
    for command in ["show", "lock", "delete"] {
        let mut args = vec![command, key.as_str()];
        if command != "show" {
            args.extend(["--as", "user:eve"]);
        }
        let text = s.run(&args);
        let json = s.run(&[&args[..], &["--json"]].concat());
        for run in [&text, &json] {
            assert_ne!(run.code, 0);
            assert!(
                !run.stdout.contains(&key) && !run.stderr.contains(&key),
                "{command}: {}{}",
                run.stdout,
                run.stderr
            );
        }
    }
    let before = s.registry_text();
    let run = s.run(&[
        "create",
        "--as",
        "user:eve",
        "--name",
        &format!("copy of {key}"),
    ]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains(&key), "{}", run.stderr);
    assert_eq!(s.registry_text(), before);
    let (wide_id, _) = s.create(&["--as", "user:eve", "--name", "w"]);
    let server = s.serve(&[]);
    let (status, body, _) = call(&server, "GET", &format!("/v1/keys/{key}"), &key, None);
    assert_eq!(status, 404);
    assert!(!body.to_string().contains(&key), "{body}");
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "n", "description": key })),
    );
    assert_eq!(status, 400);
    assert!(!body.to_string().contains(&key), "{body}");
    // Wherever a body field, a field's name or a value's variant is wrong,
    // the message that says so does not quote the secret put there.
    let secret_tail = &key[7..];
    for (method, path, body) in [
        (
            "POST",
            "/v1/keys".to_string(),
            json!({ "name": "x", "kind": key }),
        ),
        (
            "POST",
            "/v1/keys".to_string(),
            json!({ "name": "x", key.as_str(): 1 }),
        ),
        (
            "POST",
            "/v1/keys".to_string(),
            json!({ "name": "x", "for": key }),
        ),
        (
            "POST",
            "/v1/keys".to_string(),
            json!({ "name": "x", "expires": key }),
        ),
        (
            "PATCH",
            format!("/v1/keys/{wide_id}"),
            json!({ "expires": key }),
        ),
        (
            "POST",
            format!("/v1/keys/{wide_id}/rotate"),
            json!({ "grace": key }),
        ),
        (
            "POST",
            "/v1/keys/verify".to_string(),
            json!({ "key": "x", key.as_str(): 1 }),
        ),
    ] {
        let (status, body, _) = call(&server, method, &path, &key, Some(body.clone()));
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {body}"
        );
        assert!(
            !body.to_string().contains(secret_tail),
            "{method} {path} quoted the secret: {body}"
        );
    }
    // Nor one written with percent escapes, which any server reads back.
    let escaped = key.replace('_', "%5F");
    let (status, body, _) = call(&server, "GET", &format!("/v1/keys/{escaped}"), &key, None);
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(!body.to_string().contains(secret_tail), "{body}");
}

#[test]
fn scan_finds_a_replica_credential_and_names_it_without_quoting_it() {
    let s = Sandbox::new();
    let credential = s.ok(&["replica", "add", "edge-1"])["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let stranger = Sandbox::new().ok(&["replica", "add", "elsewhere"])["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let mut typo = credential.clone();
    let at = typo.len() - 3;
    typo.replace_range(
        at..at + 1,
        if &credential[at..at + 1] == "a" {
            "b"
        } else {
            "a"
        },
    );
    let text = format!("ENVOY_CRED={credential}\n{typo}\nx{stranger}\n");
    let scan = s.run_with(&["scan", "--json"], &text, &[]);
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    let findings = scan.json()["findings"].as_array().unwrap().clone();
    assert_eq!(
        findings.len(),
        2,
        "the typo is not a credential: {findings:?}"
    );
    assert_eq!(
        (
            findings[0]["line"].as_u64(),
            findings[0]["kind"].as_str(),
            findings[0]["replica"].as_str()
        ),
        (Some(1), Some("replica-credential"), Some("edge-1"))
    );
    assert_eq!(
        (
            findings[1]["line"].as_u64(),
            findings[1]["replica"].as_str()
        ),
        (Some(3), None),
        "another registry's credential is found, and named as no one's"
    );
    assert_eq!(findings[1]["kind"], "replica-credential");
    let text_run = s.run_with(&["scan"], &text, &[]);
    assert!(
        text_run.stdout.contains("replica credential \"edge-1\"")
            && text_run.stdout.contains("keyhost replica revoke edge-1"),
        "{}",
        text_run.stdout
    );
    for run in [&scan, &text_run] {
        assert!(!run.stdout.contains(&credential) && !run.stderr.contains(&credential));
    }
}

#[test]
fn a_leaked_key_is_cleared_by_rotation_and_not_by_enable() {
    let s = Sandbox::new();
    s.ok(&["identity", "add", "user:eve"]);
    let (id, leaked) = s.create(&["--as", "user:eve", "--name", "l"]);
    let scan = s.run_with(
        &["scan", "--mark-leaked", "--json"],
        &format!("oops {leaked}\n"),
        &[],
    );
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    assert_eq!(s.decide(&leaked, &[]), "leaked");
    let run = s.refused(&["enable", &id, "--as", "user:eve"]);
    assert!(run.stderr.contains("rotate"), "{}", run.stderr);
    s.refused(&["rotate", &id, "--as", "user:eve", "--grace", "1h"]);
    let fresh = s.ok(&["rotate", &id, "--as", "user:eve"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.decide(&fresh, &[]), "allow");
    assert_eq!(s.decide(&leaked, &[]), "not_found");
    assert_eq!(s.ok(&["show", &id])["key"]["leaked"], false);
}

#[test]
fn a_second_rotation_ends_every_earlier_grace_and_end_grace_ends_it_now() {
    let s = Sandbox::new();
    s.ok(&["identity", "add", "user:eve"]);
    let (id, first) = s.create(&["--as", "user:eve", "--name", "r"]);
    let second = s.ok(&["rotate", &id, "--as", "user:eve", "--grace", "1h"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.decide(&first, &[]), "allow", "within its grace");
    let third = s.ok(&["rotate", &id, "--as", "user:eve"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.decide(&first, &[]), "not_found");
    assert_eq!(s.decide(&second, &[]), "not_found");
    assert_eq!(s.decide(&third, &[]), "allow");
    let fourth = s.ok(&["rotate", &id, "--as", "user:eve", "--grace", "1h"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.decide(&third, &[]), "allow");
    s.ok(&["end-grace", &id, "--as", "user:eve"]);
    assert_eq!(s.decide(&third, &[]), "not_found");
    assert_eq!(s.decide(&fourth, &[]), "allow");
}

#[test]
fn through_nginx_a_rate_limit_is_a_429_with_retry_after_on_kept_alive_connections() {
    let (s, _, _) = eve();
    let (id, key) = s.create(&[
        "--as",
        "user:eve",
        "--name",
        "slow",
        "--rate-limit",
        "3/min",
    ]);
    let server = s.serve(&["--trusted-proxy", "127.0.0.1"]);
    let nginx = Nginx::start(&s, &server);
    for _ in 0..3 {
        assert_eq!(nginx.get(Some(&key)).0, 200);
    }
    let limited = nginx.send("GET", "/files/a", Some(&key), &[]);
    assert_eq!(
        limited.status,
        429,
        "{} {}",
        limited.body,
        nginx.error_log()
    );
    let wait: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = serde_json::from_str(limited.body.trim()).unwrap();
    assert_eq!(body["code"], "rate_limited");

    let (_, other) = s.create(&["--as", "user:eve", "--name", "many"]);
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..40 {
        assert_eq!(nginx.get(Some(&other)).0, 200);
    }
    let mut response = http().get(server.url("/metrics")).call().unwrap();
    let metrics = response.body_mut().read_to_string().unwrap();
    let served: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyhost_connections_total{outcome=\"served\"} "))
        .expect("served connections")
        .parse()
        .unwrap();
    assert!(
        served < 10,
        "nginx kept its connections to keyhost alive: {served} for 44 checks"
    );

    // The API shows the live use count, as `keyhost show` does after a flush.
    let (_, body, _) = call(&server, "GET", &format!("/v1/keys/{id}"), &key, None);
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let (status, body, _) = call(&server, "GET", "/v1/keys", &other, None);
    assert_eq!(status, 200);
    let mine = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "many")
        .unwrap();
    assert_eq!(mine["use_count"], 41, "{mine}");
}

#[test]
fn error_answers_are_json_and_say_what_is_wrong() {
    let (s, _, key) = eve();
    let server = s.serve(&[]);
    let (status, body, _) = raw(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(("text/xml", "<name>x</name>".into())),
    );
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let (status, body, _) = raw(
        &server,
        "POST",
        "/v1/keys/verify",
        &key,
        Some(("text/xml", "<k/>".into())),
    );
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let big = json!({ "name": "x".repeat(70_000) });
    let (status, body, _) = call(&server, "POST", "/v1/keys", &key, Some(big));
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, body, _) = call(&server, "GET", "/nowhere", &key, None);
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "s", "kind": "service-specific" })),
    );
    assert_eq!(status, 400);
    assert!(
        !body["error"]["message"].as_str().unwrap().contains("--"),
        "{body}"
    );
}

#[test]
fn a_deleted_or_older_registry_degrades_health_and_refuses_writes() {
    let (s, id, key) = eve();
    let server = s.serve(&[]);
    let older = s.registry_text();
    s.ok(&["disable", &id, "--as", "user:eve"]);
    s.ok(&["enable", &id, "--as", "user:eve"]);
    std::thread::sleep(Duration::from_millis(800));
    let healthz = || {
        let mut response = http().get(server.url("/healthz")).call().unwrap();
        let status = response.status().as_u16();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    };
    assert_eq!(healthz().0, 200);

    // An older copy put back: refused, so a revoked key cannot return.
    let path = s.registry();
    let staged = s.dir.path().join("older.toml");
    std::fs::write(&staged, &older).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (status, body) = healthz();
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("degraded")),
        "{body}"
    );
    assert!(
        body["problems"][0].as_str().unwrap().contains("went back"),
        "{body}"
    );
    assert!(server.log().contains("went back"));

    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (status, body) = healthz();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{body}"
    );
    assert!(server.log().contains("does not exist"), "{}", server.log());
    let (status, body, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &key,
        Some(json!({ "name": "n" })),
    );
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(!path.exists(), "no registry was made up");
}

#[test]
fn a_fifo_in_the_registrys_place_is_refused_at_once_and_serve_takes_the_file_put_back() {
    let (s, id, key) = eve();
    s.ok(&["disable", &id, "--as", "user:eve"]);
    let disabled = s.registry_text();
    s.ok(&["enable", &id, "--as", "user:eve"]);
    let server = s.serve(&[]);
    assert_eq!(auth(&server, &key, &[]).0, 200);

    let path = s.registry();
    let fifo = s.dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &path).unwrap();
    // Nobody ever writes to it: a read that waited would wait for ever.
    let started = Instant::now();
    let run = s.run(&["show", &id]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    let mut response = http().get(server.url("/healthz")).call().unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("not a regular file"), "{body}");

    // The file put back (with the key disabled, at a newer revision) is
    // taken: serve's reloads were not stuck on the FIFO.
    let revision = |text: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix("revision = "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let newer = revision(&disabled) + 5;
    let put_back = disabled.replacen(
        &format!("revision = {}", revision(&disabled)),
        &format!("revision = {newer}"),
        1,
    );
    let staged = s.dir.path().join("put-back.toml");
    std::fs::write(&staged, put_back).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let started = Instant::now();
    while auth(&server, &key, &[]).0 != 403 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the disabled key still passes: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn odd_command_line_input_gets_a_clear_error_and_never_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let (s, id, key) = eve();
    // An argument that is not UTF-8, with and without --json.
    for json in [false, true] {
        let mut command = s.command(&["show"]);
        if json {
            command.arg("--json");
        }
        let out = command
            .arg(std::ffi::OsStr::from_bytes(b"\xff"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // With --json, a usage error says what is missing, not only that
    // something is.
    let run = s.run(&["--json", "create", "--as", "user:eve"]);
    assert_eq!(run.code, 2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("--name"), "{message}");

    // A time past year 9999 has no form to be written in: refused, and the
    // registry is as it was.
    let before = s.registry_text();
    for args in [
        vec![
            "create",
            "--as",
            "user:eve",
            "--name",
            "far",
            "--expires",
            "3000000d",
        ],
        vec!["update", &id, "--as", "user:eve", "--expires", "3000000d"],
        vec!["rotate", &id, "--as", "user:eve", "--grace", "3000000d"],
    ] {
        let run = s.run(&args);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert_ne!(run.code, 0, "{args:?}");
        {
            assert!(
                run.stderr.contains("latest time"),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(s.registry_text(), before);
    // An RFC 3339 time with an offset is the time it says.
    let created = s.ok(&[
        "create",
        "--as",
        "user:eve",
        "--name",
        "offset",
        "--expires",
        "2099-01-01T00:00:00+02:00",
    ]);
    assert_eq!(
        created["record"]["expires_at"], "2098-12-31T22:00:00Z",
        "{created}"
    );

    // A key is one line of stdin: what follows it is not read.
    let run = s.run_with(
        &["check", "--json"],
        &format!("{key}\n{}\n", "x".repeat(10_000)),
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

/// A folder `tree` in the sandbox with a file that holds `key`.
fn tree_with_key(s: &Sandbox, key: &str) -> std::path::PathBuf {
    let folder = s.dir.path().join("tree");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.env"), format!("TOKEN={key}\n")).unwrap();
    folder
}

/// A FIFO at `path`, which nobody will ever write to.
fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

#[test]
fn a_dangling_link_is_skipped_by_scan_with_a_warning() {
    let (s, id, key) = eve();
    let folder = tree_with_key(&s, &key);
    std::os::unix::fs::symlink(folder.join("gone"), folder.join("b.link")).unwrap();
    let run = s.run(&["scan", folder.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("b.link"), "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["findings"][0]["key_id"], id.as_str());
    assert!(out["skipped"][0].as_str().unwrap().ends_with("b.link"));
}

#[test]
fn scan_neither_walks_round_a_link_loop_nor_waits_on_a_fifo() {
    let (s, id, key) = eve();
    let folder = tree_with_key(&s, &key);
    // Two links back to the folder: 2^n paths for a walk that follows them.
    std::os::unix::fs::symlink(".", folder.join("l1")).unwrap();
    std::os::unix::fs::symlink(".", folder.join("l2")).unwrap();
    let fifo = folder.join("pipe");
    mkfifo(&fifo);
    let started = Instant::now();
    let run = s.run(&["scan", folder.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    let out = run.json();
    let findings = out["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{out}");
    assert_eq!(findings[0]["key_id"], id.as_str());
    let skipped: Vec<&str> = out["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in ["l1", "l2", "pipe"] {
        assert!(
            skipped.iter().any(|path| path.ends_with(name)),
            "{name}: {skipped:?}"
        );
    }
    // A FIFO named on the command line is an error, said at once.
    let run = s.run(&["scan", fifo.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    // On stdin, a key is found whatever length the line that follows.
    let run = s.run_with(
        &["scan", "--json"],
        &format!("{key}\n{}", "z".repeat(3 << 20)),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["findings"][0]["key_id"], id.as_str());
}

#[test]
fn a_control_character_written_into_the_registry_by_hand_is_refused_with_its_line() {
    let (s, id, _) = eve();
    let text = s.registry_text();
    // A name that would recolour a terminal and ring its bell.
    let edited = text.replacen("name = \"e\"", "name = \"a\\u001b[31mRED\\u0007\"", 1);
    assert_ne!(edited, text);
    std::fs::write(s.registry(), &edited).unwrap();
    for args in [vec!["show", id.as_str()], vec!["list"]] {
        let run = s.run(&args);
        assert_ne!(run.code, 0, "{args:?}");
        assert!(
            run.stderr.contains("line ") && run.stderr.contains("U+001B"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'));
    }
}

#[test]
fn allow_info_reaches_the_caller_of_auth_verify_and_check_cleaned() {
    let s = Sandbox::new();
    s.ok(&["identity", "add", "user:eve"]);
    let (_, key) = s.create(&["--as", "user:eve", "--name", "i"]);
    let hostile = crate::support::policy("keyhost_policy_hostile.wasm");
    let hostile = hostile.to_str().unwrap();
    let run = s.run_with(
        &["check", "--policy", hostile, "--service", "info"],
        &format!("{key}\n"),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("info: tier=gold"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no terminal escape: {:?}",
        run.stderr
    );

    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&["--policy", hostile, "--decision-log", log.to_str().unwrap()]);
    let mut response = http()
        .get(server.url("/auth"))
        .header("x-api-key", &key)
        .header("x-keyhost-service", "info")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers.get("x-keyhost-info-tier").unwrap(), "gold");
    let note = headers
        .get("x-keyhost-info-note")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        note.ends_with("[2Jwiped") && !note.contains('\u{1b}'),
        "{note:?}"
    );
    assert!(
        headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-keyhost-info-"))
            .count()
            == 2,
        "a name no header can carry is left out: {headers:?}"
    );
    let _ = response.body_mut().read_to_string();

    let mut response = http()
        .post(server.url("/v1/keys/verify"))
        .send_json(json!({ "key": key, "service": "info" }))
        .unwrap();
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["info"]["tier"], "gold", "{body}");
    let entry = &decisions(&log, 1)[0];
    assert_eq!(entry["info"][0], json!(["tier", "gold"]), "{entry}");
}
