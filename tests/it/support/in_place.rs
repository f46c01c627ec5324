//! The cases every proxy that checks keys in place must decide alike (the
//! gate in wasi:http hosts, the filters in Envoy and Traefik), with the
//! same registry: what reached the upstream is read back from its answer
//! (tests/echo-app, or nginx's echo location).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{Sandbox, http};

/// A proxy in front of an echoing upstream.
pub trait Front {
    /// The proxy's URL for `path`.
    fn url(&self, path: &str) -> String;
    /// What the proxy logged, for failure messages.
    fn log(&self) -> String;
}

/// A registry with one key for each case.
pub struct Keys {
    pub s: Sandbox,
    pub ok: (String, String),
    pub bound: String,
    pub narrow: String,
    pub disabled: String,
    pub expired: String,
    pub ip: String,
    pub limited: String,
}

pub fn keys() -> Keys {
    let s = Sandbox::new().with_people();
    let ok = s.create(&["--as", "user:alice", "--name", "ok"]);
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
    let (_, narrow) = s.create(&["--as", "user:alice", "--name", "narrow", "--scope", "write"]);
    let (disabled_id, disabled) = s.create(&["--as", "user:alice", "--name", "off"]);
    s.ok(&["disable", &disabled_id, "--as", "user:alice"]);
    let (_, expired) = s.create(&["--as", "user:alice", "--name", "brief", "--expires", "1s"]);
    let (_, ip) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "office",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let (_, limited) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "limited",
        "--rate-limit",
        "100/min",
    ]);
    Keys {
        s,
        limited,
        ok,
        bound,
        narrow,
        disabled,
        expired,
        ip,
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    /// The headers that reached the app or upstream, from its answer's
    /// `name: value` lines; an empty value (nginx's for a missing header)
    /// counts as absent.
    pub fn seen(&self) -> BTreeMap<String, String> {
        self.body
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
            .collect()
    }

    pub fn code(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a refusal's body is JSON ({e}): {}", self.body));
        assert_eq!(body["decision"], "deny");
        body["code"].as_str().unwrap().to_string()
    }
}

