//! Writes that cost what they change. A registry of
//! `changes_from_keys` keys or more takes a write of keys alone in its
//! changes file (`PATH.changes.toml`), leaving the registry file as it is;
//! every reader (check, list, serve, the snapshot handed on) sees the
//! changes; a hand edit of either file is seen; any other write folds the
//! changes in; changes to another revision of the file are void.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, http};

/// A registry whose every write of keys alone goes to its changes file,
/// with alice, bob and alice's service ID.
fn sandbox() -> Sandbox {
    let s = Sandbox::bare();
    s.ok(&["init", "--changes-from-keys", "0"]);
    s.with_people()
}

fn changes_file(s: &Sandbox) -> PathBuf {
    s.dir.path().join("keys.toml.changes.toml")
}

fn changes_text(s: &Sandbox) -> String {
    std::fs::read_to_string(changes_file(s)).expect("a changes file")
}

fn names(s: &Sandbox) -> Vec<String> {
    let listed = s.ok(&["list"]);
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn key_writes_leave_the_registry_file_alone_and_every_reader_sees_them() {
    let s = sandbox();
    let file_before = s.registry_text();
    let (laptop, laptop_key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (_, billing_key) = s.create(&[
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        "--name",
        "billing",
    ]);
    let (phone, _) = s.create(&["--as", "user:bob", "--name", "phone"]);
    s.ok(&["disable", &phone, "--as", "user:bob"]);
    assert_eq!(
        s.registry_text(),
        file_before,
        "the registry file was rewritten"
    );
    let changes = changes_text(&s);
    for id in [&laptop, &phone] {
        assert!(changes.contains(id.as_str()), "{changes}");
    }
    for secret in [&laptop_key, &billing_key] {
        assert!(
            !changes.contains(secret.as_str()),
            "a secret in the changes file"
        );
    }

    // check, list and show read them; the revision counts every write.
    assert_eq!(s.decide(&laptop_key, &[]), "allow");
    assert_eq!(s.decide(&billing_key, &[]), "allow");
    assert_eq!(names(&s), ["laptop", "billing", "phone"]);
    let shown = s.ok(&["show", &phone]);
    assert_eq!(shown["key"]["disabled"], true);
    let revision = s.ok(&["list"])["revision"].as_u64().unwrap();

    // Serve reads them, and takes its own writes to the changes file.
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&laptop_key), 200);
    let answer = http()
        .post(&server.url(&format!("/v1/keys/{laptop}/disable")))
        .header("x-api-key", &laptop_key)
        .send_empty()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(server.auth_status(&laptop_key), 403);
    assert_eq!(s.decide(&laptop_key, &[]), "disabled");
    assert_eq!(s.registry_text(), file_before);
    assert!(s.ok(&["list"])["revision"].as_u64().unwrap() > revision);

    // A key rotated out and one deleted stop working everywhere.
    let rotated = s.ok(&["rotate", &laptop, "--as", "user:alice"]);
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(s.decide(&laptop_key, &[]), "not_found");
    s.ok(&["delete", &phone, "--as", "user:bob"]);
    server.auth_becomes(&laptop_key, 401, "a secret rotated out by the CLI");
    assert_eq!(names(&s), ["laptop", "billing"]);

    // A write that is not of keys alone folds the changes in.
    s.ok(&["identity", "add", "user:carol"]);
    assert!(!changes_file(&s).exists(), "the changes were not folded in");
    let file = s.registry_text();
    assert!(file.contains(&laptop) && !file.contains(&phone), "{file}");
    assert_eq!(names(&s), ["laptop", "billing"]);
    // Disabled by serve, then rotated (which keeps it disabled).
    assert_eq!(s.decide(&new_key, &[]), "disabled");
    assert_eq!(s.decide(&billing_key, &[]), "allow");
    drop(server);
}

