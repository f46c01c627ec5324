//! Hostile policies and hostile input. A policy that misbehaves
//! fails closed and the host carries on; bad input is an error that leaves
//! the registry byte-identical; secrets never show up where they should not.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, http, policy};

const FAILING: [&str; 5] = ["trap", "loop", "grow", "recurse", "big-message"];
const REACHING: [&str; 3] = ["read-file", "socket", "env"];

fn hostile() -> String {
    policy("keyhost_policy_hostile.wasm")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_hostile_case_fails_closed_in_check() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let hostile = hostile();
    for behaviour in FAILING {
        let started = Instant::now();
        let (verdict, code) = s.check(&key, &["--policy", &hostile, "--service", behaviour]);
        let took = started.elapsed();
        assert_eq!(
            (verdict["code"].as_str(), code),
            (Some("policy_error"), 1),
            "{behaviour}: {verdict}"
        );
        assert!(
            verdict["reason"].as_str().unwrap().len() < 2048,
            "{behaviour}: the reason is bounded"
        );
        assert!(took < Duration::from_secs(20), "{behaviour} took {took:?}");
    }
    for behaviour in REACHING {
        let (verdict, code) = s.check(&key, &["--policy", &hostile, "--service", behaviour]);
        assert_eq!(
            (verdict["code"].as_str(), code),
            (Some("denied"), 1),
            "{behaviour} reached something: {verdict}"
        );
    }
}

#[test]
fn every_hostile_case_fails_closed_in_serve_and_the_next_request_is_served() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let server = s.serve(&["--policy", &hostile()]);
    let ask = |service: &str| {
        let mut response = http()
            .get(&server.url("/auth"))
            .header("x-api-key", &key)
            .header("x-keyhost-service", service)
            .call()
            .unwrap();
        // A denial has a JSON body; an allow has none.
        let text = response.body_mut().read_to_string().unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        (
            response.status().as_u16(),
            body["code"].as_str().unwrap_or("").to_string(),
        )
    };
    for behaviour in FAILING {
        let started = Instant::now();
        assert_eq!(
            ask(behaviour),
            (403, "policy_error".to_string()),
            "{behaviour}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{behaviour}");
        assert_eq!(ask("databases"), (200, String::new()), "after {behaviour}");
    }
    for behaviour in REACHING {
        assert_eq!(ask(behaviour), (403, "denied".to_string()), "{behaviour}");
    }
    // An instance that traps on every tenth call is replaced each time.
    let codes: Vec<u16> = (0..30).map(|_| ask("every-tenth").0).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 403).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 27, "{codes:?}");
    let mut metrics = http().get(&server.url("/metrics")).call().unwrap();
    let text = metrics.body_mut().read_to_string().unwrap();
    assert!(text.contains("keyhost_policy_errors_total 8"), "{text}");
}

/// Runs `args` with `stdin`, expects exit 2, and checks the registry is
/// byte-identical afterwards.
fn error_leaves_registry(s: &Sandbox, args: &[&str], stdin: &[u8]) -> String {
    let before = std::fs::read(s.registry()).unwrap();
    let mut command = s.command(args);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        std::fs::read(s.registry()).unwrap(),
        before,
        "{args:?} changed the registry"
    );
    stderr
}

#[test]
fn duplicate_ids_are_an_error_that_names_the_id_and_line() {
    let s = Sandbox::new().with_people();
    let (id, _) = s.create(&["--as", "user:alice", "--name", "k"]);
    let text = s.registry_text();
    let block = &text[text.find("[[key]]").unwrap()..];
    std::fs::write(s.registry(), format!("{text}\n{block}")).unwrap();
    let stderr = error_leaves_registry(&s, &["list"], b"");
    assert!(
        stderr.contains(&id) && stderr.contains("appears twice") && stderr.contains("line"),
        "{stderr}"
    );
    error_leaves_registry(&s, &["create", "--as", "user:alice", "--name", "x"], b"");
}

#[test]
fn an_unknown_field_is_named() {
    let s = Sandbox::new().with_people();
    s.create(&["--as", "user:alice", "--name", "k"]);
    let text = s
        .registry_text()
        .replace("locked = false", "locked = false\nfavourite = true");
    std::fs::write(s.registry(), &text).unwrap();
    let stderr = error_leaves_registry(&s, &["list"], b"");
    assert!(stderr.contains("favourite"), "{stderr}");
}

