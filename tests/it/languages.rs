//! Policies in other languages, and keyhost's default policy in other hosts.
//!
//! The Python policy (componentize-py) and the JavaScript policy
//! (componentize-js) are built from source here, with the tools
//! tests/foreign/setup.sh installs, and must pass the default vectors in
//! keyhost. The default component must give keyhost's decisions, on every
//! vector, under Node (jco transpile) and under wasmtime-py; under Node, a
//! policy that never returns fails closed within a bound. Components of
//! another contract version, or with imports keyhost does not provide, are
//! refused at load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::foreign::{foreign, step, tools};
use crate::support::root;
use crate::support::{Run, Sandbox, policy};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn default_vectors() -> PathBuf {
    root().join("tests/vectors/default-policy.json")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// keyhost with a compiled-policy cache shared by this file's tests, so a
/// large component is compiled once rather than once per test.
fn keyhost(s: &Sandbox, args: &[&str], stdin: &str) -> Run {
    let cache = foreign().join("keyhost-cache");
    s.run_with(args, stdin, &[("KEYHOST_CACHE_DIR", arg(&cache))])
}

/// Builds a policy with `plugin/LANGUAGE/build.sh` against `wit` (and from
/// `app` instead of the language's own policy, where given), into a file
/// named by the hash of everything the build reads, so an unchanged policy is
/// not rebuilt; then has keyhost compile it once into the shared cache.
fn build(language: &str, wit: &Path, app: Option<&Path>) -> PathBuf {
    tools();
    let source_dir = root().join("plugin").join(language);
    let mut hasher = Sha256::new();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&source_dir)
        .unwrap()
        .chain(std::fs::read_dir(wit).unwrap())
        .map(|entry| entry.unwrap().path())
        // wit/ keeps the 0.1 contract in a folder, which a build ignores.
        .filter(|path| path.is_file())
        .chain(app.map(Path::to_path_buf))
        .collect();
    inputs.sort();
    for input in &inputs {
        hasher.update(input.file_name().unwrap().as_encoded_bytes());
        hasher.update(std::fs::read(input).unwrap());
    }
    let digest = hex(&hasher.finalize()[..8]);
    let out = foreign()
        .join("policies")
        .join(format!("{language}-{digest}.wasm"));
    if !out.exists() {
        let partial = out.with_extension("partial.wasm");
        step(
            Command::new(source_dir.join("build.sh"))
                .arg(&partial)
                .arg(wit)
                .args(app),
        );
        std::fs::rename(&partial, &out).unwrap();
    }
    keyhost(&Sandbox::bare(), &["policy", "inspect", arg(&out)], "");
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn python_policy() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("python", &root().join("wit"), None))
}

pub(crate) fn js_policy() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("js", &root().join("wit"), None))
}

/// `keyhost policy test --json` of a component against the default vectors.
fn keyhost_vectors(component: &Path) -> Value {
    let run = keyhost(
        &Sandbox::bare(),
        &[
            "policy",
            "test",
            arg(component),
            arg(&default_vectors()),
            "--json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run.json()
}

fn passes_every_default_vector_in_keyhost(component: &Path) {
    let report = keyhost_vectors(component);
    let total = report["results"].as_array().unwrap().len();
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["passed"], total);
    assert!(total >= 50, "{total} cases");
}

/// A sandbox where alice has a user key and a key bound to `billing`.
fn alices_keys() -> (Sandbox, String, String) {
    let s = Sandbox::new().with_people();
    let (_, user_key) = s.create(&["--as", "user:alice", "--name", "u"]);
    let (_, bound_key) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "b",
        "--kind",
        "service-specific",
        "--service",
        "billing",
    ]);
    (s, user_key, bound_key)
}

