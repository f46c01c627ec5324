//! Several `keyhost serve` replicas sharing rate limits and usage
//! through a real Redis, and one registry file written by one primary.

use std::time::{Duration, Instant};

use crate::support::redis::Redis;
use crate::support::{Sandbox, Server, http};
use serde_json::{Value, json};

/// `/auth` for `key` on `server`: (status, Retry-After).
fn auth(server: &Server, key: &str) -> (u16, Option<String>) {
    let (status, retry, _, _) = checked(server, key);
    (status, retry)
}

/// `/auth` for `key` on `server`: the status, Retry-After, the refusal's
/// reason, and how long the answer took.
fn checked(server: &Server, key: &str) -> (u16, Option<String>, String, Duration) {
    let started = Instant::now();
    let mut response = http()
        .get(server.url("/auth"))
        .header("x-api-key", key)
        .header("x-keyhost-service", "storage")
        .call()
        .expect("auth request");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let reason = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (response.status().as_u16(), retry, reason, started.elapsed())
}

fn healthz(server: &Server) -> (u16, Value) {
    let mut response = http().get(server.url("/healthz")).call().unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    (status, body)
}

/// Polls `ready` every 50 ms until it holds or `limit` passes; returns how
/// long it took.
fn within(limit: Duration, mut ready: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn people() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&["identity", "add", "user:ann"]);
    s
}

/// The merged use count of `id`, read by the CLI from the shared state.
fn merged_uses(s: &Sandbox, id: &str, redis: &Redis) -> Value {
    s.ok(&["show", id, "--state", &redis.url()])["key"].clone()
}

/// A primary and two replicas that send their writes to it.
fn three(s: &Sandbox, redis: &Redis, extra: &[&str]) -> Vec<Server> {
    let url = redis.url();
    let mut args = vec!["--state", url.as_str()];
    args.extend_from_slice(extra);
    let primary = s.serve(&args);
    let base = primary.base.clone();
    let mut replica_args = args.clone();
    replica_args.extend(["--primary", base.as_str()]);
    let second = s.serve(&replica_args);
    let third = s.serve(&replica_args);
    vec![primary, second, third]
}

#[test]
fn three_replicas_share_one_rate_limit() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let (_, key) = s.create(&["--as", "user:ann", "--name", "busy", "--rate-limit", "20/s"]);
    let replicas = three(&s, &redis, &[]);
    let (mut allowed, mut limited) = (0, 0);
    let started = Instant::now();
    let mut turn = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let (status, retry) = auth(&replicas[turn % 3], &key);
        turn += 1;
        match status {
            200 => allowed += 1,
            429 => {
                limited += 1;
                let wait: u64 = retry.expect("Retry-After on a 429").parse().unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (90..=110).contains(&allowed),
        "20/s for 5 s across three replicas allowed {allowed} (and limited {limited})"
    );
    assert!(limited > 0);
}

#[test]
fn a_large_limit_is_leased_in_batches_and_never_exceeded() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    // 640 per hour: each replica takes 10 uses from Redis at a time.
    let (_, key) = s.create(&[
        "--as",
        "user:ann",
        "--name",
        "bulk",
        "--rate-limit",
        "640/1h",
    ]);
    let replicas = three(&s, &redis, &[]);
    let allowed = (0..900)
        .filter(|turn| auth(&replicas[turn % 3], &key).0 == 200)
        .count();
    // Never more than the limit; at most one lease per replica left unspent.
    assert!(
        (640 - 3 * 9..=640).contains(&allowed),
        "640/h across three replicas allowed {allowed}"
    );
}

#[test]
fn usage_is_merged_exactly_across_replicas() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let (id, key) = s.create(&["--as", "user:ann", "--name", "counted"]);
    let replicas = three(&s, &redis, &[]);
    let before = now();
    for turn in 0..31 {
        assert_eq!(auth(&replicas[turn % 3], &key).0, 200);
    }
    let merged = within(Duration::from_secs(5), || {
        merged_uses(&s, &id, &redis)["use_count"] == 31
    });
    assert!(merged.is_some(), "{}", merged_uses(&s, &id, &redis));
    let last = merged_uses(&s, &id, &redis)["last_used"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last >= before,
        "last used {last} is not the latest (>= {before})"
    );
    assert!(
        !s.dir.path().join("keys.toml.usage.json").exists(),
        "with shared state, no replica writes a usage file of its own"
    );
    // The uses per hour are merged the same way, and any replica shows them.
    let (_, reader) = s.create(&["--as", "user:ann", "--name", "reader"]);
    let hours = within(Duration::from_secs(5), || {
        hourly_total(&replicas[1], &reader, &id) == Some(31)
    });
    assert!(
        hours.is_some(),
        "{:?}",
        hourly_total(&replicas[1], &reader, &id)
    );
}