#[test]
fn a_key_of_another_user_is_refused_and_a_refusal_writes_nothing() {
    let s = sandbox();
    let (laptop, _) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let changes = changes_text(&s);
    s.refused(&["delete", &laptop, "--as", "user:bob"]);
    s.refused(&["disable", &laptop, "--as", "user:bob"]);
    s.refused(&[
        "create",
        "--as",
        "user:bob",
        "--for",
        "service-id:billing",
        "--name",
        "x",
    ]);
    s.refused(&["create", "--as", "service-id:billing", "--name", "x"]);
    assert_eq!(
        changes_text(&s),
        changes,
        "a refused write changed the changes file"
    );
    // A key's scope beyond its identity's, and a second classic key, are
    // refused as they are in a registry written whole.
    s.refused(&[
        "create",
        "--as",
        "user:alice",
        "--name",
        "x",
        "--scope",
        "admin",
    ]);
    s.create(&[
        "--as",
        "user:alice",
        "--name",
        "c1",
        "--kind",
        "classic-infrastructure",
    ]);
    let run = s.refused(&[
        "create",
        "--as",
        "user:alice",
        "--name",
        "c2",
        "--kind",
        "classic-infrastructure",
    ]);
    assert!(run.stderr.contains("classic"), "{}", run.stderr);
}