/// A real allow and a real deny through `keyhost check --policy`.
fn allows_and_denies_in_check(component: &Path) {
    let (s, user_key, bound_key) = alices_keys();
    let decide = |key: &str, args: &[&str]| -> Value {
        let mut full = vec!["check", "--json", "--policy", arg(component)];
        full.extend_from_slice(args);
        let run = keyhost(&s, &full, &format!("{key}\n"));
        let verdict = run.json();
        let want = if verdict["decision"] == "allow" { 0 } else { 1 };
        assert_eq!(run.code, want, "{verdict} {}", run.stderr);
        verdict
    };
    let allowed = decide(&user_key, &["--service", "billing", "--scope", "read"]);
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["owner"], "user:alice");
    let wrong = decide(&bound_key, &["--service", "queue"]);
    assert_eq!(wrong["code"], "wrong_service", "{wrong}");
    let scope = decide(&user_key, &["--scope", "admin"]);
    assert_eq!(scope["code"], "insufficient_scope", "{scope}");
}

/// The same allow and denies through `keyhost serve --policy`, whose
/// engine makes its instances from a pool with bounds of its own.
fn allows_and_denies_in_serve(component: &Path) {
    let (s, user_key, bound_key) = alices_keys();
    let server = s.serve(&["--policy", arg(component)]);
    let ask = |key: &str, service: &str, scope: &str| -> (u16, Value) {
        let mut response = crate::support::http()
            .get(&server.url("/auth"))
            .header("x-api-key", key)
            .header("x-keyhost-service", service)
            .header("x-keyhost-scope", scope)
            .call()
            .unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str(&text).unwrap_or_default(),
        )
    };
    // Several rounds: each key in turn gets a fresh instance from the pool.
    for _ in 0..3 {
        assert_eq!(ask(&user_key, "billing", "read").0, 200, "{}", server.log());
        let (status, body) = ask(&bound_key, "queue", "read");
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("wrong_service"))
        );
        let (status, body) = ask(&user_key, "billing", "admin");
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("insufficient_scope"))
        );
    }
}

#[test]
fn the_python_and_javascript_policies_allow_and_deny_in_keyhost_serve() {
    allows_and_denies_in_serve(python_policy());
    allows_and_denies_in_serve(js_policy());
}

#[test]
fn the_python_policy_passes_every_default_vector() {
    passes_every_default_vector_in_keyhost(python_policy());
}

#[test]
fn the_python_policy_allows_and_denies_in_keyhost_check() {
    allows_and_denies_in_check(python_policy());
}

#[test]
fn the_javascript_policy_passes_every_default_vector() {
    passes_every_default_vector_in_keyhost(js_policy());
}

#[test]
fn the_javascript_policy_allows_and_denies_in_keyhost_check() {
    allows_and_denies_in_check(js_policy());
}

/// A key bound to `billing`, presented for `\u{FEFF}billing`: a decoder
/// that drops a leading byte-order mark (componentize-js's does) would hand
/// the policy `billing`. keyhost refuses the field before any policy sees
/// it, through the CLI and through serve, whatever the policy's language.
fn refuses_a_byte_order_mark_before_the_policy(component: Option<&Path>) {
    let (s, _, bound_key) = alices_keys();
    let policy: Vec<&str> = component.map_or(vec![], |path| vec!["--policy", arg(path)]);
    for service in ["\u{FEFF}billing", "bil\u{FEFF}ling", "billing\u{202E}"] {
        let mut args = vec!["check", "--json", "--service", service];
        args.extend_from_slice(&policy);
        let run = keyhost(&s, &args, &format!("{bound_key}\n"));
        let verdict = run.json();
        assert_eq!(run.code, 1, "{verdict} {}", run.stderr);
        assert_eq!(verdict["decision"], "deny", "{service:?}: {verdict}");
        assert_eq!(verdict["code"], "denied", "{verdict}");
        let reason = verdict["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("the request's service"), "{reason}");
    }
    // The same key for the service it is bound to is allowed: the refusal
    // above is the mark's, not the key's.
    let mut args = vec!["check", "--json", "--service", "billing"];
    args.extend_from_slice(&policy);
    let run = keyhost(&s, &args, &format!("{bound_key}\n"));
    assert_eq!(run.json()["decision"], "allow", "{}", run.stderr);

    let server = s.serve(&policy);
    let ask = |service: &[u8]| {
        let request = format!(
            "GET /auth HTTP/1.1\r\nHost: {}\r\nX-API-Key: {bound_key}\r\nX-Keyhost-Service: ",
            server.addr()
        );
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(service);
        bytes.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        server.raw(&bytes)
    };
    let marked = ask("\u{FEFF}billing".as_bytes());
    assert!(
        !marked.starts_with("HTTP/1.1 200"),
        "a byte-order mark in the service was allowed: {marked}"
    );
    assert!(
        ask(b"billing").starts_with("HTTP/1.1 200"),
        "{}",
        server.log()
    );
}

#[test]
fn a_byte_order_mark_in_a_request_field_is_refused_before_the_javascript_policy() {
    refuses_a_byte_order_mark_before_the_policy(Some(js_policy()));
}

#[test]
fn a_byte_order_mark_in_a_request_field_is_refused_before_the_default_policy() {
    refuses_a_byte_order_mark_before_the_policy(None);
}

/// The (name, decision) of every case of a report: keyhost's `policy test
/// --json` and the foreign hosts' runners print the same `results` list.
fn decisions(report: &Value) -> Vec<(String, Value)> {
    report["results"]
        .as_array()
        .expect("a results list")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["decision"].clone(),
            )
        })
        .collect()
}

