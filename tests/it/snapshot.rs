//! The registry's snapshot written to a file (`keyhost snapshot
//! -o`) and inspected (`keyhost snapshot inspect`); the snapshot in the
//! cache checked whole and made again when damaged, never trusted; hand
//! edits of the TOML seen by `check` and by serve within a second; a
//! change serve writes itself in force at once, and not read again; serve
//! reading the snapshot, never a damaged one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, Server, http};

/// The registry's snapshot in the sandbox's cache.
fn cached_snapshot(s: &Sandbox) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(s.cache_dir().join("registries"))
        .expect("check keeps a snapshot in the cache folder")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// `keyhost snapshot inspect FILE --json`: the report and the exit code.
fn inspect(s: &Sandbox, file: &Path) -> (serde_json::Value, i32) {
    let run = s.run(&["snapshot", "inspect", file.to_str().unwrap(), "--json"]);
    (run.json(), run.code)
}

/// The registry's `revision`, as the file says it.
fn revision(s: &Sandbox) -> u64 {
    s.registry_text()
        .lines()
        .find_map(|line| line.strip_prefix("revision = "))
        .expect("a revision line")
        .parse()
        .unwrap()
}

/// The bytes of `file`, and where the first `from` in them starts.
fn find_in(file: &Path, from: &[u8]) -> (Vec<u8>, usize) {
    let bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|window| window == from)
        .unwrap_or_else(|| panic!("{} holds no {:?}", file.display(), from));
    (bytes, at)
}

