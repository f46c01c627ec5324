//! keyhost's check inside the proxies themselves: the proxy-wasm filter in
//! a real Envoy and the http-wasm plugin in a real Traefik, each in front of
//! a real nginx upstream, with the guides' configurations. Also Envoy
//! running the Envoy guide's `ext_authz` snippet against `keyhost serve`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use keyhost_core::replica_proof;

use crate::support::envoy::Envoy;
use crate::support::in_place::{Answer, Front, HeaderEcho, bearer, decides_every_case, keys, send};
use crate::support::nginx::Nginx;
use crate::support::traefik::Traefik;
use crate::support::{Sandbox, http, policy};

/// The configuration the Envoy guide's filter snippet carries.
const GUIDE_CONFIG: &str = r#"'{"service": "inventory", "scope": "read", "trust_source_address": true, "registry": {"live": {"cluster": "keyhost"}}}'"#;
/// Where the Envoy guide's filter snippet loads the filter from.
const GUIDE_WASM: &str = "/etc/envoy/keyhost.wasm";

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The Envoy guide's filter snippet with `wasm` and an inline snapshot
/// of `s`'s registry (written by `keyhost export envoy`), checking
/// `checks` (`--service`, ...).
fn inline_envoy(s: &Sandbox, wasm: &Path, upstream: u16, checks: &[&str]) -> Envoy {
    let config = s.dir.path().join("plugin.json");
    let mut args = vec!["export", "envoy", "--config", arg(&config)];
    args.extend_from_slice(checks);
    let exported = s.ok(&args);
    assert!(
        exported["snapshot"]["keys"].as_u64().unwrap() > 0,
        "{exported}"
    );
    let config = std::fs::read_to_string(&config).unwrap();
    assert!(
        !config.contains('\''),
        "the configuration fits a YAML single-quoted string"
    );
    Envoy::start(
        s.dir.path(),
        "envoy-filter-snippet",
        &[
            (GUIDE_WASM, arg(wasm)),
            (GUIDE_CONFIG, &format!("'{config}'")),
        ],
        upstream,
        None,
        &[],
    )
}

/// Sends until `done` says the answer is the one awaited, for up to
/// `within`; returns how long that took.
fn until(
    front: &impl Front,
    headers: &[(&str, &str)],
    within: Duration,
    done: impl Fn(&Answer) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = send(front, "/static/echo", headers);
        if done(&answer) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not within {within:?}: {} {}\n{}",
            answer.status,
            answer.body,
            front.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is(status: u16, code: Option<&'static str>) -> impl Fn(&Answer) -> bool {
    move |answer: &Answer| answer.status == status && code.is_none_or(|code| answer.code() == code)
}

#[test]
fn envoy_with_the_filter_and_an_inline_snapshot_decides_every_case() {
    let k = keys();
    let (_, loopback) = k.s.create(&[
        "--as",
        "user:alice",
        "--name",
        "loopback",
        "--allow-ip",
        "127.0.0.0/8",
    ]);
    let upstream = HeaderEcho::start();
    let envoy = inline_envoy(
        &k.s,
        &policy("keyhost_proxy_wasm.wasm"),
        upstream.port,
        &[
            "--service",
            "object-storage",
            "--scope",
            "read",
            "--trust-source-address",
        ],
    );
    decides_every_case(&envoy, &k, "/static/echo", "envoy");
    // The client's address is the peer Envoy saw (its connection manager
    // has use_remote_address): what a client writes in X-Forwarded-For
    // does not make it an allowed address.
    let answer = send(&envoy, "/static/echo", &[("x-api-key", &loopback)]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Not told to trust Envoy's word for the peer, the filter knows no
    // address, and an IP-restricted key fails closed whatever the client
    // writes.
    let untrusting = inline_envoy(
        &k.s,
        &policy("keyhost_proxy_wasm.wasm"),
        upstream.port,
        &["--service", "object-storage", "--scope", "read"],
    );
    for forged in [None, Some("127.0.0.1")] {
        let mut headers = vec![("x-api-key", loopback.as_str())];
        headers.extend(forged.map(|ip| ("x-forwarded-for", ip)));
        let answer = send(&untrusting, "/static/echo", &headers);
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (403, "ip_not_allowed"),
            "{forged:?}"
        );
    }
    let ip = bearer(&k.ip);
    for forged in ["10.1.2.3", "192.0.2.9, 10.1.2.3"] {
        let answer = send(
            &envoy,
            "/static/echo",
            &[("authorization", &ip), ("x-forwarded-for", forged)],
        );
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (403, "ip_not_allowed"),
            "{forged}"
        );
    }
    assert!(
        !envoy.log().contains("kh_"),
        "a key or the configuration reached Envoy's log: {}",
        envoy.log()
    );
}