pub fn send(host: &impl Front, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = http().get(host.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request
        .call()
        .unwrap_or_else(|e| panic!("request through the proxy: {e}\n{}", host.log()));
    Answer {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `GET path` through `front` over a raw connection, with `headers` as
/// bytes (values no HTTP client library would send: not UTF-8); the status
/// and the body.
pub fn send_raw(front: &impl Front, path: &str, headers: &[(&str, &[u8])]) -> (u16, String) {
    use std::io::{Read, Write};
    let url = front.url(path);
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer:?}\n{}", front.log()));
    (status, answer)
}

/// The cases of a key check in place, through `front` to the echo at
/// `echo`: a valid key in either header (its identity, and nothing forged
/// or secret, reaches the upstream), missing, malformed and unknown keys
/// (401), a path that climbs, and known keys the rules refuse (403).
pub fn decides_every_case(front: &impl Front, k: &Keys, echo: &str, label: &str) {
    // A valid key, in either header, gets through with its identity; a
    // forged identity and the key itself do not.
    let (ok_id, ok) = &k.ok;
    for key_header in [("authorization", bearer(ok)), ("x-api-key", ok.clone())] {
        let answer = send(
            front,
            echo,
            &[
                (key_header.0, &key_header.1),
                ("X-Keyhost-Key-Id", "kid_forged"),
                ("x-keyhost-owner", "user:root"),
                ("X-Keyhost-Service", "forged"),
                ("X-Keyhost-Info-Role", "admin"),
                // Read as X-Keyhost-* by servers that fold `_` into `-`.
                ("X_Keyhost_Info_Role", "admin"),
                // Read as X-Keyhost-* by servers that fold `.` too, and by
                // those that fold a run of separators into one.
                ("X.Keyhost.Key.Id", "kid_victim_dotted"),
                ("X-Keyhost.Info.Role", "role_dotted"),
                ("x_-keyhost..owner", "owner_in_a_run"),
                ("X~Keyhost~Info~Tier", "tier_tilded"),
                ("x_api_key", "kh_usr_forged"),
                ("X.API.Key", "kh_usr_forged_dotted"),
            ],
        );
        assert_eq!(answer.status, 200, "{label}: {}", answer.body);
        let seen = answer.seen();
        assert_eq!(seen.get("x-keyhost-key-id"), Some(ok_id), "{}", answer.body);
        assert_eq!(
            seen.get("x-keyhost-owner").map(String::as_str),
            Some("user:alice")
        );
        assert_eq!(seen.get("x-keyhost-kind").map(String::as_str), Some("user"));
        assert!(!seen.contains_key("x-keyhost-service"), "{}", answer.body);
        assert!(!seen.contains_key("x-keyhost-info-role"), "{}", answer.body);
        assert!(
            !answer.body.to_ascii_lowercase().contains("x_keyhost"),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("kh_usr_forged"), "{}", answer.body);
        for forged in [
            "kid_victim_dotted",
            "role_dotted",
            "owner_in_a_run",
            "tier_tilded",
        ] {
            assert!(!answer.body.contains(forged), "{label}: {}", answer.body);
        }
        assert!(
            !seen.contains_key("authorization"),
            "the key went on: {}",
            answer.body
        );
        assert!(
            !seen.contains_key("x-api-key"),
            "the key went on: {}",
            answer.body
        );
        assert!(!answer.body.contains(ok.as_str()), "the key went on");
    }
    // Header values that are not UTF-8 (obs-text, which proxies accept):
    // a forged identity header with one is still removed, and the proxy
    // keeps deciding after.
    let (status, answer) = send_raw(
        front,
        echo,
        &[
            ("x-api-key", ok.as_bytes()),
            ("X-Keyhost-Info-Role", b"admin\xa0"),
            ("X-Keyhost-Key-Id", b"kid_forged\xff"),
        ],
    );
    if status == 200 {
        assert!(!answer.contains("admin"), "{label}: {answer}");
        assert!(!answer.contains("kid_forged"), "{label}: {answer}");
    } else {
        assert!(status == 400 || status == 431, "{label}: {status} {answer}");
    }
    let answer = send(front, echo, &[("x-api-key", ok)]);
    assert_eq!(
        answer.status, 200,
        "{label}: after obs-text: {}",
        answer.body
    );

    // Missing, malformed and unknown keys: 401 with a challenge.
    let unknown = ok[..ok.len() - 10].to_string() + "AAAAAAAAAA";
    for (headers, code) in [
        (vec![], "not_found"),
        (vec![("x-api-key", "not-a-key")], "malformed"),
        (vec![("x-api-key", unknown.as_str())], "malformed"),
        (vec![("authorization", "Basic dXNlcjpwYXNz")], "not_found"),
    ] {
        let answer = send(front, echo, &headers);
        assert_eq!(answer.status, 401, "{headers:?}: {}", answer.body);
        assert_eq!(answer.code(), code, "{headers:?}");
        let challenge = answer.headers.get("www-authenticate").expect("a challenge");
        assert!(
            challenge.starts_with("Bearer realm=\"keyhost\""),
            "{challenge}"
        );
        // RFC 6750: no error when no key was sent at all (a Basic
        // credential is none of keyhost's).
        assert_eq!(
            challenge.contains("error="),
            code == "malformed",
            "{label}: {headers:?}: {challenge}"
        );
        assert!(
            !answer.body.contains("x-keyhost"),
            "a refusal reached the app"
        );
    }
    // A well-formed key that is in no registry: its checksum is right, so
    // only the lookup can refuse it.
    let s2 = Sandbox::new().with_people();
    let (_, stranger) = s2.create(&["--as", "user:alice", "--name", "elsewhere"]);
    let answer = send(front, echo, &[("x-api-key", &stranger)]);
    assert_eq!((answer.status, answer.code().as_str()), (401, "not_found"));

    // A path that climbs out of the upstream's base path, or past a
    // policy's path rules, is refused before anything else, unless the
    // proxy resolved it itself (Traefik does), so that the upstream and
    // the policy saw only the resolved path.
    for climbing in [
        format!("/a/%2e%2e{echo}"),
        format!("/a/%2E%2e{echo}"),
        format!("/.{echo}"),
        format!("/a/..;{echo}"),
        format!("/a%2f..%2f{echo}"),
        format!("/a/%252e%252e{echo}"),
    ] {
        let answer = send(front, &climbing, &[("x-api-key", ok)]);
        if answer.status == 200 {
            let request_line = answer.body.lines().next().unwrap_or_default();
            let lower = request_line.to_ascii_lowercase();
            assert!(
                !request_line.contains("/.")
                    && !["%2e", "%2f", "%25"].iter().any(|f| lower.contains(f)),
                "{label}: {climbing} reached the upstream as {request_line}"
            );
        } else {
            assert_eq!(
                (answer.status, answer.code().as_str()),
                (403, "denied"),
                "{label}: {climbing}"
            );
        }
    }

    // Known keys refused by the rules: 403 with the code.
    std::thread::sleep(Duration::from_millis(1100)); // the 1s key is past its expiry
    for (key, code) in [
        (&k.bound, "wrong_service"),
        (&k.narrow, "insufficient_scope"),
        (&k.disabled, "disabled"),
        (&k.expired, "expired"),
        // A rate limit the gate cannot keep: refused, not let through.
        (&k.limited, "denied"),
    ] {
        let answer = send(front, echo, &[("authorization", &bearer(key))]);
        assert_eq!(answer.status, 403, "{code}: {}", answer.body);
        assert_eq!(answer.code(), code);
        // RFC 6750: a 403 challenges only for a missing scope.
        let challenge = answer.headers.get("www-authenticate");
        if code == "insufficient_scope" {
            let challenge = challenge.expect("a challenge on insufficient_scope");
            assert!(
                challenge.contains("error=\"insufficient_scope\""),
                "{label}: {challenge}"
            );
        } else {
            assert!(challenge.is_none(), "{label}: {code}: {challenge:?}");
        }
    }
}

/// An upstream that answers every request with its request line and every
/// header it was given, one `name: value` line each, names as they came:
/// what nginx's echo cannot show (nginx drops names with a `.` before its
/// own variables see them). Serves until the test process ends.
pub struct HeaderEcho {
    pub port: u16,
}

impl HeaderEcho {
    pub fn start() -> HeaderEcho {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 256 << 10 {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let mut lines = head.split("\r\n");
                    let line = lines.next().unwrap_or_default();
                    let mut echoed =
                        format!("{}\n", line.rsplit_once(' ').map_or(line, |(l, _)| l));
                    for header in lines.filter(|l| !l.is_empty()) {
                        echoed.push_str(&format!("{header}\n"));
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{echoed}",
                        echoed.len()
                    );
                    let _ = stream.write_all(answer.as_bytes());
                });
            }
        });
        HeaderEcho { port }
    }
}
