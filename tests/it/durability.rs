//! Concurrent writers lose nothing, and a writer killed at any
//! moment leaves a registry that parses and holds exactly the writes that
//! reported success (plus, at most, the one write in flight, which may or
//! may not have been committed when the process died).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{KEYHOST, Sandbox, http};
use serde_json::{Value, json};

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn keyhost(s: &Sandbox, args: &[&str]) -> (i32, Value) {
    let output = Command::new(KEYHOST)
        .args(args)
        .arg("--json")
        .env("KEYHOST_REGISTRY", s.registry())
        .env("KEYHOST_CACHE_DIR", s.cache_dir())
        .output()
        .unwrap();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), value)
}

/// The registry's keys: id -> (name, disabled).
fn registry_keys(s: &Sandbox) -> BTreeMap<String, (String, bool)> {
    let (code, listed) = keyhost(s, &["list"]);
    assert_eq!(code, 0, "the registry must always parse");
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let id = k["id"].as_str().unwrap().to_string();
            (
                id,
                (
                    k["name"].as_str().unwrap().to_string(),
                    k["disabled"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

/// What one writer believes it has: id -> (secret, disabled).
type Model = BTreeMap<String, (String, bool)>;

/// 100 mutations by `user`, mixing create, rotate, disable and delete, with
/// some refused attempts on purpose; returns the model of what succeeded.
/// The keys a writer kept, its refused attempts, and the secrets of the
/// keys it deleted.
fn cli_writer(s: &Sandbox, user: &str, intruder: &str, seed: u64) -> (Model, usize, Vec<String>) {
    let mut random = Lcg(seed);
    let mut model = Model::new();
    let mut refused = 0;
    let mut deleted = Vec::new();
    for step in 0..100 {
        let pick = |model: &Model, r: &mut Lcg| {
            model
                .keys()
                .nth(r.next(model.len() as u64) as usize)
                .cloned()
        };
        let op = if model.is_empty() { 0 } else { random.next(5) };
        match op {
            0 | 1 => {
                let (code, out) =
                    keyhost(s, &["create", "--as", user, "--name", &format!("s{step}")]);
                assert_eq!(code, 0, "{out}");
                model.insert(
                    out["id"].as_str().unwrap().into(),
                    (out["key"].as_str().unwrap().into(), false),
                );
            }
            2 => {
                let id = pick(&model, &mut random).unwrap();
                let (code, out) = keyhost(s, &["rotate", &id, "--as", user]);
                assert_eq!(code, 0, "{out}");
                model.get_mut(&id).unwrap().0 = out["key"].as_str().unwrap().into();
            }
            3 => {
                let id = pick(&model, &mut random).unwrap();
                // Every other time an intruder tries first, and must fail.
                if step % 2 == 0 {
                    let (code, _) = keyhost(s, &["disable", &id, "--as", intruder]);
                    assert_eq!(code, 1);
                    refused += 1;
                }
                let (code, out) = keyhost(s, &["disable", &id, "--as", user]);
                assert_eq!(code, 0, "{out}");
                model.get_mut(&id).unwrap().1 = true;
            }
            _ => {
                let id = pick(&model, &mut random).unwrap();
                if step % 2 == 0 {
                    let (code, _) = keyhost(s, &["delete", &id, "--as", intruder]);
                    assert_eq!(code, 1);
                    refused += 1;
                }
                let (code, out) = keyhost(s, &["delete", &id, "--as", user]);
                assert_eq!(code, 0, "{out}");
                deleted.extend(model.remove(&id).map(|(secret, _)| secret));
            }
        }
    }
    (model, refused, deleted)
}

#[test]
fn concurrent_cli_writers_and_the_management_api_lose_nothing() {
    concurrent_writers_lose_nothing(&[]);
}

/// The same, with every write of keys going to the changes file (which
/// fills, and is folded in, several times over).
#[test]
fn concurrent_writers_to_the_changes_file_lose_nothing() {
    concurrent_writers_lose_nothing(&["--changes-from-keys", "0"]);
}

/// Eight CLI writers and one through serve's management API, on a
/// registry made by `init` with `init_args`.
fn concurrent_writers_lose_nothing(init_args: &[&str]) {
    let s = Sandbox::bare();
    let mut init = vec!["init", "--max-keys-per-identity", "1000"];
    init.extend_from_slice(init_args);
    s.ok(&init);
    for n in 0..9 {
        s.ok(&["identity", "add", &format!("user:w{n}")]);
    }
    let (_, api_key) = s.create(&["--as", "user:w8", "--name", "api"]);
    let server = s.serve(&[]);
    let s = std::sync::Arc::new(s);

    let writers: Vec<_> = (0..8)
        .map(|n| {
            let s = s.clone();
            std::thread::spawn(move || {
                cli_writer(
                    &s,
                    &format!("user:w{n}"),
                    &format!("user:w{}", (n + 1) % 8),
                    n as u64 + 1,
                )
            })
        })
        .collect();
    // Meanwhile user:w8 writes through serve's management API.
    let mut api_model = Model::new();
    let mut deleted = Vec::new();
    for step in 0..60 {
        let mut response = http()
            .post(&server.url("/v1/keys"))
            .header("authorization", &format!("Bearer {api_key}"))
            .send_json(json!({ "name": format!("api{step}") }))
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        let id = body["id"].as_str().unwrap().to_string();
        if step % 3 == 0 {
            let response = http()
                .delete(&server.url(&format!("/v1/keys/{id}")))
                .header("authorization", &format!("Bearer {api_key}"))
                .call()
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            deleted.push(body["key"].as_str().unwrap().to_string());
        } else {
            api_model.insert(id, (body["key"].as_str().unwrap().into(), false));
        }
    }
    let mut expected = Model::new();
    let mut refused = 0;
    for writer in writers {
        let (model, r, gone) = writer.join().unwrap();
        refused += r;
        expected.extend(model);
        deleted.extend(gone);
    }
    expected.extend(api_model);

    let actual = registry_keys(&s);
    let mut actual_ids: BTreeSet<&String> = actual.keys().collect();
    actual_ids.retain(|id| actual[*id].0 != "api");
    let expected_ids: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(
        actual_ids, expected_ids,
        "the registry holds exactly the successful writes"
    );
    for (id, (secret, disabled)) in &expected {
        assert_eq!(actual[id].1, *disabled, "{id}: disabled flag");
        let expect = if *disabled { "disabled" } else { "allow" };
        assert_eq!(s.decide(secret, &[]), expect, "{id}: the latest secret");
    }
    assert!(refused > 0, "refused attempts were made and left no trace");
    // Serve, which wrote some changes and read the others, ends with the
    // registry as the file holds it (its watcher looks every 200 ms): the
    // keys kept answer as they are, and every deleted key is unknown.
    let status_of = |secret: &str| {
        http()
            .get(&server.url("/auth"))
            .header("x-api-key", secret)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert!(!deleted.is_empty());
    let serve_agrees = || {
        expected
            .values()
            .all(|(secret, disabled)| status_of(secret) == if *disabled { 403 } else { 200 })
            && deleted.iter().all(|secret| status_of(secret) == 401)
    };
    let since = std::time::Instant::now();
    while !serve_agrees() {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(2),
            "serve does not answer as the registry says"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!(
        "concurrent writers: {} keys kept, {} refused attempts, 0 lost",
        expected.len(),
        refused
    );
}

#[test]
fn writers_killed_at_random_moments_leave_a_sound_registry() {
    killed_writers_leave_a_sound_registry(&[]);
}

/// The same, writing to the changes file, which each write of keys
/// replaces (a durable rename, as the registry file's).
#[test]
fn writers_to_the_changes_file_killed_at_random_moments_leave_a_sound_registry() {
    killed_writers_leave_a_sound_registry(&["--changes-from-keys", "0"]);
}

fn killed_writers_leave_a_sound_registry(init_args: &[&str]) {
    let s = Sandbox::bare();
    let mut init = vec!["init", "--max-keys-per-identity", "1000"];
    init.extend_from_slice(init_args);
    s.ok(&init);
    s.ok(&["identity", "add", "user:crash"]);
    let mut random = Lcg(42);
    let mut reported = BTreeSet::new();
    let mut in_flight_committed = 0;
    let mut killed = 0;
    let rounds = 200;
    for round in 0..rounds {
        let name = format!("r{round}");
        let mut child = Command::new(KEYHOST)
            .args(["create", "--as", "user:crash", "--name", &name, "--json"])
            .env("KEYHOST_REGISTRY", s.registry())
            .env("KEYHOST_CACHE_DIR", s.cache_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random.next(12_000)));
        let was_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let succeeded = output.status.success()
            && serde_json::from_slice::<Value>(&output.stdout).is_ok_and(|v| v["id"].is_string());
        if was_running && !succeeded {
            killed += 1;
        }
        if succeeded {
            reported.insert(name.clone());
        }
        let names: BTreeSet<String> = registry_keys(&s)
            .into_values()
            .map(|(name, _)| name)
            .collect();
        assert!(
            reported.is_subset(&names),
            "round {round}: a reported write is missing"
        );
        let unreported: Vec<&String> = names.difference(&reported).collect();
        // Only this round's write can be present unreported: it may have been
        // committed just before the kill.
        assert!(
            unreported.iter().all(|n| **n == name),
            "round {round}: unexpected writes {unreported:?}"
        );
        if !unreported.is_empty() {
            in_flight_committed += 1;
            reported.insert(name);
        }
    }
    assert!(
        killed > 20,
        "only {killed} writers were killed mid-run; the test did not test much"
    );
    if !init_args.is_empty() {
        let changes = s.dir.path().join("keys.toml.changes.toml");
        assert!(
            changes.exists(),
            "the writes did not go to the changes file"
        );
    }
    // The next write clears what killed writers left behind, beside the
    // registry and beside its snapshot in the cache (each write keeps one),
    // and the snapshot it keeps is the registry it wrote, whole.
    let written = s.ok(&["identity", "add", "user:after"]);
    for folder in [s.dir.path().to_path_buf(), s.cache_dir().join("registries")] {
        let strays: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(strays.is_empty(), "stray temporary files: {strays:?}");
    }
    let snapshots: Vec<_> = std::fs::read_dir(s.cache_dir().join("registries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let inspected = s.ok(&["snapshot", "inspect", snapshots[0].to_str().unwrap()]);
    assert_eq!(inspected["sound"], true);
    assert_eq!(inspected["revision"], written["revision"]);
    eprintln!(
        "kill rounds: {rounds}, killed mid-run: {killed}, committed before the kill: {in_flight_committed}"
    );
}