#[test]
fn hand_edits_of_the_changes_file_reach_check_and_serve_within_a_second() {
    let s = sandbox();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    server.auth_becomes(&key, 200, "before any edit");
    let text = changes_text(&s);
    std::fs::write(
        changes_file(&s),
        text.replacen("disabled = false", "disabled = true", 1),
    )
    .unwrap();
    let since = Instant::now();
    server.auth_becomes(&key, 403, "a key disabled by hand in the changes file");
    assert_eq!(s.decide(&key, &[]), "disabled");
    assert!(since.elapsed() < Duration::from_secs(1));

    // A changes file that does not parse fails the check closed, with its
    // name and line; serve keeps what it had and says why.
    std::fs::write(changes_file(&s), text.replacen("name = ", "name = = ", 1)).unwrap();
    let run = s.run_with(&["check"], &format!("{key}\n"), &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("keys.toml.changes.toml"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line"), "{}", run.stderr);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server.auth_status(&key), 403);
    let health: serde_json::Value = http()
        .get(&server.url("/healthz"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert!(health.to_string().contains("changes.toml"), "{health}");
}

#[test]
fn a_hand_edit_of_the_registry_file_after_a_change_of_that_key_is_in_force() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (phone, _) = s.create(&["--as", "user:alice", "--name", "phone"]);
    // Folded in: both keys are in the registry file now.
    s.ok(&["identity", "add", "user:carol"]);
    s.ok(&["disable", &laptop, "--as", "user:alice"]);
    s.ok(&["update", &phone, "--as", "user:alice", "--name", "phone2"]);
    assert_eq!(s.decide(&key, &[]), "disabled");
    // The person edits the registry file's (older) laptop: their edit is
    // newer than the change, and wins; the phone's change still stands.
    let text = s.registry_text();
    std::fs::write(
        s.registry(),
        text.replacen("name = \"laptop\"", "name = \"by hand\"", 1),
    )
    .unwrap();
    assert_eq!(s.decide(&key, &[]), "allow");
    assert_eq!(names(&s), ["by hand", "phone2"]);
}

/// The registry file's revision, as it says.
fn file_revision(s: &Sandbox) -> u64 {
    s.registry_text()
        .lines()
        .find_map(|line| line.strip_prefix("revision = "))
        .expect("a revision line")
        .parse()
        .unwrap()
}

#[test]
fn changes_already_folded_into_the_registry_file_are_void() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    s.ok(&["disable", &laptop, "--as", "user:alice"]);
    let changes = changes_text(&s);
    // Folded in; then the changes file put back, as a writer stopped
    // between writing the folded registry file and removing them leaves it.
    s.ok(&["identity", "add", "user:carol"]);
    std::fs::write(changes_file(&s), &changes).unwrap();
    let listed = s.ok(&["list"]);
    assert_eq!(
        listed["revision"],
        file_revision(&s),
        "void changes were read"
    );
    assert_eq!(s.decide(&key, &[]), "disabled");
    let server = s.serve(&[]);
    assert_eq!(server.auth_status(&key), 403);
    // The next write of keys writes over them; the next other write
    // removes them.
    s.ok(&["enable", &laptop, "--as", "user:alice"]);
    assert!(!changes_text(&s).contains("disabled = true"));
    assert_eq!(s.decide(&key, &[]), "allow");
    s.ok(&["identity", "add", "user:dave"]);
    assert!(!changes_file(&s).exists());
}

#[test]
fn a_registry_file_replaced_under_its_changes_fails_closed_until_a_person_settles_it() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    let older = s.registry_text();
    s.ok(&["identity", "add", "user:carol"]);
    // Deleted in the changes file: a registry file that is not the one
    // those changes were made for must not bring the key back.
    s.ok(&["delete", &laptop, "--as", "user:alice"]);
    server.auth_becomes(&key, 401, "deleted");
    let current = s.registry_text();
    let bumped = current.replacen(
        &format!("revision = {}", file_revision(&s)),
        &format!("revision = {}", file_revision(&s) + 5),
        1,
    );
    for (what, text) in [("an older copy", older), ("a revision edited", bumped)] {
        std::fs::write(s.registry(), &text).unwrap();
        let run = s.run_with(&["check"], &format!("{key}\n"), &[]);
        assert_eq!(run.code, 2, "{what}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("changes are to revision"),
            "{what}: {}",
            run.stderr
        );
        let write = s.run(&["create", "--as", "user:alice", "--name", "x"]);
        assert_eq!(write.code, 2, "{what}: {}", write.stderr);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(server.auth_status(&key), 401, "{what}");
        let health = http().get(&server.url("/healthz")).call().unwrap();
        assert_eq!(health.status().as_u16(), 503, "{what}");
    }
    // The registry file they were made for, put back, settles it.
    std::fs::write(s.registry(), &current).unwrap();
    assert_eq!(s.decide(&key, &[]), "not_found");
    s.create(&["--as", "user:alice", "--name", "after"]);
}

#[test]
fn a_full_changes_file_is_folded_in_by_the_next_key_write() {
    let s = Sandbox::bare();
    s.ok(&[
        "init",
        "--changes-from-keys",
        "0",
        "--max-keys-per-identity",
        "1000",
    ]);
    s.ok(&["identity", "add", "user:alice"]);
    let file_before = s.registry_text();
    // The most a changes file holds (512), then one more.
    let mut last = String::new();
    for n in 0..513 {
        last = s
            .create(&["--as", "user:alice", "--name", &format!("k{n}")])
            .1;
        if n == 511 {
            assert_eq!(s.registry_text(), file_before, "folded before it was full");
        }
    }
    // The 513th found it full, folded the 512 into the registry file,
    // and went to a fresh changes file alone.
    let file = s.registry_text();
    assert_eq!(file.matches("[[key]]").count(), 512);
    assert!(!file.contains("\"k512\""));
    let changes = changes_text(&s);
    assert_eq!(changes.matches("[[key]]").count(), 1, "{changes}");
    assert!(changes.contains("\"k512\""), "{changes}");
    assert_eq!(s.decide(&last, &[]), "allow");
    let (_, next) = s.create(&["--as", "user:alice", "--name", "k513"]);
    assert_eq!(s.registry_text(), file);
    assert!(changes_text(&s).contains("k513"));
    assert_eq!(s.ok(&["list"])["keys"].as_array().unwrap().len(), 514);
    assert_eq!(s.decide(&next, &[]), "allow");
}

#[test]
fn a_registry_written_whole_takes_key_writes_in_its_changes_file_once_it_is_large() {
    let s = Sandbox::bare();
    s.ok(&["init", "--changes-from-keys", "3"]);
    s.ok(&["identity", "add", "user:alice"]);
    // Below the threshold, today's single file, rewritten whole.
    for n in 0..3 {
        s.create(&["--as", "user:alice", "--name", &format!("k{n}")]);
        assert!(!changes_file(&s).exists(), "a registry of {n} keys");
    }
    assert_eq!(s.registry_text().matches("[[key]]").count(), 3);
    // From it on, the file stays as it is and the changes file takes them.
    let file = s.registry_text();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k3"]);
    assert_eq!(s.registry_text(), file);
    assert!(changes_text(&s).contains("k3"));
    assert_eq!(s.decide(&key, &[]), "allow");
}

#[test]
fn the_snapshot_handed_on_holds_the_changes() {
    let s = sandbox();
    let (_, kept) = s.create(&["--as", "user:alice", "--name", "kept"]);
    let (gone, _) = s.create(&["--as", "user:alice", "--name", "gone"]);
    s.ok(&["identity", "add", "user:carol"]);
    s.ok(&["delete", &gone, "--as", "user:alice"]);
    let (_, added) = s.create(&["--as", "user:bob", "--name", "added"]);
    let out = s.dir.path().join("registry.snapshot");
    let written = s.ok(&["snapshot", "-o", out.to_str().unwrap()]);
    assert_eq!(written["keys"], 2);
    assert_eq!(written["revision"], s.ok(&["list"])["revision"]);
    let inspected = s.ok(&["snapshot", "inspect", out.to_str().unwrap()]);
    assert_eq!(inspected["sound"], true);
    // The gate's and filters' lookup finds the keys in force, not the one
    // deleted among the changes.
    let bytes = std::fs::read(&out).unwrap();
    let snapshot = keyhost_core::snapshot::Snapshot::open(bytes).unwrap();
    use keyhost_core::lookup::Lookup;
    for secret in [&kept, &added] {
        let hash = keyhost_core::key_format::hash(secret);
        assert!(snapshot.find(&hash).unwrap().is_some());
    }
    assert!(snapshot.find_by_id(&gone).unwrap().is_none());
}

#[test]
fn a_damaged_snapshot_of_the_changes_in_the_cache_is_made_again_never_trusted() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    s.ok(&["disable", &laptop, "--as", "user:alice"]);
    let kept: Vec<PathBuf> = std::fs::read_dir(s.cache_dir().join("registries"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "changes"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let original = std::fs::read(&kept[0]).unwrap();
    // The disabled flag of the key's record, flipped to enabled in the
    // snapshot (its checksum left as it was), then the file cut short.
    let text = String::from_utf8_lossy(&original);
    let at = text
        .find("\"disabled\":true")
        .expect("the record says disabled");
    let mut flipped = original.clone();
    flipped[at..at + 15].copy_from_slice(b"\"disabled\":fals");
    for damaged in [flipped, original[..original.len() - 7].to_vec()] {
        std::fs::write(&kept[0], &damaged).unwrap();
        assert_eq!(
            s.decide(&key, &[]),
            "disabled",
            "a damaged snapshot was read"
        );
        assert_ne!(std::fs::read(&kept[0]).unwrap(), damaged, "not made again");
    }
}

#[test]
fn the_largest_accepted_fields_round_trip_through_the_changes_file_and_a_control_character_there_is_refused()
 {
    let s = sandbox();
    let scopes: Vec<String> = (0..64)
        .map(|i| format!("{i:03}{}", "ж".repeat(125)))
        .collect();
    let mut add = vec!["identity", "add", "user:eve"];
    for scope in &scopes {
        add.extend(["--scope", scope]);
    }
    s.ok(&add);
    let file_before = s.registry_text();
    // Quotes, backslashes and a TOML table header inside a value stay text.
    let name = format!("\"\\[[key]]{}", "名".repeat(240));
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
    assert_eq!(
        s.registry_text(),
        file_before,
        "the registry file was rewritten"
    );
    let id = out["id"].as_str().unwrap();
    let key = out["key"].as_str().unwrap();
    assert!(changes_text(&s).contains(id));
    let shown = s.ok(&["show", id]);
    assert_eq!(shown["key"]["name"], name.as_str());
    assert_eq!(shown["key"]["description"], description.as_str());
    assert_eq!(shown["key"]["scopes"].as_array().unwrap().len(), 64);
    assert_eq!(s.decide(key, &["--scope", &scopes[63]]), "allow");
    let server = s.serve(&[]);
    server.auth_becomes(key, 200, "the key with the largest fields");
    drop(server);

    // Folded into the registry file, the fields are as they were.
    s.ok(&["identity", "add", "user:carol"]);
    assert!(!changes_file(&s).exists());
    let shown = s.ok(&["show", id]);
    assert_eq!(shown["key"]["name"], name.as_str());
    assert_eq!(shown["key"]["description"], description.as_str());

    // A name that would recolour a terminal, written by hand into the
    // changes file, is refused with the file's name and line.
    let (other, _) = s.create(&["--as", "user:eve", "--name", "plain"]);
    let text = changes_text(&s);
    let edited = text.replacen("name = \"plain\"", "name = \"a\\u001b[31mRED\\u0007\"", 1);
    assert_ne!(edited, text);
    std::fs::write(changes_file(&s), &edited).unwrap();
    for args in [vec!["show", other.as_str()], vec!["list"]] {
        let run = s.run(&args);
        assert_ne!(run.code, 0, "{args:?}");
        assert!(
            run.stderr.contains("changes.toml")
                && run.stderr.contains("line ")
                && run.stderr.contains("U+001B"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'));
    }
}

#[test]
fn a_management_write_to_the_changes_file_that_misses_its_deadline_never_commits() {
    let s = sandbox();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&["--request-timeout", "1s"]);
    let changes_before = changes_text(&s);
    let file_before = s.registry_text();
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
    let create = |name: &str| {
        http()
            .post(&server.url("/v1/keys"))
            .header("x-api-key", &key)
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(serde_json::json!({ "name": name }))
            .unwrap()
    };
    let started = Instant::now();
    let mut late = create("late");
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    lock.unlock().unwrap();
    assert_eq!(late.status().as_u16(), 503);
    let body = late.body_mut().read_to_string().unwrap();
    assert!(body.contains("nothing was written"), "{body}");
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        changes_text(&s),
        changes_before,
        "the timed-out create landed"
    );
    assert_eq!(s.registry_text(), file_before);
    assert_eq!(names(&s), ["laptop"]);

    let on_time = create("on time");
    assert_eq!(on_time.status().as_u16(), 201);
    assert_eq!(names(&s), ["laptop", "on time"]);
}

#[test]
fn a_reader_through_a_link_to_the_registry_sees_its_changes() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    s.ok(&["identity", "add", "user:carol"]);
    // Deleted in the changes file of the registry file itself.
    s.ok(&["delete", &laptop, "--as", "user:alice"]);
    assert!(changes_text(&s).contains(&laptop));
    let link = s.dir.path().join("link.toml");
    std::os::unix::fs::symlink(s.registry(), &link).unwrap();
    let through_link = [("KEYHOST_REGISTRY", link.to_str().unwrap())];
    let run = s.run_with(&["check", "--json"], &format!("{key}\n"), &through_link);
    assert!(
        run.stdout.contains("\"not_found\""),
        "a key deleted in the changes file answered through a link: {}{}",
        run.stdout,
        run.stderr
    );
    let listed = s.run_with(&["list", "--json"], "", &through_link);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(!listed.stdout.contains(&laptop), "{}", listed.stdout);
    let (_, kept) = s.create(&["--as", "user:alice", "--name", "kept"]);
    let run = s.run_with(&["check", "--json"], &format!("{kept}\n"), &through_link);
    assert!(
        run.stdout.contains("\"allow\""),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_version_1_registry_is_written_whole_as_version_2_before_any_key_write_goes_beside_it() {
    let s = sandbox();
    let version_line = |s: &Sandbox| {
        s.registry_text()
            .lines()
            .find(|line| line.starts_with("version = "))
            .map(str::to_string)
    };
    assert_eq!(version_line(&s).as_deref(), Some("version = 2"));
    // As a build that reads only version 1 wrote it: that build would not
    // see a changes file, so none is written beside a version 1 file.
    let text = s.registry_text().replacen("version = 2", "version = 1", 1);
    std::fs::write(s.registry(), &text).unwrap();
    assert_eq!(
        s.ok(&["identity", "list"])["identities"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (_, first) = s.create(&["--as", "user:alice", "--name", "first"]);
    assert!(
        !changes_file(&s).exists(),
        "a key write went beside a version 1 file"
    );
    assert_eq!(version_line(&s).as_deref(), Some("version = 2"));
    assert!(s.registry_text().contains("\"first\""));
    // From then on, key writes go to the changes file.
    let file = s.registry_text();
    let (_, second) = s.create(&["--as", "user:alice", "--name", "second"]);
    assert_eq!(s.registry_text(), file);
    assert!(changes_text(&s).contains("\"second\""));
    assert_eq!(s.decide(&first, &[]), "allow");
    assert_eq!(s.decide(&second, &[]), "allow");
    // A version this build does not know is refused, naming it.
    std::fs::write(s.registry(), file.replacen("version = 2", "version = 3", 1)).unwrap();
    let run = s.run_with(&["check"], &format!("{first}\n"), &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("unsupported registry version 3"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_revision_at_the_top_of_its_range_is_refused_not_wrapped() {
    let s = sandbox();
    let (laptop, key) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let text = changes_text(&s);
    let revision = text
        .lines()
        .find_map(|line| line.strip_prefix("revision = "))
        .expect("a revision line")
        .to_string();
    let edited = text.replacen(
        &format!("revision = {revision}"),
        &format!("revision = {}", u64::MAX),
        1,
    );
    std::fs::write(changes_file(&s), &edited).unwrap();
    let run = s.run(&["disable", &laptop, "--as", "user:alice"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("the largest there is"),
        "{}",
        run.stderr
    );
    assert_eq!(changes_text(&s), edited, "a refused write wrote");
    assert_eq!(s.decide(&key, &[]), "allow");
}