#[test]
fn the_last_use_and_the_inactive_report_are_shared_across_replicas() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let created = Instant::now();
    let (id, key) = s.create(&["--as", "user:ann", "--name", "worker"]);
    let (idle, _) = s.create(&["--as", "user:ann", "--name", "idle"]);
    let (_, reader) = s.create(&["--as", "user:ann", "--name", "reader"]);
    let replicas = three(&s, &redis, &["--trusted-proxy", "127.0.0.1"]);
    let used = |server: &Server, service: &str, from: &str| {
        let status = http()
            .get(server.url("/auth"))
            .header("x-api-key", &key)
            .header("x-keyhost-service", service)
            .header("x-forwarded-for", from)
            .call()
            .expect("auth request")
            .status()
            .as_u16();
        assert_eq!(status, 200);
    };
    used(&replicas[0], "storage", "198.51.100.1");
    // Uses are stamped to the second: the later one is a second later.
    std::thread::sleep(Duration::from_millis(1100));
    used(&replicas[1], "billing", "198.51.100.2");
    let last_use = Instant::now();
    let shown = || merged_uses(&s, &id, &redis);
    let merged = within(Duration::from_secs(5), || {
        shown()["use_count"] == 2 && shown()["last_service"] == "billing"
    });
    assert!(merged.is_some(), "{}", shown());
    assert_eq!(shown()["last_address"], "198.51.100.2");
    // The third replica, which served none of them, shows the same.
    let mut response = http()
        .get(replicas[2].url(&format!("/v1/keys/{id}")))
        .header("authorization", &format!("Bearer {reader}"))
        .call()
        .unwrap();
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["key"]["last_service"], "billing", "{body}");
    assert_eq!(body["key"]["last_address"], "198.51.100.2", "{body}");

    // Once the keys are older than the period, the report read from Redis
    // lists the key no replica let through, and not the one another did.
    let period = Duration::from_secs(8);
    // Times are whole seconds: the keys at least the period old, and the
    // last use at least a second inside it.
    std::thread::sleep((period + Duration::from_millis(100)).saturating_sub(created.elapsed()));
    assert!(
        last_use.elapsed() < period - Duration::from_secs(1),
        "the last use is still within the period"
    );
    let report = s.ok(&["report", "inactive", "--for", "8s", "--state", &redis.url()]);
    let listed: Vec<&str> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&idle.as_str()), "{report}");
    assert!(!listed.contains(&id.as_str()), "{report}");
}

/// The sum of `id`'s uses per hour over the last day, as `GET
/// /v1/keys/{id}/usage` on `server` shows them to `key`.
fn hourly_total(server: &Server, key: &str, id: &str) -> Option<u64> {
    let mut response = http()
        .get(&server.url(&format!("/v1/keys/{id}/usage")))
        .header("authorization", &format!("Bearer {key}"))
        .call()
        .ok()?;
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    let hours = body["hours"].as_array()?;
    assert_eq!(hours.len(), 24, "{body}");
    Some(hours.iter().filter_map(|h| h["count"].as_u64()).sum())
}

/// The current time as `keyhost show` prints it, to the second.
fn now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