/// An upstream that takes one request, chunked body and trailers and all,
/// answers 200, and gives back the bytes it was sent.
fn recording_upstream() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Up to the end of the trailers: the blank line after the last chunk.
        while !String::from_utf8_lossy(&request)
            .split_once("\r\n0\r\n")
            .is_some_and(|(_, rest)| rest.ends_with("\r\n\r\n") || rest == "\r\n")
        {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        let _ = sent.send(String::from_utf8_lossy(&request).into_owned());
    });
    (port, seen)
}

#[test]
fn envoy_strips_keyhost_headers_and_keys_a_client_sends_as_request_trailers() {
    let k = keys();
    let (port, seen) = recording_upstream();
    let envoy = inline_envoy(
        &k.s,
        &policy("keyhost_proxy_wasm.wasm"),
        port,
        &["--service", "object-storage", "--scope", "read"],
    );
    let key = &k.ok.1;
    let request = format!(
        "POST /static/echo HTTP/1.1\r\nhost: app\r\nx-api-key: {key}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-keyhost-owner: user:root\r\nX-Keyhost-Key-Id: kid_forged\r\nx-api-key: {key}\r\nx-other: kept\r\n\r\n"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let (head, trailers) = seen.split_once("\r\n0\r\n").expect("a chunked body");
    let trailers = trailers.to_ascii_lowercase();
    // Envoy hands trailers on: the client's own arrives.
    assert!(trailers.contains("x-other: kept"), "{seen}");
    assert!(!trailers.contains("x-keyhost"), "{seen}");
    assert!(
        !seen.contains(key.as_str()),
        "the key went upstream: {seen}"
    );
    assert!(
        !seen.contains("user:root") && !seen.contains("kid_forged"),
        "{seen}"
    );
    // The identity the filter vouches for is in the headers.
    assert!(
        head.to_ascii_lowercase()
            .contains("x-keyhost-owner: user:alice"),
        "{seen}"
    );
}

/// A bad configuration is refused at load, with an error that names the
/// field and never quotes the value.
#[test]
fn envoy_refuses_a_filter_configuration_it_cannot_use_and_does_not_quote_it() {
    let s = Sandbox::new();
    let upstream = Nginx::upstream(s.dir.path());
    let wasm = policy("keyhost_proxy_wasm.wasm");
    let dir = s.dir.path().to_path_buf();
    for (config, said) in [
        (
            r#"{"servce": "kh_usr_SECRETSECRET", "registry": {"inline": ""}}"#,
            "unknown field `servce`",
        ),
        (
            r#"{"service": ["kh_usr_SECRETSECRET"], "registry": {"inline": ""}}"#,
            "wrong type",
        ),
        (
            r#"{"registry": {"inline": "S0hTTkFQMDQgdHJ1bmNhdGVk"}}"#,
            "registry.inline",
        ),
    ] {
        let config = format!("'{config}'");
        let file = dir.join("refused.yaml");
        let mut snippet = crate::support::docs::block("envoy-filter-snippet", "yaml")
            .replace(GUIDE_WASM, arg(&wasm))
            .replace(GUIDE_CONFIG, &config);
        snippet = snippet
            .lines()
            .map(|l| format!("          {l}\n"))
            .collect();
        std::fs::write(&file, bootstrap_for_validation(&snippet, upstream.port)).unwrap();
        let output =
            std::process::Command::new(crate::support::foreign::foreign().join("venv/bin/envoy"))
                .args(["--mode", "validate", "-c", arg(&file), "-l", "info"])
                .args(["--disable-hot-restart"])
                .output()
                .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{config} was taken:\n{log}");
        assert!(log.contains(said), "{config}: {said:?} not in\n{log}");
        assert!(
            !log.contains("SECRETSECRET"),
            "the value was quoted:\n{log}"
        );
    }
}

fn bootstrap_for_validation(filters: &str, upstream: u16) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - {{ name: app, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: app }} }}] }}
{filters}  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"#
    )
}