/// Replaces the first `from` in `file` with `to`, of the same length.
fn rewrite(file: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let (mut bytes, at) = find_in(file, from);
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_snapshot_file_says_what_it_holds_holds_no_secret_and_shows_any_damage() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "ci"]);
    let out = s.dir.path().join("out").join("registry.snapshot");
    let written = s.ok(&["snapshot", "-o", out.to_str().unwrap()]);
    assert_eq!(written["revision"], revision(&s));
    assert_eq!(written["keys"], 2);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds the keys' hashes");
    let bytes = std::fs::read(&out).unwrap();
    for secret in [&alice, &bob] {
        let tail = &secret.as_bytes()[secret.len() - 16..];
        assert!(
            !bytes.windows(tail.len()).any(|w| w == tail),
            "a secret is in the snapshot"
        );
    }

    let (report, code) = inspect(&s, &out);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["sound"], true);
    assert_eq!(report["checksum"], "ok");
    assert_eq!(report["keys"], 2);
    assert_eq!(report["revision"], revision(&s));

    // One bit changed anywhere: damaged, exit 1, and the figures still shown.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let damaged = s.dir.path().join("flipped.snapshot");
    std::fs::write(&damaged, &flipped).unwrap();
    let (report, code) = inspect(&s, &damaged);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["sound"], false);
    assert!(
        report["checksum"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{report}"
    );
    assert_eq!(report["keys"], 2);

    // Cut short, or not a snapshot at all: damaged, with the reason.
    let cut = s.dir.path().join("cut.snapshot");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    let (report, code) = inspect(&s, &cut);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["problem"].as_str().unwrap().contains("truncated"),
        "{report}"
    );
    let (report, code) = inspect(&s, &s.registry());
    assert_eq!(code, 1, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("not a keyhost snapshot"),
        "{report}"
    );
    // Never over the registry, or a file beside it.
    let before = std::fs::read(s.registry()).unwrap();
    let lock = format!("{}.lock", s.registry().display());
    for target in [s.registry().to_str().unwrap(), lock.as_str()] {
        let run = s.run(&["snapshot", "-o", target]);
        assert_eq!(run.code, 2, "{target}: {}", run.stderr);
        assert!(run.stderr.contains("choose another path"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read(s.registry()).unwrap(), before);
    // No such file is an error, not a verdict on a snapshot.
    let run = s.run(&["snapshot", "inspect", "no-such.snapshot"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no-such.snapshot"), "{}", run.stderr);
}

#[test]
fn a_write_keeps_the_snapshot_of_what_it_wrote() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    // No check has run: the write made it, from the registry it wrote.
    let cached = cached_snapshot(&s);
    let (report, code) = inspect(&s, &cached);
    assert_eq!(
        (code, &report["sound"]),
        (0, &serde_json::Value::Bool(true))
    );
    assert_eq!(report["revision"], revision(&s));
    assert_eq!(report["keys"], 1);
    let people = s.ok(&["identity", "list"]);
    let people = people["identities"].as_array().expect("identities").len();
    assert_eq!(report["identities"], people as u64);
    s.ok(&["disable", &id, "--as", "user:alice"]);
    assert_eq!(inspect(&s, &cached).0["revision"], revision(&s));
    assert_eq!(s.decide(&key, &[]), "disabled");
}

#[test]
fn a_damaged_snapshot_in_the_cache_is_made_again_never_trusted() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    assert_eq!(s.decide(&key, &[]), "allow");
    let cached = cached_snapshot(&s);

    // A changed byte that, read as it lies, would turn the answer: the
    // key's record would say it is disabled.
    rewrite(&cached, b"\"disabled\":false", b"\"disabled\":true ");
    assert_eq!(s.decide(&key, &[]), "allow");
    assert_eq!(inspect(&s, &cached).0["sound"], true, "made again");

    // Cut short: made again too.
    let bytes = std::fs::read(&cached).unwrap();
    std::fs::write(&cached, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(s.decide(&key, &[]), "allow");
    assert_eq!(inspect(&s, &cached).0["sound"], true, "made again");

    // What goes to a file (and to a gate, a filter) from a damaged cache
    // is made again too. (Damage the cache's note of its last whole check
    // does not show is the unit tests' in registry/compact.rs.)
    rewrite(&cached, b"\"disabled\":false", b"\"disabled\":true ");
    let out = s.dir.path().join("registry.snapshot");
    s.ok(&["snapshot", "-o", out.to_str().unwrap()]);
    let (report, code) = inspect(&s, &out);
    assert_eq!(
        (code, &report["sound"]),
        (0, &serde_json::Value::Bool(true))
    );
    assert_eq!(s.decide(&key, &[]), "allow");
}

#[test]
fn serve_never_answers_from_a_damaged_snapshot_in_the_cache() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (id, disabled) = s.create(&["--as", "user:alice", "--name", "old"]);
    s.ok(&["disable", &id, "--as", "user:alice"]);
    assert_eq!(s.decide(&key, &[]), "allow");
    let cached = cached_snapshot(&s);

    // serve reads the snapshot in the cache where it lies. A byte changed
    // there that, trusted, would turn the answer: the first key's record
    // would say it is disabled.
    rewrite(&cached, b"\"disabled\":false", b"\"disabled\":true ");
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&key), 200, "made again from the TOML");
    assert_eq!(server.auth_status(&disabled), 403);
    assert_eq!(inspect(&s, &cached).0["sound"], true, "and kept");
    drop(server);

    // Cut short: made again too.
    let bytes = std::fs::read(&cached).unwrap();
    std::fs::write(&cached, &bytes[..bytes.len() / 2]).unwrap();
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&key), 200);
    assert_eq!(server.auth_status(&disabled), 403);
    assert_eq!(inspect(&s, &cached).0["sound"], true, "made again");
}

/// Writes `to` over the first `from` in `file` where it lies: no
/// truncation, as a process holding the file mapped would see it.
fn rewrite_in_place(file: &Path, from: &[u8], to: &[u8]) {
    use std::os::unix::fs::FileExt;
    assert_eq!(from.len(), to.len());
    let (_, at) = find_in(file, from);
    let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    handle.write_all_at(to, at as u64).unwrap();
}

#[test]
fn a_snapshot_in_force_changed_on_disk_is_made_again() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&key), 200);
    let cached = cached_snapshot(&s);
    // serve reads the snapshot mapped, so a change made to its file in
    // place shows at once: the key's record would say it is disabled. serve
    // sees its file changed, and makes the snapshot again from the TOML.
    rewrite_in_place(&cached, b"\"disabled\":false", b"\"disabled\":true ");
    let since = Instant::now();
    loop {
        if server.auth_status(&key) == 200 && inspect(&s, &cached).0["sound"] == true {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "the changed snapshot is still in force"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.auth_status(&key), 200);
}

