//! Optimistic concurrency: every key and identity has an entity tag, a read
//! gives it (`entity_tag`, and the API's `ETag`), and a change that names
//! a version (`If-Match`, `--if-match`) is made on that version or not at
//! all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Sandbox, Server, http};

/// An API call with `key` as the bearer and, if given, an `If-Match`:
/// (status, ETag, body).
fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let url = server.url(path);
    let bearer = format!("Bearer {key}");
    let agent = http();
    let mut request = match method {
        "GET" => agent.get(&url).header("authorization", &bearer).call(),
        "DELETE" => {
            let mut request = agent.delete(&url).header("authorization", &bearer);
            if let Some(tag) = if_match {
                request = request.header("if-match", tag);
            }
            request.call()
        }
        _ => {
            let mut request = match method {
                "PATCH" => agent.patch(&url),
                _ => agent.post(&url),
            }
            .header("authorization", &bearer);
            if let Some(tag) = if_match {
                request = request.header("if-match", tag);
            }
            request.send_json(body.unwrap_or(json!({})))
        }
    }
    .expect("request");
    let status = request.status().as_u16();
    let etag = request
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let text = request.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[test]
fn a_change_on_a_version_that_is_not_the_one_standing_writes_nothing() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (target, _) = s.create(&["--as", "user:alice", "--name", "target"]);
    let (other, _) = s.create(&["--as", "user:alice", "--name", "other"]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "bob"]);
    let server = s.serve(&[]);
    let path = format!("/v1/keys/{target}");

    let (status, etag, read) = call(&server, "GET", &path, &alice, None, None);
    assert_eq!(status, 200);
    let tag = read["key"]["entity_tag"].as_str().unwrap().to_string();
    assert_eq!(etag.as_deref(), Some(format!("\"{tag}\"").as_str()));
    let (_, _, other_read) = call(
        &server,
        "GET",
        &format!("/v1/keys/{other}"),
        &alice,
        None,
        None,
    );
    let other_tag = other_read["key"]["entity_tag"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(tag, other_tag);

    // The version read: the change is made, and answered with the new tag.
    let quoted = format!("\"{tag}\"");
    let (status, etag, changed) = call(
        &server,
        "PATCH",
        &path,
        &alice,
        Some(&quoted),
        Some(json!({ "description": "first" })),
    );
    assert_eq!(status, 200, "{changed}");
    let new_tag = changed["key"]["entity_tag"].as_str().unwrap().to_string();
    assert_ne!(new_tag, tag);
    assert_eq!(etag.as_deref(), Some(format!("\"{new_tag}\"").as_str()));

    // Stale, forged, weak or another key's: refused with 412, nothing
    // written, whatever the change.
    let registry = std::fs::read(s.registry()).unwrap();
    let weak = format!("W/\"{new_tag}\"");
    for given in [
        quoted.as_str(),
        other_tag.as_str(),
        "000000000000000000000000",
        weak.as_str(),
    ] {
        for (method, route, body) in [
            (
                "PATCH",
                path.clone(),
                Some(json!({ "description": "lost" })),
            ),
            ("POST", format!("{path}/lock"), None),
            ("POST", format!("{path}/rotate"), None),
            ("DELETE", path.clone(), None),
        ] {
            let (status, _, answer) = call(&server, method, &route, &alice, Some(given), body);
            assert_eq!(status, 412, "{method} {route} If-Match {given}: {answer}");
            assert_eq!(answer["error"]["kind"], "precondition_failed", "{answer}");
            assert!(
                answer.get("key").is_none(),
                "no secret for a refused rotation"
            );
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(&new_tag) && message.contains("Nothing was written"));
        }
    }
    assert!(
        std::fs::read(s.registry()).unwrap() == registry,
        "a refused change wrote"
    );

    // An If-Match that does not read is a 400; nothing is written either.
    for bad in ["a b", "\"unterminated", ""] {
        let (status, _, answer) = call(
            &server,
            "PATCH",
            &path,
            &alice,
            Some(bad),
            Some(json!({ "description": "lost" })),
        );
        assert_eq!(status, 400, "If-Match {bad:?}: {answer}");
    }
    // Someone else, even with the right tag, meets the ownership rule
    // first, and is told nothing of the key's version.
    let (status, _, answer) = call(
        &server,
        "PATCH",
        &path,
        &bob,
        Some(&new_tag),
        Some(json!({ "description": "bob was here" })),
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["kind"], "refused");
    assert!(!answer.to_string().contains(&new_tag), "{answer}");
    assert!(std::fs::read(s.registry()).unwrap() == registry);

    // `*` is any version; no If-Match at all is as before.
    let (status, _, _) = call(
        &server,
        "PATCH",
        &path,
        &alice,
        Some("*"),
        Some(json!({ "description": "second" })),
    );
    assert_eq!(status, 200);
    let (status, _, answer) = call(
        &server,
        "PATCH",
        &path,
        &alice,
        None,
        Some(json!({ "description": "third" })),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["key"]["description"], "third");
    // A bare tag, as IBM's clients send entity_tag, is read too.
    let tag = answer["key"]["entity_tag"].as_str().unwrap().to_string();
    let (status, _, deleted) = call(&server, "DELETE", &path, &alice, Some(&tag), None);
    assert_eq!(status, 200, "{deleted}");
    let (status, _, _) = call(&server, "DELETE", &path, &alice, Some("*"), None);
    assert_eq!(status, 404);
}