#[test]
fn redis_down_fails_open_or_closed_and_recovery_keeps_every_count() {
    let s = people();
    let mut redis = Redis::start(s.dir.path().join("redis"));
    let (limited_id, limited) =
        s.create(&["--as", "user:ann", "--name", "l", "--rate-limit", "2/1h"]);
    let (counted_id, counted) = s.create(&["--as", "user:ann", "--name", "c"]);
    let url = redis.url();
    let open = s.serve(&["--state", &url, "--on-state-error", "open"]);
    let closed = s.serve(&["--state", &url, "--on-state-error", "closed"]);
    assert_eq!(auth(&open, &limited).0, 200, "the first of two uses");
    for _ in 0..5 {
        assert_eq!(auth(&open, &counted).0, 200);
    }

    redis.kill();
    for _ in 0..3 {
        assert_eq!(auth(&open, &limited).0, 200, "fails open, past the limit");
    }
    let (status, retry) = auth(&closed, &limited);
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "fails closed");
    for _ in 0..5 {
        assert_eq!(auth(&open, &counted).0, 200, "keys are still checked");
    }
    let degraded = within(Duration::from_secs(3), || {
        healthz(&open).1["status"] == "degraded" && healthz(&closed).1["status"] == "degraded"
    });
    assert!(degraded.is_some(), "{}", healthz(&open).1);
    let (status, body) = healthz(&open);
    assert_eq!(
        status, 200,
        "Redis down does not take the replica out: {body}"
    );
    let mut metrics = http().get(open.url("/metrics")).call().unwrap();
    let text = metrics.body_mut().read_to_string().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("keyhost_state_errors_total ") && !l.ends_with(" 0")),
        "{text}"
    );

    redis.restart();
    let recovered = within(Duration::from_secs(2), || {
        healthz(&open).1["status"] == "ok" && healthz(&closed).1["status"] == "ok"
    });
    assert!(
        recovered.is_some(),
        "not recovered in 2 s: {}",
        healthz(&open).1
    );
    let flushed = within(Duration::from_secs(3), || {
        merged_uses(&s, &counted_id, &redis)["use_count"] == 10
    });
    assert!(
        flushed.is_some(),
        "{}",
        merged_uses(&s, &counted_id, &redis)
    );
    // The window outlived the restart: it holds the first use, so one more
    // passes, and then the limit is shared again by both replicas.
    assert_eq!(auth(&closed, &limited).0, 200);
    assert_eq!(auth(&open, &limited).0, 429, "the limit is shared");
    assert_eq!(auth(&closed, &limited).0, 429);
    let counted_all = within(Duration::from_secs(3), || {
        merged_uses(&s, &limited_id, &redis)["use_count"] == 5
    });
    assert!(
        counted_all.is_some(),
        "uses allowed while Redis was away are counted too: {}",
        merged_uses(&s, &limited_id, &redis)
    );
}

#[test]
fn while_redis_is_down_rate_limited_checks_decide_at_once_and_say_why() {
    let s = people();
    let mut redis = Redis::start(s.dir.path().join("redis"));
    let (_, limited) = s.create(&["--as", "user:ann", "--name", "l", "--rate-limit", "2/1h"]);
    let url = redis.url();
    // A timeout far above a check's cost: a check that waits on Redis shows.
    let slow = ["--state", url.as_str(), "--state-timeout", "2s"];
    let open = s.serve(&[&slow[..], &["--on-state-error", "open"]].concat());
    let closed = s.serve(&[&slow[..], &["--on-state-error", "closed"]].concat());
    redis.kill();
    // The first call finds Redis gone; from then on nothing waits on it.
    checked(&open, &limited);
    checked(&closed, &limited);
    let (mut open_took, mut closed_took) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..20 {
        let (status, _, _, took) = checked(&open, &limited);
        assert_eq!(status, 200, "fails open");
        open_took += took;
        let (status, _, reason, took) = checked(&closed, &limited);
        assert_eq!(status, 429, "fails closed");
        assert!(reason.contains("cannot be reached"), "{reason}");
        assert!(!reason.contains("used up"), "{reason}");
        closed_took += took;
    }
    assert!(
        open_took < Duration::from_secs(1) && closed_took < Duration::from_secs(1),
        "20 checks each took {open_took:?} (open) and {closed_took:?} (closed) with Redis down"
    );
    // Said once in the log, not per request.
    let said = closed.log().matches("shared state unavailable").count();
    assert_eq!(said, 1, "{}", closed.log());
    // And taken up again once Redis is back.
    redis.restart();
    let back = within(Duration::from_secs(3), || {
        healthz(&closed).1["status"] == "ok"
    });
    assert!(back.is_some(), "{}", healthz(&closed).1);
    assert_eq!(auth(&closed, &limited).0, 200);
}

#[test]
fn one_primary_writes_and_every_replica_sees_a_revocation_within_two_seconds() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let (id, key) = s.create(&["--as", "user:ann", "--name", "shared"]);
    let replicas = three(&s, &redis, &[]);
    for replica in &replicas {
        assert_eq!(auth(replica, &key).0, 200);
    }

    // A replica takes no write: it points at the primary, and nothing changes.
    let before = s.registry_text();
    let mut response = http()
        .post(replicas[1].url(&format!("/v1/keys/{id}/disable")))
        .header("authorization", &format!("Bearer {key}"))
        .send_json(json!({}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 307);
    let location = response
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(location, replicas[0].url(&format!("/v1/keys/{id}/disable")));
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "not_primary");
    assert_eq!(s.registry_text(), before);

    let mut response = http()
        .post(&location)
        .header("authorization", &format!("Bearer {key}"))
        .send_json(json!({}))
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.body_mut().read_to_string().unwrap()
    );
    for replica in &replicas {
        let revoked = within(Duration::from_secs(2), || auth(replica, &key).0 == 403);
        assert!(
            revoked.is_some(),
            "{} still allows a disabled key",
            replica.base
        );
    }

    let (_, fresh) = s.create(&["--as", "user:ann", "--name", "fresh"]);
    for replica in &replicas {
        let live = within(Duration::from_secs(2), || auth(replica, &fresh).0 == 200);
        assert!(live.is_some(), "{} does not know a new key", replica.base);
    }
}