/// A server on `port` that answers every request with `response`, until
/// dropped: a snapshot endpoint that has gone wrong.
struct Canned {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
    /// The requests it was sent.
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Canned {
    fn start(port: u16, response: Vec<u8>) -> Canned {
        // keyhost serve's socket may take a moment to go.
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => break listener,
                Err(e) if start.elapsed() > Duration::from_secs(10) => {
                    panic!("take over port {port}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seeing = seen.clone();
        std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut request = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        seeing
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&request).into_owned());
                        let _ = stream.write_all(&response);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Canned { stop, port, seen }
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn snapshot_answer(status: &str, body: &[u8], etag: &str, proof: &str) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/vnd.keyhost.snapshot\r\netag: {etag}\r\nx-keyhost-answer-proof: {proof}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// What a filter in live mode needs: a registry with alice's key `ok`, a
/// replica credential for Envoy, and `keyhost serve` to fetch from.
struct Live {
    s: Sandbox,
    ok: (String, String),
    credential: String,
    serve: crate::support::Server,
}

fn live() -> Live {
    let s = Sandbox::new().with_people();
    let ok = s.create(&["--as", "user:alice", "--name", "ok"]);
    let credential = s.ok(&["replica", "add", "envoy-1"])["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let serve = s.serve(&[]);
    Live {
        s,
        ok,
        credential,
        serve,
    }
}

/// Live mode, the guide's configuration as it stands: revocation and new
/// keys reach Envoy within 2 s with no restart; with keyhost serve down,
/// or answering with a broken snapshot, Envoy decides on the last good one
/// and says so.
#[test]
fn envoy_in_live_mode_follows_the_registry_and_outlives_keyhost_serve() {
    let Live {
        s,
        ok: (ok_id, ok),
        credential,
        serve,
    } = live();
    let keyhost_port: u16 = serve.base.rsplit(':').next().unwrap().parse().unwrap();
    let upstream = Nginx::upstream(s.dir.path());
    let wasm = policy("keyhost_proxy_wasm.wasm");
    let envoy = Envoy::start(
        s.dir.path(),
        "envoy-filter-snippet",
        &[(GUIDE_WASM, arg(&wasm))],
        upstream.port,
        Some(keyhost_port),
        &[("KEYHOST_REPLICA_CREDENTIAL", &credential)],
    );
    // The same, told to fail closed 1.5 s after its last proven answer.
    let bounded_config = r#"'{"service": "inventory", "scope": "read", "registry": {"live": {"cluster": "keyhost", "every_ms": 250, "max_stale_ms": 1500}}}'"#;
    let bounded = Envoy::start(
        s.dir.path(),
        "envoy-filter-snippet",
        &[(GUIDE_WASM, arg(&wasm)), (GUIDE_CONFIG, bounded_config)],
        upstream.port,
        Some(keyhost_port),
        &[("KEYHOST_REPLICA_CREDENTIAL", &credential)],
    );
    // The first snapshot comes on the first tick.
    until(
        &envoy,
        &[("authorization", bearer(&ok).as_str())],
        Duration::from_secs(10),
        is(200, None),
    );
    let seen = send(
        &envoy,
        "/static/echo",
        &[("authorization", bearer(&ok).as_str())],
    )
    .seen();
    assert_eq!(seen.get("x-keyhost-key-id"), Some(&ok_id));
    assert_eq!(envoy.stat("wasmcustom.keyhost_snapshot_stale"), Some(0));

    // A disabled key is refused, and a new one passes, within 2 s.
    s.ok(&["disable", &ok_id, "--as", "user:alice"]);
    let took = until(
        &envoy,
        &[("authorization", bearer(&ok).as_str())],
        Duration::from_secs(5),
        is(403, Some("disabled")),
    );
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");
    let (_, fresh) = s.create(&["--as", "user:alice", "--name", "fresh"]);
    let took = until(
        &envoy,
        &[("authorization", bearer(&fresh).as_str())],
        Duration::from_secs(5),
        is(200, None),
    );
    assert!(took < Duration::from_secs(2), "a new key took {took:?}");

    // A fetch without the credential, or with a revoked one, is refused.
    let snapshot_url = serve.url("/v1/snapshot");
    let unauthorized = http().get(&snapshot_url).call().unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let mut fetched = http()
        .get(&snapshot_url)
        .header("authorization", format!("Bearer {credential}"))
        .call()
        .unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    let good = fetched.body_mut().read_to_vec().unwrap();
    // A fetch proven as the filter proves it: serve proves its answer for
    // that fetch's nonce, which a replay to another fetch cannot reuse.
    let key = keyhost_core::key_format::hash(&credential);
    let nonce = "00112233445566778899aabbccddeeff";
    let mut proven = http()
        .get(&snapshot_url)
        .header(
            "authorization",
            replica_proof::authorization(&key, nonce, "/v1/snapshot"),
        )
        .call()
        .unwrap();
    assert_eq!(proven.status().as_u16(), 200);
    let etag = proven.headers()["etag"].to_str().unwrap().to_string();
    let proof = proven.headers()[replica_proof::ANSWER_PROOF_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    assert!(replica_proof::verify_answer(
        &key, nonce, 200, &etag, &proof
    ));
    assert_eq!(proven.body_mut().read_to_vec().unwrap(), good);

    // keyhost serve goes away: Envoy keeps deciding, and says it is stale.
    drop(serve);
    let start = Instant::now();
    while envoy.stat("wasmcustom.keyhost_snapshot_stale") != Some(1) {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", envoy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        send(
            &envoy,
            "/static/echo",
            &[("authorization", bearer(&fresh).as_str())]
        )
        .status,
        200
    );
    let answer = send(
        &envoy,
        "/static/echo",
        &[("authorization", bearer(&ok).as_str())],
    );
    assert_eq!((answer.status, answer.code().as_str()), (403, "disabled"));
    assert!(
        envoy.log().contains("keeping the last good snapshot"),
        "{}",
        envoy.log()
    );
    // The bounded one decided on its snapshot until the bound, then fails
    // closed.
    let took = until(
        &bounded,
        &[("authorization", bearer(&fresh).as_str())],
        Duration::from_secs(10),
        is(403, Some("policy_error")),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(bounded.log().contains("max_stale_ms"), "{}", bounded.log());

    // Something answers in its place with a corrupted, then a truncated
    // snapshot (with a new tag, so they would be taken if not verified):
    // refused, and the last good snapshot stays.
    let mut corrupted = good.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x20;
    let truncated = good[..good.len() - 100].to_vec();
    for (name, answer) in [
        (
            "corrupted",
            snapshot_answer("200 OK", &corrupted, "\"forged\"", &proof),
        ),
        (
            "truncated",
            snapshot_answer("200 OK", &truncated, "\"forged\"", &proof),
        ),
        // serve's own answers, proven for another fetch: replayed.
        ("replayed", snapshot_answer("200 OK", &good, &etag, &proof)),
        (
            "replayed 304",
            snapshot_answer("304 Not Modified", b"", &etag, &proof),
        ),
    ] {
        let failures = envoy
            .stat("wasmcustom.keyhost_snapshot_fetch_failures")
            .unwrap_or(0);
        let fake = Canned::start(keyhost_port, answer);
        let start = Instant::now();
        while envoy
            .stat("wasmcustom.keyhost_snapshot_fetch_failures")
            .unwrap_or(0)
            < failures + 2
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name}: {}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let requests = fake.seen.lock().unwrap().join("\n");
        drop(fake);
        // The credential never crossed the wire; its proof did.
        assert!(requests.contains("KeyhostReplica nonce="), "{requests}");
        assert!(!requests.contains(&credential), "{requests}");
        assert_eq!(envoy.stat("wasmcustom.keyhost_snapshot_stale"), Some(1));
        assert_eq!(
            send(
                &envoy,
                "/static/echo",
                &[("authorization", bearer(&fresh).as_str())]
            )
            .status,
            200,
            "{name}"
        );
        let answer = send(
            &envoy,
            "/static/echo",
            &[("authorization", bearer(&ok).as_str())],
        );
        assert_eq!((answer.status, answer.code().as_str()), (403, "disabled"));
    }
    for said in [
        "the snapshot it sent is refused",
        "not proven by keyhost serve",
    ] {
        assert!(envoy.log().contains(said), "{said}: {}", envoy.log());
    }
    assert!(
        !envoy.log().contains(&credential),
        "the credential was logged"
    );
}

#[test]
fn a_rust_policy_built_as_a_filter_gives_its_own_decisions_in_envoy() {
    let s = Sandbox::new().with_people();
    let (_, plain) = s.create(&["--as", "user:alice", "--name", "plain"]);
    let (_, strict_ok) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "strict",
        "--expires",
        "1h",
        "--allow-ip",
        "127.0.0.0/8",
    ]);
    let upstream = Nginx::upstream(s.dir.path());
    let checks = [
        "--service",
        "object-storage",
        "--scope",
        "read",
        "--trust-source-address",
    ];
    let strict = inline_envoy(
        &s,
        &policy("keyhost_proxy_wasm_strict.wasm"),
        upstream.port,
        &checks,
    );
    let default = inline_envoy(
        &s,
        &policy("keyhost_proxy_wasm.wasm"),
        upstream.port,
        &checks,
    );
    let component = policy("keyhost_policy_strict.wasm");
    for (key, strict_expected, default_expected) in
        [(&plain, "denied", "allow"), (&strict_ok, "allow", "allow")]
    {
        // The strict component in keyhost itself decides the same.
        let keyhost = s.decide(
            key,
            &[
                "--service",
                "object-storage",
                "--scope",
                "read",
                "--ip",
                "127.0.0.1",
                "--policy",
                arg(&component),
            ],
        );
        assert_eq!(keyhost, strict_expected);
        for (envoy, expected) in [(&strict, strict_expected), (&default, default_expected)] {
            let answer = send(envoy, "/static/echo", &[("x-api-key", key)]);
            let decided = match answer.status {
                200 => "allow".to_string(),
                _ => answer.code(),
            };
            assert_eq!(decided, expected, "{}", answer.body);
        }
    }
    let answer = send(&strict, "/static/echo", &[("x-api-key", &plain)]);
    assert!(answer.body.contains("strict policy"), "{}", answer.body);
}

/// The Envoy guide's ext_authz snippet, in the same Envoy, against keyhost
/// serve: no deprecated field, and the decisions of `/auth`.
#[test]
fn envoy_runs_the_readme_ext_authz_snippet_against_keyhost_serve() {
    let s = Sandbox::new().with_people();
    let (ok_id, ok) = s.create(&["--as", "user:alice", "--name", "ok"]);
    let (_, bound) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "bound",
        "--kind",
        "service-specific",
        "--service",
        "billing",
    ]);
    let serve = s.serve(&["--trusted-proxy", "127.0.0.1/32"]);
    let address = serve.base.trim_start_matches("http://").to_string();
    let keyhost_port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let upstream = HeaderEcho::start();
    let envoy = Envoy::start(
        s.dir.path(),
        "envoy-ext-authz-snippet",
        &[("127.0.0.1:8080", &address)],
        upstream.port,
        Some(keyhost_port),
        &[],
    );
    let answer = send(
        &envoy,
        "/static/echo",
        &[
            ("x-api-key", &ok),
            ("x-keyhost-key-id", "kid_forged"),
            // Not among the headers keyhost answers with: only the
            // snippet's header_mutation keeps it from the upstream.
            ("X-Keyhost-Info-Role", "admin"),
            ("X.Keyhost.Key.Id", "kid_victim_dotted"),
            ("x_-keyhost..owner", "owner_in_a_run"),
            ("X~Keyhost~Info~Tier", "tier_tilded"),
        ],
    );
    for forged in [
        "kid_forged",
        "kid_victim_dotted",
        "owner_in_a_run",
        "tier_tilded",
    ] {
        assert!(
            !answer.body.contains(forged),
            "{forged} reached the upstream: {}",
            answer.body
        );
    }
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, envoy.log());
    assert_eq!(answer.seen().get("x-keyhost-key-id"), Some(&ok_id));
    assert!(
        !answer.seen().contains_key("x-keyhost-info-role"),
        "{}",
        answer.body
    );
    let answer = send(
        &envoy,
        "/static/echo",
        &[("authorization", &bearer(&bound))],
    );
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (403, "wrong_service")
    );
    // The root path reaches keyhost as `/auth/`: decided, not a 404 that
    // Envoy would turn into a refusal.
    let root = send(&envoy, "/", &[("x-api-key", &ok)]);
    assert!(
        !root.body.contains("\"decision\""),
        "{} {}",
        root.status,
        root.body
    );
    let answer = send(&envoy, "/static/echo", &[]);
    assert_eq!(answer.status, 401);
    assert!(
        answer.headers.contains_key("www-authenticate"),
        "{:?}",
        answer.headers
    );
    assert!(
        !envoy.log().to_ascii_lowercase().contains("deprecated"),
        "{}",
        envoy.log()
    );
}