#[test]
fn bad_keys_on_stdin_are_errors_and_spaces_are_trimmed() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let stderr = error_leaves_registry(&s, &["check"], b"kh_usr_\xff\xfe\n");
    assert!(stderr.contains("UTF-8"), "{stderr}");
    let stderr = error_leaves_registry(&s, &["check"], b"");
    assert!(stderr.contains("no key"), "{stderr}");
    error_leaves_registry(&s, &["check"], b"   \n");
    error_leaves_registry(&s, &["check"], &vec![b'a'; 10_000]);
    // Whitespace around the key is trimmed, as the CLI guide says.
    let run = s.run_with(&["check"], &format!("  \t{key}  \r\n"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn an_oversized_registry_line_is_refused() {
    let s = Sandbox::new().with_people();
    let text = s.registry_text().replacen(
        "scopes = [",
        &format!("scopes = [\"{}\", ", "s".repeat(100_000)),
        1,
    );
    std::fs::write(s.registry(), &text).unwrap();
    let stderr = error_leaves_registry(&s, &["identity", "list"], b"");
    assert!(
        stderr.contains("line") && stderr.contains("65536"),
        "{stderr}"
    );
    error_leaves_registry(&s, &["identity", "add", "user:zed"], b"");
}

#[test]
fn a_registry_behind_a_symlink_is_read_but_never_written() {
    let s = Sandbox::new().with_people();
    let real = s.dir.path().join("real.toml");
    std::fs::rename(s.registry(), &real).unwrap();
    std::os::unix::fs::symlink(&real, s.registry()).unwrap();
    assert_eq!(
        s.run(&["identity", "list"]).code,
        0,
        "reading follows the link"
    );
    let before = std::fs::read(&real).unwrap();
    let stderr = error_leaves_registry(&s, &["identity", "add", "user:zed"], b"");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&real).unwrap(), before);
    assert!(
        std::fs::symlink_metadata(s.registry())
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn the_secret_appears_only_in_its_own_create_or_rotate_response() {
    let s = Sandbox::new().with_people();
    let created = s.run(&["create", "--as", "user:alice", "--name", "k", "--json"]);
    let value = created.json();
    let (id, key) = (
        value["id"].as_str().unwrap().to_string(),
        value["key"].as_str().unwrap().to_string(),
    );
    assert!(created.stdout.contains(&key));
    assert!(!created.stderr.contains(&key));
    let rotated = s.run(&[
        "rotate",
        &id,
        "--as",
        "user:alice",
        "--grace",
        "1h",
        "--json",
    ]);
    let new_key = rotated.json()["key"].as_str().unwrap().to_string();
    assert!(!rotated.stdout.contains(&key) && !rotated.stderr.contains(&key));
    let secrets = [key.clone(), new_key.clone()];

    let log = s.dir.path().join("decisions.jsonl");
    let server = s.serve(&["--decision-log", log.to_str().unwrap()]);
    for secret in &secrets {
        let _ = http()
            .get(&server.url("/auth"))
            .header("x-api-key", secret)
            .call();
        let _ = http()
            .post(&server.url("/v1/keys/verify"))
            .send_json(serde_json::json!({ "key": secret }));
    }
    let file = s.dir.path().join("leak.txt");
    std::fs::write(&file, format!("token={key}\n")).unwrap();
    let scan_arg = file.to_str().unwrap().to_string();
    let mut outputs = Vec::new();
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["show", &id],
        vec!["show", &id, "--json"],
        vec!["identity", "list"],
        vec!["scan", &scan_arg],
        vec!["scan", &scan_arg, "--json"],
        vec!["lock", &id, "--as", "user:alice"],
        vec!["unlock", &id, "--as", "user:alice", "--json"],
        vec!["update", &id, "--as", "user:alice", "--name", "renamed"],
        vec!["disable", &id, "--as", "user:bob"],
    ] {
        let run = s.run(&args);
        outputs.push((format!("{args:?}"), run.stdout + &run.stderr));
    }
    for secret in &secrets {
        for stdin_args in [
            vec!["check"],
            vec!["check", "--json"],
            vec!["check", "--scope", "admin"],
            vec!["scan"],
        ] {
            let run = s.run_with(&stdin_args, &format!("{secret}\n"), &[]);
            outputs.push((format!("{stdin_args:?}"), run.stdout + &run.stderr));
        }
    }
    let server_log = server.stderr_path.clone();
    server.stop();
    outputs.push((
        "serve log".into(),
        std::fs::read_to_string(server_log).unwrap(),
    ));
    outputs.push((
        "decision log".into(),
        std::fs::read_to_string(&log).unwrap(),
    ));
    outputs.push(("registry".into(), s.registry_text()));
    outputs.push((
        "usage".into(),
        std::fs::read_to_string(format!("{}.usage.json", s.registry().display()))
            .unwrap_or_default(),
    ));
    for (source, text) in &outputs {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is in the output of {source}"
            );
        }
    }
}

#[test]
fn the_registry_and_state_files_stay_0600_after_rewrites() {
    let s = Sandbox::new().with_people();
    let (id, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    s.ok(&["update", &id, "--as", "user:alice", "--name", "k2"]);
    let server = s.serve(&[]);
    let _ = http()
        .get(&server.url("/auth"))
        .header("x-api-key", &key)
        .call();
    server.stop();
    let usage = format!("{}.usage.json", s.registry().display());
    for path in [
        s.registry(),
        usage.into(),
        s.dir.path().join("keys.toml.lock"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}