/// Runs the usage merge script in `redis` with one key's batch.
fn merge_batch(redis: &Redis, batch: u32, count: u64, window: &Value) -> String {
    merge_batch_with(redis, batch, count, window, "{}")
}

/// [`merge_batch`], with the last use's service and address as `authn`.
fn merge_batch_with(redis: &Redis, batch: u32, count: u64, window: &Value, authn: &str) -> String {
    let script = include_str!("../../host/src/counters/merge_usage.lua");
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "EVAL", script, "5"])
        .args(["c", "l", &format!("batch:{batch}"), "h", "a"])
        .args(["kid_a", &count.to_string(), "1", &window.to_string(), authn])
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stored_window(redis: &Redis) -> Value {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "HGET", "h", "kid_a"])
        .output()
        .expect("run redis-cli");
    serde_json::from_slice(&output.stdout).expect("a stored window")
}

#[test]
fn uses_per_hour_merge_across_an_hour_boundary_and_bad_batches_write_nothing() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let mut counts = vec![0u64; 24];
    counts[23] = 5;
    counts[22] = 2;
    assert_eq!(
        merge_batch(&redis, 1, 7, &json!({ "hour": 100, "counts": counts })),
        "1"
    );
    // The next hour's batch moves the window on by one: 5 and 2 move back a
    // slot, and hour 101 gets its 1.
    let mut next = vec![0u64; 24];
    next[23] = 1;
    assert_eq!(
        merge_batch(&redis, 2, 1, &json!({ "hour": 101, "counts": next })),
        "1"
    );
    let stored = stored_window(&redis);
    assert_eq!(stored["hour"], 101);
    let slots: Vec<u64> = stored["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(&slots[21..], &[2, 5, 1], "{stored}");
    // A late batch for the older hour lands in its own slot.
    let mut late = vec![0u64; 24];
    late[23] = 3;
    merge_batch(&redis, 3, 3, &json!({ "hour": 100, "counts": late }));
    let slots: Vec<u64> = stored_window(&redis)["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(&slots[21..], &[2, 8, 1]);
    // A malformed window is refused before anything is written, and the
    // batch is not marked as applied.
    let before = stored_window(&redis);
    let answer = merge_batch(&redis, 4, 1, &json!({ "hour": "soon", "counts": [] }));
    assert!(answer.contains("malformed"), "{answer}");
    assert_eq!(stored_window(&redis), before);
    // So is a last use that is not a JSON object.
    let answer = merge_batch_with(&redis, 4, 1, &json!({ "hour": 101, "counts": next }), "[1");
    assert!(answer.contains("malformed"), "{answer}");
    assert_eq!(stored_window(&redis), before);
    assert_eq!(
        merge_batch(&redis, 4, 1, &json!({ "hour": 101, "counts": next })),
        "1"
    );
}

#[test]
fn a_write_forwarded_to_the_primary_keeps_its_if_match_and_answers_its_etag() {
    let s = people();
    let redis = Redis::start(s.dir.path().join("redis"));
    let (_, admin) = s.create(&["--as", "user:ann", "--name", "admin"]);
    let (target, _) = s.create(&["--as", "user:ann", "--name", "target"]);
    let replicas = three(&s, &redis, &[]);
    let replica = &replicas[1];
    let patch = |if_match: &str, description: &str| {
        let mut response = http()
            .patch(replica.url(&format!("/v1/keys/{target}")))
            .header("authorization", &format!("Bearer {admin}"))
            .header("keyhost-forward", "primary")
            .header("if-match", if_match)
            .send_json(json!({ "description": description }))
            .unwrap();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        (response.status().as_u16(), etag, body)
    };
    let tag = s.ok(&["show", &target])["key"]["entity_tag"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, etag, body) = patch(&format!("\"{tag}\""), "first");
    assert_eq!(status, 200, "{body}");
    let new_tag = body["key"]["entity_tag"].as_str().unwrap();
    assert_eq!(etag, Some(format!("\"{new_tag}\"")));
    // The version the first write replaced is stale at the primary too.
    let before = std::fs::read(s.registry()).unwrap();
    let (status, _, body) = patch(&format!("\"{tag}\""), "lost");
    assert_eq!(status, 412, "{body}");
    assert!(std::fs::read(s.registry()).unwrap() == before);
    assert_eq!(s.ok(&["show", &target])["key"]["description"], "first");
}