#[test]
fn serve_takes_the_snapshot_a_cli_write_kept_and_makes_none_of_its_own() {
    use std::os::unix::fs::MetadataExt;
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&key), 200);
    // The CLI's write renames a new snapshot over the one serve has mapped:
    // that is a change to take, not damage to repair.
    let (_, added) = s.create(&["--as", "user:alice", "--name", "later"]);
    let cached = cached_snapshot(&s);
    let kept = std::fs::metadata(&cached).unwrap().ino();
    server.auth_becomes(&added, 200, "a key the CLI created");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        std::fs::metadata(&cached).unwrap().ino(),
        kept,
        "serve made the snapshot again rather than take the CLI's"
    );
    let log = std::fs::read_to_string(&server.stderr_path).unwrap();
    assert!(!log.contains("damaged"), "{log}");
    assert_eq!(server.auth_status(&key), 200);
}

/// serve's /healthz answer.
fn health(server: &Server) -> serde_json::Value {
    let mut response = http().get(&server.url("/healthz")).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn serve_with_a_cache_folder_others_may_write_holds_its_snapshot_in_memory() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    assert_eq!(health(&server)["snapshot"], "mapped");
    drop(server);

    // A folder its group may write: what lies in it could name any key
    // valid, so serve reads none of it and keeps nothing there.
    let folder = s.cache_dir().join("registries");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o770)).unwrap();
    let snapshot = cached_snapshot(&s);
    std::fs::remove_file(&snapshot).unwrap();
    let server = s.serve(&[]);
    let health = health(&server);
    assert_eq!(
        (&health["status"], &health["snapshot"]),
        (&"ok".into(), &"in memory".into())
    );
    assert_eq!(server.auth_status(&key), 200);
    assert!(
        !snapshot.exists(),
        "a snapshot was kept in a folder others may write"
    );
}

#[test]
fn hand_edits_of_the_registry_reach_check_and_serve_within_a_second() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    server.auth_becomes(&key, 200, "before any edit");

    // A key table written by hand (here, taken from another registry).
    let other = Sandbox::new().with_people();
    let (_, added) = other.create(&["--as", "user:bob", "--name", "by-hand"]);
    assert_eq!(s.decide(&added, &[]), "not_found");
    let text = other.registry_text();
    let table = &text[text.find("[[key]]").expect("a key table")..];
    let mut edited = s.registry_text();
    edited.push('\n');
    edited.push_str(table);
    std::fs::write(s.registry(), edited).unwrap();
    let since = Instant::now();
    server.auth_becomes(&added, 200, "a key table added by hand");
    assert_eq!(s.decide(&added, &[]), "allow");
    assert!(since.elapsed() < Duration::from_secs(1));

    // `disabled` changed by hand, in place.
    let text = s.registry_text();
    std::fs::write(
        s.registry(),
        text.replacen("disabled = false", "disabled = true", 1),
    )
    .unwrap();
    let since = Instant::now();
    server.auth_becomes(&key, 403, "a key disabled by hand");
    assert_eq!(s.decide(&key, &[]), "disabled");
    assert!(since.elapsed() < Duration::from_secs(1));
}

/// How many times serve has read the registry file again successfully.
fn registry_reloads(server: &Server) -> u64 {
    let mut response = http().get(&server.url("/metrics")).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(r#"keyhost_reloads_total{what="registry",result="ok"} "#)
        })
        .map_or(0, |count| count.trim().parse().unwrap())
}

#[test]
fn a_change_serve_writes_is_in_force_at_once_and_never_read_again() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let server = s.serve(&[]);
    let before = registry_reloads(&server);
    let mut made = Vec::new();
    for i in 0..5 {
        let mut response = http()
            .post(&server.url("/v1/keys"))
            .header("authorization", &format!("Bearer {alice}"))
            .send_json(
                serde_json::json!({ "name": format!("ci-{i}"), "for": "service-id:billing" }),
            )
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let created: serde_json::Value = response.body_mut().read_json().unwrap();
        let secret = created["key"].as_str().unwrap().to_string();
        let id = created["id"].as_str().unwrap().to_string();
        // In force for the very next request: no wait for the watcher.
        let status = http()
            .get(&server.url("/auth"))
            .header("x-api-key", &secret)
            .call()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200, "write {i}");
        made.push((id, secret));
    }
    // Well past the watcher's 200 ms: it found the files serve wrote in
    // force already, and read none of them.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        registry_reloads(&server),
        before,
        "serve read its own writes again"
    );

    // A change made elsewhere is still read.
    s.ok(&["disable", &made[0].0, "--as", "user:alice"]);
    server.auth_becomes(&made[0].1, 403, "a key disabled by the CLI");
    assert!(registry_reloads(&server) > before);
}