/// `keyhost export traefik --watch`, killed when dropped.
struct Watching(Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn export_traefik(s: &Sandbox, folder: &Path, extra: &[&str], watch: bool) -> Option<Watching> {
    let plugins = folder.join("plugins-local");
    let config = folder.join("dynamic/keyhost.yml");
    let mut args = vec![
        "export",
        "traefik",
        "--plugins",
        arg(&plugins),
        "--config",
        arg(&config),
    ];
    args.extend_from_slice(extra);
    if !watch {
        s.ok(&args);
        return None;
    }
    args.push("--watch");
    let child = s
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start keyhost export traefik --watch");
    let start = Instant::now();
    while !config.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no config written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Watching(child))
}

#[test]
fn traefik_with_the_plugin_decides_every_case_and_follows_the_registry() {
    let k = keys();
    let upstream = HeaderEcho::start();
    let (_, loopback) = k.s.create(&[
        "--as",
        "user:alice",
        "--name",
        "loopback",
        "--allow-ip",
        "127.0.0.0/8",
    ]);
    let folder: PathBuf = Traefik::folder(k.s.dir.path());
    // The client's address is the peer Traefik took the request from.
    let _watching = export_traefik(
        &k.s,
        &folder,
        &["--service", "object-storage", "--scope", "read"],
        true,
    );
    let traefik = Traefik::start(&folder, upstream.port);
    let (ok_id, ok) = &k.ok;
    // Traefik loads the plugin with the dynamic configuration.
    until(
        &traefik,
        &[("x-api-key", ok)],
        Duration::from_secs(30),
        is(200, None),
    );
    decides_every_case(&traefik, &k, "/static/echo", "traefik");
    // What a client writes in X-Real-Ip or X-Forwarded-For does not make
    // it an allowed address; the peer's own address does.
    let answer = send(
        &traefik,
        "/static/echo",
        &[
            ("authorization", &bearer(&k.ip)),
            ("x-real-ip", "10.1.2.3"),
            ("x-forwarded-for", "10.1.2.3"),
        ],
    );
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (403, "ip_not_allowed")
    );
    let answer = send(&traefik, "/static/echo", &[("x-api-key", &loopback)]);
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A disabled key: --watch rewrites the file, Traefik reloads it.
    k.s.ok(&["disable", ok_id, "--as", "user:alice"]);
    let took = until(
        &traefik,
        &[("x-api-key", ok)],
        Duration::from_secs(20),
        is(403, Some("disabled")),
    );
    assert!(took < Duration::from_secs(10), "revocation took {took:?}");
    let config = std::fs::read_to_string(folder.join("dynamic/keyhost.yml")).unwrap();
    assert!(
        !config.contains(ok.as_str()),
        "a secret is in Traefik's configuration"
    );
}