/// The foreign host's decision on every vector equals keyhost's, message and
/// info included: the same component, run by someone else's runtime.
fn same_decisions_as_keyhost(foreign_host: &str, mut runner: Command) {
    let ours = decisions(&keyhost_vectors(&policy("keyhost_policy_default.wasm")));
    let output = step(&mut runner);
    let theirs = decisions(&serde_json::from_slice(&output.stdout).expect("one JSON object"));
    assert_eq!(ours.len(), theirs.len(), "{foreign_host} ran another set");
    for ((name, decision), (their_name, their_decision)) in ours.iter().zip(&theirs) {
        assert_eq!(name, their_name);
        assert_eq!(
            decision, their_decision,
            "{foreign_host} decides {name:?} otherwise"
        );
    }
    let denies = ours.iter().filter(|(_, d)| d["decision"] == "deny").count();
    assert!(denies > 20, "only {denies} denies compared");
}

/// The jco/Node runner on `component` and `vectors`, in coreutils' timeout,
/// which ends a runner that hangs (status 124).
fn node_runner(component: &Path, vectors: &Path) -> Command {
    let mut node = Command::new("timeout");
    node.args(["--kill-after=5", "60", "node"])
        .arg(root().join("tests/foreign/node/run-vectors.mjs"))
        .arg(component)
        .arg(vectors);
    node
}

#[test]
fn the_default_policy_decides_the_same_under_node_with_jco() {
    tools();
    let node = node_runner(&policy("keyhost_policy_default.wasm"), &default_vectors());
    same_decisions_as_keyhost("jco/Node", node);
}

#[test]
fn a_policy_that_never_returns_fails_closed_under_node_and_the_next_case_is_run() {
    tools();
    // The hostile policy loops in `validate` for the service `loop`, and
    // sleeps forever in `configure` with `hostile = sleep-forever`.
    let mut vectors: Value =
        serde_json::from_slice(&std::fs::read(default_vectors()).unwrap()).unwrap();
    vectors["cases"] = serde_json::json!([
        { "name": "validate loops", "request": { "service": "loop" },
          "expect": { "decision": "deny", "code": "policy_error" } },
        { "name": "after validate", "expect": { "decision": "allow" } },
        { "name": "configure sleeps forever", "config": { "hostile": "sleep-forever" },
          "expect": { "decision": "deny", "code": "policy_error" } },
        { "name": "after configure", "expect": { "decision": "allow" } },
    ]);
    let s = Sandbox::bare();
    let file = s.dir.path().join("never-returns.json");
    std::fs::write(&file, vectors.to_string()).unwrap();

    // Status 0: every case decided as expected, none of them hung.
    let hostile = policy("keyhost_policy_hostile.wasm");
    let output = step(&mut node_runner(&hostile, &file));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let looped = &report["results"][0]["decision"];
    assert!(
        looped["message"]
            .as_str()
            .unwrap()
            .contains("ran out of time"),
        "{report}"
    );
}