#[test]
fn management_writes_kept_failing_do_not_hold_back_a_change_made_elsewhere() {
    let s = Sandbox::new().with_people();
    let (alices_id, alices) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (_, bobs) = s.create(&["--as", "user:bob", "--name", "laptop"]);
    let server = s.serve(&[]);
    server.auth_becomes(&alices, 200, "before the writes");
    // Bob keeps asking to disable alice's key: every write is refused.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (url, bearer, stop) = (
                server.url(&format!("/v1/keys/{alices_id}/disable")),
                format!("Bearer {bobs}"),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http()
                        .post(&url)
                        .header("authorization", &bearer)
                        .send_empty()
                        .unwrap()
                        .status()
                        .as_u16();
                    assert_eq!(status, 403);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    s.ok(&["disable", &alices_id, "--as", "user:alice"]);
    // The watcher waits at most two of its ticks for writes in flight,
    // then reads the file: well within 2 s on a busy machine, however many
    // writes are in flight (held off for good, it never would be).
    server.auth_becomes_within(
        &alices,
        403,
        "a key alice disabled with the CLI",
        Duration::from_secs(2),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
}

#[test]
fn a_management_write_to_an_older_copy_of_the_registry_is_refused() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "admin"]);
    let (leaked_id, leaked) = s.create(&["--as", "user:alice", "--name", "leaked"]);
    let older = s.registry_text();
    s.ok(&["disable", &leaked_id, "--as", "user:alice"]);
    let server = s.serve(&[]);
    server.auth_becomes(&leaked, 403, "the disabled key");

    // An older copy, where the key is still enabled, is put in place.
    let copy = s.registry().with_extension("older");
    std::fs::write(&copy, &older).unwrap();
    std::fs::rename(&copy, s.registry()).unwrap();
    let mut response = http()
        .post(&server.url("/v1/keys"))
        .header("authorization", &format!("Bearer {alice}"))
        .send_json(serde_json::json!({ "name": "new", "for": "service-id:billing" }))
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("older copy"), "{body}");
    assert_eq!(s.registry_text(), older, "nothing was written");
    // Serve still refuses the key, and says why on /healthz.
    std::thread::sleep(Duration::from_millis(500));
    server.auth_becomes(&leaked, 403, "the key the older copy enables");
    let health = http()
        .get(&server.url("/healthz"))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(health, 503);
}

/// A registry of `keys` keys of alice's, written as a person could.
fn registry_of(s: &Sandbox, keys: usize) {
    // Keyhost writes an empty list of keys inline; tables follow instead.
    let mut text = s.registry_text().replace("\nkey = []\n", "\n");
    for i in 0..keys {
        text.push_str(&format!(
            "\n[[key]]\nid = \"kid_{i:020x}\"\nname = \"k{i}\"\nkind = \"user\"\nowner = \"user:alice\"\n\
             scopes = []\nallowed_ips = []\nhash = \"{i:064x}\"\ncreated_at = 2026-01-01T00:00:00Z\n\
             updated_at = 2026-01-01T00:00:00Z\nlocked = false\ndisabled = false\nleaked = false\n"
        ));
    }
    std::fs::write(s.registry(), text).unwrap();
}

#[test]
fn making_a_snapshot_of_more_than_100k_keys_says_so_in_the_log() {
    let log = [("KEYHOST_LOG", "info")];
    let small = Sandbox::new().with_people();
    registry_of(&small, 1_000);
    let out = small.dir.path().join("small.snapshot");
    let run = small.run_with(&["snapshot", "-o", out.to_str().unwrap()], "", &log);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("making the registry snapshot"),
        "{}",
        run.stderr
    );

    let large = Sandbox::new().with_people();
    registry_of(&large, 100_001);
    let out = large.dir.path().join("large.snapshot");
    let run = large.run_with(&["snapshot", "-o", out.to_str().unwrap()], "", &log);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("making the registry snapshot"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "a line when it starts and one when it ends: {}",
        run.stderr
    );
    assert!(lines[0].contains("keys=100001"), "{}", lines[0]);
    assert!(lines[1].contains("done"), "{}", lines[1]);
    // Not a terminal: no bar drawn into the log.
    assert!(!run.stderr.contains("=>"), "{}", run.stderr);
    let (report, code) = inspect(&large, &out);
    assert_eq!((code, report["keys"].as_u64()), (0, Some(100_001)));
}
