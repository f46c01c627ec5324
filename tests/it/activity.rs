//! A key's activity: the service and client address of its last use, as
//! serve believed them, and the report of keys and identities gone unused
//! (`keyhost report inactive`, `GET /v1/reports/inactive`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Sandbox, Server, http};

/// `/auth` for `key` naming `service`, with a forwarded address.
fn auth(server: &Server, key: &str, service: &[u8], forwarded_for: &str) -> u16 {
    let service = ureq::http::HeaderValue::from_bytes(service).expect("a header value");
    http()
        .get(server.url("/auth"))
        .header("x-api-key", key)
        .header("x-keyhost-service", service)
        .header("x-forwarded-for", forwarded_for)
        .call()
        .expect("auth request")
        .status()
        .as_u16()
}

/// `GET path` on `server` with `key` as the bearer: the status and body.
fn get(server: &Server, path: &str, key: &str) -> (u16, Value) {
    let mut response = http()
        .get(server.url(path))
        .header("authorization", &format!("Bearer {key}"))
        .call()
        .expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn ids(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item[field].as_str().expect("an id").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[test]
fn the_last_use_keeps_the_service_and_the_address_serve_believed() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "used"]);

    // A client that is not a trusted proxy cannot choose the address.
    let direct = s.serve(&[]);
    assert_eq!(auth(&direct, &key, b"billing", "203.0.113.9"), 200);
    assert_eq!(direct.stop(), 0);
    let shown = s.ok(&["show", &id])["key"].clone();
    assert_eq!(shown["last_service"], "billing", "{shown}");
    assert_eq!(shown["last_address"], "127.0.0.1", "{shown}");
    assert_eq!(shown["use_count"], 1);

    // Behind a trusted proxy, the address it forwards is the client's.
    let proxied = s.serve(&["--trusted-proxy", "127.0.0.1"]);
    let (status, listed) = get(&proxied, "/v1/keys", &key);
    assert_eq!(status, 200);
    // The list call was itself a use, for the service keyhost, from the
    // address serve saw (no proxy forwarded one).
    let api = &listed["keys"][0];
    assert_eq!(api["last_service"], "keyhost", "{listed}");
    assert_eq!(api["last_address"], "127.0.0.1", "{listed}");
    assert_eq!(auth(&proxied, &key, b"reports", "203.0.113.9"), 200);
    // A service holding a bidirectional control is refused before any
    // policy sees it, and is neither counted nor kept.
    let hostile = "\u{202E}billing".as_bytes();
    assert_ne!(auth(&proxied, &key, hostile, "198.51.100.1"), 200);
    assert_eq!(proxied.stop(), 0);

    let shown = s.ok(&["show", &id])["key"].clone();
    assert_eq!(shown["last_service"], "reports", "{shown}");
    assert_eq!(shown["last_address"], "203.0.113.9", "{shown}");
    assert_eq!(shown["use_count"], 3, "{shown}");
    let text = s.run(&["show", &id]).stdout;
    assert!(
        text.contains("last use:    service reports from 203.0.113.9"),
        "{text}"
    );
    let file = std::fs::read_to_string(s.dir.path().join("keys.toml.usage.json")).unwrap();
    assert!(!file.contains('\u{202E}'), "{file}");
}

#[test]
fn the_inactive_report_lists_what_went_unused_and_shows_a_caller_only_its_own() {
    let s = Sandbox::new().with_people();
    let created = Instant::now();
    let (used, alice) = s.create(&["--as", "user:alice", "--name", "used"]);
    let (idle, _) = s.create(&["--as", "user:alice", "--name", "idle"]);
    let (bobs, bob) = s.create(&["--as", "user:bob", "--name", "bobs"]);
    let period = Duration::from_secs(4);
    // Everything is older than the period when the report is made; alice's
    // first key was used within it, through the API.
    let server = s.serve(&[]);
    std::thread::sleep(period.saturating_sub(created.elapsed()) + Duration::from_millis(1100));
    let (status, report) = get(&server, "/v1/reports/inactive?for=4s", &alice);
    let asked = created.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["for"], "4s");
    assert!(report["since"].is_string());
    assert_eq!(ids(&report["keys"], "id"), set(&[&idle]), "{report}");
    // Alice's own service ID has no keys; Bob's identity is not hers.
    assert_eq!(
        ids(&report["identities"], "iam_id"),
        set(&["service-id:billing"]),
        "{report}"
    );
    assert_eq!(report["keys"][0]["last_used"], Value::Null);

    // The CLI reads the whole registry: Bob and his key too. (Serve has
    // written its usage file by then: it flushes every second.)
    std::thread::sleep(Duration::from_millis(1300));
    assert!(
        created.elapsed() - asked < Duration::from_secs(3),
        "the use of Alice's key is still within the period"
    );
    let everything = s.ok(&["report", "inactive", "--for", "4s"]);
    assert_eq!(
        ids(&everything["keys"], "id"),
        set(&[&idle, &bobs]),
        "{everything}"
    );
    assert_eq!(
        ids(&everything["identities"], "iam_id"),
        set(&["user:bob", "service-id:billing"]),
        "{everything}"
    );
    assert!(!ids(&everything["keys"], "id").contains(&used));
    let text = s.run(&["report", "inactive", "--for", "4s"]).stdout;
    assert!(
        text.contains(&idle) && text.contains("never used"),
        "{text}"
    );
    // A period longer than any key's life lists nothing.
    let none = s.run(&["report", "inactive", "--for", "30d"]).stdout;
    assert!(
        none.starts_with("no key or identity has gone unused since"),
        "{none}"
    );

    // Bob's report holds nothing of Alice's, and asking counts as a use of
    // the key that asked.
    let (status, his) = get(&server, "/v1/reports/inactive?for=4s", &bob);
    assert_eq!(status, 200);
    assert!(ids(&his["keys"], "id").is_empty(), "{his}");
    assert!(ids(&his["identities"], "iam_id").is_empty(), "{his}");
}

#[test]
fn a_report_asked_for_badly_is_refused_and_says_why() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "asker"]);
    let server = s.serve(&[]);
    for (query, says) in [
        ("?for=0s", "shorter than one second"),
        ("?for=soon", "not a duration"),
        ("?for=1h&for=2h", "duplicate field"),
        // No field widens what a caller sees.
        ("?for=1h&owner=user:bob", "unknown field"),
    ] {
        let (status, body) = get(&server, &format!("/v1/reports/inactive{query}"), &alice);
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{query}: {body}");
    }
    let (status, _) = get(&server, "/v1/reports/inactive?for=1h", "not-a-key");
    assert_eq!(status, 401);

    let refused = s.run(&["report", "inactive", "--for", "0s"]);
    assert_eq!(refused.code, 2, "bad input: {}", refused.stderr);
    assert!(refused.stderr.contains("--for"), "{}", refused.stderr);
    // Left out, the period is IBM's default, 720h, in both.
    let (status, default) = get(&server, "/v1/reports/inactive", &alice);
    assert_eq!(
        (status, &default["for"]),
        (200, &Value::from("720h")),
        "{default}"
    );
    assert_eq!(s.ok(&["report", "inactive"])["for"], "720h");
}