#[test]
fn the_default_policy_decides_the_same_under_wasmtime_py() {
    tools();
    let mut python = Command::new(foreign().join("venv/bin/python"));
    python
        .arg(root().join("tests/foreign/python/run_vectors.py"))
        .arg(policy("keyhost_policy_default.wasm"))
        .arg(default_vectors());
    same_decisions_as_keyhost("wasmtime-py", python);
}

/// A copy of wit/ with `edit` applied to policy.wit, in a folder that lives
/// as long as the test process (the build is named by its content).
fn edited_wit(name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = foreign().join("wit-variants").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read_to_string(root().join("wit/policy.wit")).unwrap();
    let edited = edit(&original);
    assert_ne!(edited, original, "the edit changed nothing");
    std::fs::write(dir.join("policy.wit"), edited).unwrap();
    dir
}

fn check_with(component: &Path) -> Run {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    keyhost(
        &s,
        &["check", "--policy", arg(component)],
        &format!("{key}\n"),
    )
}

#[test]
fn a_policy_built_against_another_major_version_is_refused_at_load() {
    let wit = edited_wit("major-9", |text| {
        let line = text
            .lines()
            .find(|l| l.starts_with("package keyhost:policy@"))
            .unwrap();
        text.replace(line, "package keyhost:policy@9.0.0;")
    });
    let component = build("js", &wit, None);
    let run = check_with(&component);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("keyhost:policy@9.0.0"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("a major version of the contract this keyhost does not speak"),
        "{}",
        run.stderr
    );
    let inspect = keyhost(
        &Sandbox::bare(),
        &["policy", "inspect", arg(&component), "--json"],
        "",
    );
    assert_eq!(inspect.code, 2);
    assert_eq!(inspect.json()["contract"], "keyhost:policy@9.0.0");
}

#[test]
fn a_policy_importing_an_interface_keyhost_does_not_provide_is_refused_at_load() {
    let wit = edited_wit("made-up-import", |text| {
        let with_import = text.replace(
            "world policy {",
            "world policy {\n    import acme:made-up/oracle;",
        );
        format!(
            "{with_import}\npackage acme:made-up {{\n    interface oracle {{\n        ask: func() -> string;\n    }}\n}}\n"
        )
    });
    let component = build("js", &wit, None);
    let run = check_with(&component);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("needs an import keyhost does not provide"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("acme:made-up/oracle"), "{}", run.stderr);
}

#[test]
fn cpythons_wasi_imports_link_but_grant_nothing() {
    // The Python component imports WASI's filesystem, sockets, random and
    // clocks for CPython; keyhost links them all and still loads it.
    let run = keyhost(
        &Sandbox::bare(),
        &["policy", "inspect", arg(python_policy()), "--json"],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["loadable"], true, "{report}");
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "wasi:filesystem/preopens",
        "wasi:sockets/tcp",
        "wasi:cli/environment",
    ] {
        assert!(
            imports.iter().any(|name| name.starts_with(wanted)),
            "{wanted} not among {imports:?}"
        );
    }
}

#[test]
fn a_python_policy_reaches_no_environment_file_or_socket() {
    let probe = build(
        "python",
        &root().join("wit"),
        Some(&root().join("tests/foreign/python/sandbox_probe.py")),
    );
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let run = keyhost(
        &s,
        &["check", "--json", "--policy", arg(&probe)],
        &format!("{key}\n"),
    );
    let verdict = run.json();
    assert_eq!(verdict["decision"], "allow", "{verdict} {}", run.stderr);
    let info = &verdict["info"];
    assert_eq!(info["environ"], "0", "{verdict}");
    for attempt in ["list_root", "read_file", "socket"] {
        let outcome = info[attempt]
            .as_str()
            .expect("the probe reports each attempt");
        assert_ne!(outcome, "allowed", "{attempt}: {verdict}");
    }
}