/// A policy compiled into the filter that panics takes its VM down, and
/// Envoy (failure_policy FAIL_CLOSED, as the guide gives it) refuses every
/// request after, rather than let one through; Envoy itself stays up.
#[test]
fn a_policy_that_panics_inside_envoy_fails_closed() {
    let s = Sandbox::new().with_people();
    let (_, ok) = s.create(&["--as", "user:alice", "--name", "ok"]);
    let upstream = Nginx::upstream(s.dir.path());
    // The hostile policy panics on the service `trap`.
    let envoy = inline_envoy(
        &s,
        &policy("keyhost_proxy_wasm_hostile.wasm"),
        upstream.port,
        &["--service", "trap"],
    );
    for attempt in 0..3 {
        let answer = send(&envoy, "/static/echo", &[("x-api-key", &ok)]);
        assert!(
            answer.status >= 500,
            "attempt {attempt}: {} {}",
            answer.status,
            answer.body
        );
        assert!(
            !answer.body.contains("x-keyhost-key-id: kid"),
            "{}",
            answer.body
        );
    }
    let ready = http()
        .get(format!("http://127.0.0.1:{}/ready", envoy.admin))
        .call()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200, "Envoy went down");
}

/// One byte of the snapshot inside Traefik's configuration flipped, as a
/// copy gone wrong would: the plugin refuses it, as Envoy's filter does,
/// and lets no key through.
#[test]
fn traefik_refuses_an_inline_snapshot_with_one_flipped_byte() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let k = keys();
    let upstream = Nginx::upstream(k.s.dir.path());
    let folder: PathBuf = Traefik::folder(k.s.dir.path());
    export_traefik(
        &k.s,
        &folder,
        &["--service", "object-storage", "--scope", "read"],
        false,
    );
    let config_path = folder.join("dynamic/keyhost.yml");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let plugin = &mut config["http"]["middlewares"]["keyhost"]["plugin"]["keyhost"];
    let mut snapshot = STANDARD
        .decode(
            plugin["registry"]["inline"]
                .as_str()
                .expect("an inline snapshot"),
        )
        .unwrap();
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0x01;
    plugin["registry"]["inline"] = STANDARD.encode(&snapshot).into();
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let traefik = Traefik::start(&folder, upstream.port);
    let (_, ok) = &k.ok;
    let started = Instant::now();
    while !traefik.log().contains("registry.inline") {
        let answer = send(&traefik, "/static/echo", &[("x-api-key", ok)]);
        assert_ne!(
            answer.status, 200,
            "a flipped snapshot let a key through: {}",
            answer.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            traefik.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = send(&traefik, "/static/echo", &[("x-api-key", ok)]);
    assert_ne!(answer.status, 200, "{}", answer.body);
    assert!(
        traefik.log().contains("checksum") || traefik.log().contains("digest"),
        "{}",
        traefik.log()
    );
}

/// The Traefik guide's forwardAuth middleware in a real Traefik before a real
/// `keyhost serve`: the upstream gets keyhost's identity and none of a
/// client's own `X-Keyhost-*` headers, in any spelling.
#[test]
fn traefik_forward_auth_to_serve_passes_no_forged_identity_header_in_any_spelling() {
    let k = keys();
    let upstream = HeaderEcho::start();
    let serve = k.s.serve(&["--service", "object-storage"]);
    let folder: PathBuf = Traefik::folder(k.s.dir.path());
    // The plugin the static configuration names is there, but unused.
    export_traefik(&k.s, &folder, &[], false);
    let snippet = crate::support::docs::block("traefik-forwardauth-snippet", "yaml")
        .replace("http://127.0.0.1:8080", &serve.base);
    std::fs::write(folder.join("dynamic/keyhost.yml"), snippet).unwrap();
    let traefik = Traefik::start(&folder, upstream.port);
    let (ok_id, ok) = &k.ok;
    until(
        &traefik,
        &[("x-api-key", ok)],
        Duration::from_secs(30),
        is(200, None),
    );
    let answer = send(
        &traefik,
        "/static/echo",
        &[
            ("x-api-key", ok),
            ("X-Keyhost-Key-Id", "kid_forged"),
            ("X.Keyhost.Key.Id", "kid_victim_dotted"),
            ("X-Keyhost.Info.Role", "role_dotted"),
            ("X_Keyhost_Owner", "owner_underscored"),
            ("x_-keyhost..kind", "kind_in_a_run"),
            ("X~Keyhost~Info~Tier", "tier_tilded"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.seen().get("x-keyhost-key-id"),
        Some(ok_id),
        "{}",
        answer.body
    );
    for forged in [
        "kid_forged",
        "kid_victim_dotted",
        "role_dotted",
        "owner_underscored",
        "kind_in_a_run",
        "tier_tilded",
    ] {
        assert!(
            !answer.body.contains(forged),
            "{forged} reached the upstream: {}",
            answer.body
        );
    }
    let refused = send(&traefik, "/static/echo", &[("x-api-key", "kh_usr_nope")]);
    assert_eq!(refused.status, 401, "{}", refused.body);
}

/// docs/envoy.yaml, a whole configuration, run as it stands but for its
/// ports and the filter's path: Envoy fetches the snapshot from serve and
/// decides as the guide says.
#[test]
fn the_whole_envoy_configuration_in_the_docs_runs_as_it_stands() {
    let Live {
        s,
        ok: (ok_id, ok),
        credential,
        serve,
    } = live();
    let keyhost_port = serve.base.rsplit(':').next().unwrap().to_string();
    let upstream = HeaderEcho::start();
    let wasm = policy("keyhost_proxy_wasm.wasm");
    let port = crate::support::free_port();
    let mut config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/envoy.yaml"))
            .unwrap();
    for (from, to) in [
        (
            "port_value: 10000".to_string(),
            format!("port_value: {port}"),
        ),
        (
            "port_value: 8080".into(),
            format!("port_value: {keyhost_port}"),
        ),
        (
            "port_value: 9000".into(),
            format!("port_value: {}", upstream.port),
        ),
        (
            "filename: /etc/envoy/keyhost.wasm".into(),
            format!("filename: {}", arg(&wasm)),
        ),
    ] {
        assert_eq!(
            config.matches(from.as_str()).count(),
            1,
            "docs/envoy.yaml: {from}"
        );
        config = config.replace(&from, &to);
    }
    let envoy = Envoy::with_config(
        s.dir.path(),
        &config,
        port,
        &[("KEYHOST_REPLICA_CREDENTIAL", &credential)],
    );
    until(
        &envoy,
        &[("x-api-key", &ok)],
        Duration::from_secs(15),
        is(200, None),
    );
    let answer = send(
        &envoy,
        "/app",
        &[("x-api-key", &ok), ("X.Keyhost.Owner", "user:root")],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.seen().get("x-keyhost-key-id"), Some(&ok_id));
    assert!(
        !answer.body.contains("user:root") && !answer.body.contains(ok.as_str()),
        "{}",
        answer.body
    );
    let refused = send(&envoy, "/app", &[("x-api-key", "kh_usr_nope")]);
    assert_eq!(refused.status, 401, "{}", refused.body);
}