#[test]
fn two_writers_racing_on_one_key_for_ten_seconds_lose_no_update() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (target, _) = s.create(&["--as", "user:alice", "--name", "target"]);
    let server = s.serve(&[]);
    let path = format!("/v1/keys/{target}");
    let (_, _, first) = call(&server, "GET", &path, &alice, None, None);
    let first_tag = first["key"]["entity_tag"].as_str().unwrap().to_string();

    // Each writer reads the key and changes the version it read, again and
    // again; it keeps what it was answered.
    let writes: Vec<Vec<(String, String, String)>> = std::thread::scope(|scope| {
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|writer| {
                let (server, alice, path) = (&server, &alice, &path);
                scope.spawn(move || {
                    let mut won = Vec::new();
                    let started = Instant::now();
                    let mut turn = 0;
                    while started.elapsed() < Duration::from_secs(10) {
                        turn += 1;
                        let (_, _, read) = call(server, "GET", path, alice, None, None);
                        let read_tag = read["key"]["entity_tag"].as_str().unwrap().to_string();
                        let description = format!("{writer}-{turn}");
                        let (status, _, answer) = call(
                            server,
                            "PATCH",
                            path,
                            alice,
                            Some(&format!("\"{read_tag}\"")),
                            Some(json!({ "description": description })),
                        );
                        match status {
                            200 => won.push((
                                read_tag,
                                answer["key"]["entity_tag"].as_str().unwrap().to_string(),
                                description,
                            )),
                            412 => {}
                            other => panic!("{other}: {answer}"),
                        }
                    }
                    won
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    // Every write that was answered changed the version the one before it
    // made: one chain from the first version to the last, no two writes on
    // one version (a lost update), and the last is what stands.
    let all: Vec<&(String, String, String)> = writes.iter().flatten().collect();
    assert!(all.len() > 10, "only {} writes landed", all.len());
    let by_base: BTreeMap<&str, &(String, String, String)> =
        all.iter().map(|write| (write.0.as_str(), *write)).collect();
    assert_eq!(
        by_base.len(),
        all.len(),
        "two writes were made on one version"
    );
    let mut at = first_tag.as_str();
    let mut seen = BTreeSet::new();
    let mut last_description = None;
    while let Some((_, next, description)) = by_base.get(at).copied() {
        assert!(seen.insert(next.as_str()), "the chain loops at {next}");
        last_description = Some(description.as_str());
        at = next;
    }
    assert_eq!(
        seen.len(),
        all.len(),
        "some answered writes are not in the chain"
    );
    let (_, _, last) = call(&server, "GET", &path, &alice, None, None);
    assert_eq!(last["key"]["entity_tag"], at);
    assert_eq!(last["key"]["description"].as_str(), last_description);
}

#[test]
fn the_cli_shows_tags_and_refuses_a_change_on_a_stale_one() {
    let s = Sandbox::new().with_people();
    let (id, _) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let tag = s.ok(&["show", &id])["key"]["entity_tag"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tag.len(), 24);
    let changed = s.ok(&[
        "update",
        &id,
        "--as",
        "user:alice",
        "--description",
        "mine",
        "--if-match",
        &tag,
    ]);
    let new_tag = changed["key"]["entity_tag"].as_str().unwrap().to_string();
    assert_ne!(new_tag, tag);
    for args in [
        vec!["update", &id, "--as", "user:alice", "--name", "lost"],
        vec!["disable", &id, "--as", "user:alice"],
        vec!["rotate", &id, "--as", "user:alice"],
        vec!["delete", &id, "--as", "user:alice"],
    ] {
        let mut args = args.clone();
        args.extend(["--if-match", &tag]);
        let refused = s.refused(&args);
        assert!(refused.stderr.contains("stale") && refused.stderr.contains(&new_tag));
        assert!(
            !refused.stdout.contains("kh_"),
            "no secret: {}",
            refused.stdout
        );
    }
    let bad = s.run(&["disable", &id, "--as", "user:alice", "--if-match", "a b"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    s.ok(&["disable", &id, "--as", "user:alice", "--if-match", "*"]);

    // Identities too.
    let identities = s.ok(&["identity", "list"]);
    let alice = identities["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["iam_id"] == "user:alice")
        .unwrap()
        .clone();
    let alice_tag = alice["entity_tag"].as_str().unwrap().to_string();
    s.ok(&[
        "identity",
        "update",
        "user:alice",
        "--add-scope",
        "admin",
        "--if-match",
        &alice_tag,
    ]);
    let stale = s.refused(&[
        "identity",
        "update",
        "user:alice",
        "--remove-scope",
        "read",
        "--if-match",
        &alice_tag,
    ]);
    assert!(
        stale.stderr.contains("identity user:alice"),
        "{}",
        stale.stderr
    );
    s.refused(&["identity", "remove", "user:alice", "--if-match", &alice_tag]);
}

#[test]
fn a_registry_that_requires_if_match_refuses_an_api_change_without_it() {
    let s = Sandbox::bare();
    s.ok(&["init", "--require-if-match"]);
    let s = s.with_people();
    assert!(s.registry_text().contains("require_if_match = true"));
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (target, _) = s.create(&["--as", "user:alice", "--name", "target"]);
    let server = s.serve(&[]);
    let path = format!("/v1/keys/{target}");
    let (_, _, me) = call(&server, "GET", "/v1/me", &alice, None, None);
    assert_eq!(me["require_if_match"], true, "{me}");

    let before = std::fs::read(s.registry()).unwrap();
    for (method, route) in [
        ("PATCH", path.clone()),
        ("POST", format!("{path}/disable")),
        ("POST", format!("{path}/rotate")),
        ("DELETE", path.clone()),
    ] {
        let (status, _, answer) = call(&server, method, &route, &alice, None, Some(json!({})));
        assert_eq!(status, 428, "{method} {route}: {answer}");
        assert_eq!(answer["error"]["kind"], "precondition_required");
        assert!(answer.get("key").is_none(), "no secret without If-Match");
    }
    assert!(std::fs::read(s.registry()).unwrap() == before);

    // With it, the change is made; creating a key names no version and
    // needs none; the CLI, the registry's owner, is not held to it.
    let (_, _, read) = call(&server, "GET", &path, &alice, None, None);
    let tag = read["key"]["entity_tag"].as_str().unwrap().to_string();
    let (status, _, _) = call(
        &server,
        "POST",
        &format!("{path}/disable"),
        &alice,
        Some(&tag),
        None,
    );
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &server,
        "POST",
        "/v1/keys",
        &alice,
        None,
        Some(json!({ "name": "new" })),
    );
    assert_eq!(status, 201);
    s.ok(&["enable", &target, "--as", "user:alice"]);
}
