//! The gate (`keyhost gate build`) in real `wasi:http` proxy hosts:
//! `wasmtime serve` and `jco serve`, each in front of an app component the
//! tests build (tests/echo-app, middleware mode) and of a real nginx
//! upstream (reverse-proxy mode). Every case is decided by the same
//! registry snapshot inside the composed component; what reached the app or
//! upstream is read back from its answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::languages::{js_policy, python_policy};
use crate::support::in_place::{Answer, bearer, decides_every_case, keys, send};
use crate::support::nginx::Nginx;
use crate::support::proxy_host::{HostKind, ProxyHost};
use crate::support::{Sandbox, policy};

/// The interfaces of the `wasi:http/proxy` world, which every proxy host
/// provides, by name without the version.
const PROXY_WORLD: [&str; 11] = [
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Middleware,
    ReverseProxy,
}

fn echo_app() -> PathBuf {
    policy("keyhost_echo_app.wasm")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `keyhost gate build` into `name` in the sandbox, with `extra` options.
fn build(s: &Sandbox, name: &str, mode: Mode, upstream: Option<&Nginx>, extra: &[&str]) -> PathBuf {
    let out = s.dir.path().join(name);
    let target = match (mode, upstream) {
        (Mode::Middleware, _) => ["--app".to_string(), arg(&echo_app()).to_string()],
        (Mode::ReverseProxy, Some(nginx)) => [
            "--upstream".to_string(),
            format!("http://127.0.0.1:{}/static", nginx.port),
        ],
        (Mode::ReverseProxy, None) => panic!("a reverse proxy needs an upstream"),
    };
    let mut args = vec!["gate", "build", "-o", arg(&out)];
    args.extend(target.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let built = s.ok(&args);
    assert!(built["bytes"].as_u64().unwrap() > 0, "{built}");
    out
}

/// Every case of the issue, in one host and one mode.
fn every_case(kind: HostKind, mode: Mode) {
    let k = keys();
    let upstream = matches!(mode, Mode::ReverseProxy).then(|| Nginx::upstream(k.s.dir.path()));
    let trusted = build(
        &k.s,
        "trusted.wasm",
        mode,
        upstream.as_ref(),
        &[
            "--service",
            "object-storage",
            "--scope",
            "read",
            "--client-ip-header",
            "X-Forwarded-For",
        ],
    );
    let untrusted = build(
        &k.s,
        "untrusted.wasm",
        mode,
        upstream.as_ref(),
        &["--service", "object-storage", "--scope", "read"],
    );
    let gate = ProxyHost::start(kind, &trusted, &[]);
    let plain_gate = ProxyHost::start(kind, &untrusted, &[]);
    let echo = match mode {
        Mode::Middleware => "/echo?x=1",
        Mode::ReverseProxy => "/echo",
    };

    decides_every_case(&gate, &k, echo, &format!("{kind:?} {mode:?}"));
    if let Mode::ReverseProxy = mode {
        let file = send(&gate, "/hello.txt", &[("x-api-key", &k.ok.1)]);
        assert_eq!(file.status, 200);
        assert_eq!(file.body, "hello from a static file\n");
    }

    // An IP-restricted key: refused where the gate trusts no header, even
    // with one the client wrote; decided by its CIDRs where it trusts one.
    let ip = bearer(&k.ip);
    let answer = send(
        &plain_gate,
        echo,
        &[("authorization", &ip), ("x-forwarded-for", "10.1.2.3")],
    );
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (403, "ip_not_allowed")
    );
    let inside = send(
        &gate,
        echo,
        &[
            ("authorization", &ip),
            ("x-forwarded-for", "192.0.2.9, 10.1.2.3"),
        ],
    );
    assert_eq!(inside.status, 200, "{}", inside.body);
    for outside in ["10.1.2.3, 192.0.2.9", "192.0.2.9", "not-an-address"] {
        let answer = send(
            &gate,
            echo,
            &[("authorization", &ip), ("x-forwarded-for", outside)],
        );
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (403, "ip_not_allowed"),
            "{outside}"
        );
    }
    let none = send(&gate, echo, &[("authorization", &ip)]);
    assert_eq!((none.status, none.code().as_str()), (403, "ip_not_allowed"));
}

#[test]
fn a_middleware_gate_decides_every_case_under_wasmtime_serve() {
    every_case(HostKind::WasmtimeServe, Mode::Middleware);
}

#[test]
fn a_middleware_gate_decides_every_case_under_jco_serve() {
    every_case(HostKind::JcoServe, Mode::Middleware);
}

#[test]
fn a_reverse_proxy_gate_decides_every_case_under_wasmtime_serve() {
    every_case(HostKind::WasmtimeServe, Mode::ReverseProxy);
}

#[test]
fn a_reverse_proxy_gate_decides_every_case_under_jco_serve() {
    every_case(HostKind::JcoServe, Mode::ReverseProxy);
}

/// The decision `keyhost check` gives `key` with `policy` (none: the
/// default) for the gate's service and scope: the same policy in keyhost's
/// own host, which the gate must agree with.
fn keyhost_decision(s: &Sandbox, key: &str, policy: Option<&Path>, service: &str) -> String {
    let mut args = vec!["--service", service, "--scope", "read"];
    if let Some(policy) = policy {
        args.extend(["--policy", arg(policy)]);
    }
    s.decide(key, &args)
}

fn gate_decision(answer: &Answer) -> String {
    match answer.status {
        200 => "allow".to_string(),
        _ => answer.code(),
    }
}

/// One gate source, four policies: each composed gate decides as its policy
/// does in keyhost itself, on a case of its vectors.
#[test]
fn the_same_gate_composed_with_other_policies_gives_their_decisions() {
    let s = Sandbox::new().with_people();
    // example-policy.json: "a denied service is refused".
    s.ok(&[
        "policy",
        "config",
        "set",
        "denied_services",
        "[\"legacy-billing\"]",
    ]);
    let (_, plain) = s.create(&["--as", "user:alice", "--name", "plain"]);
    let (disabled_id, disabled) = s.create(&["--as", "user:alice", "--name", "off"]);
    s.ok(&["disable", &disabled_id, "--as", "user:alice"]);
    let strict = policy("keyhost_policy_strict.wasm");
    let example = policy("keyhost_policy_example.wasm");
    // What each decides for the plain key and the disabled one: the
    // default rules (and the Python and JavaScript ports of them) allow the
    // first; strict wants an expiry first; example closes the service.
    let policies: [(&str, Option<&Path>, [&str; 2]); 5] = [
        ("default", None, ["allow", "disabled"]),
        ("strict", Some(&strict), ["denied", "denied"]),
        ("example", Some(&example), ["denied", "disabled"]),
        ("python", Some(python_policy()), ["allow", "disabled"]),
        ("javascript", Some(js_policy()), ["allow", "disabled"]),
    ];
    for (name, policy, [plain_expected, disabled_expected]) in policies {
        let mut extra = vec!["--service", "legacy-billing", "--scope", "read"];
        if let Some(policy) = policy {
            extra.extend(["--policy", arg(policy)]);
        }
        let wasm = build(&s, &format!("{name}.wasm"), Mode::Middleware, None, &extra);
        let host = ProxyHost::start(HostKind::WasmtimeServe, &wasm, &[]);
        for (key, expected) in [(&plain, plain_expected), (&disabled, disabled_expected)] {
            let answer = send(&host, "/", &[("authorization", &bearer(key))]);
            let decided = gate_decision(&answer);
            assert_eq!(decided, expected, "{name}: {}", answer.body);
            assert_eq!(
                decided,
                keyhost_decision(&s, key, policy, "legacy-billing"),
                "{name}: the gate and keyhost check disagree"
            );
        }
    }
}

/// What a composed gate imports, as `keyhost policy inspect` lists it.
fn imports(s: &Sandbox, wasm: &Path) -> Vec<String> {
    let inspected = s.ok(&["policy", "inspect", arg(wasm)]);
    inspected["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .map(|name| name.as_str().unwrap().to_string())
        .collect()
}

fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap()
}

#[test]
fn a_built_gate_imports_only_the_proxy_world_and_says_what_it_is() {
    let s = Sandbox::new().with_people();
    s.create(&["--as", "user:alice", "--name", "one"]);
    let upstream = Nginx::upstream(s.dir.path());
    for (mode, name) in [
        (Mode::Middleware, "mw.wasm"),
        (Mode::ReverseProxy, "rp.wasm"),
    ] {
        // Rust std, componentize-js and componentize-py runtimes, and a
        // policy that reaches for files and sockets: all inside the world.
        let hostile = policy("keyhost_policy_hostile.wasm");
        for policy in [
            None,
            Some(js_policy()),
            Some(python_policy()),
            Some(hostile.as_path()),
        ] {
            let extra: Vec<&str> = policy.map(|p| vec!["--policy", arg(p)]).unwrap_or_default();
            let wasm = build(&s, name, mode, Some(&upstream), &extra);
            for import in imports(&s, &wasm) {
                assert!(
                    PROXY_WORLD.contains(&unversioned(&import)),
                    "{mode:?} with {policy:?} imports {import}, outside wasi:http/proxy"
                );
            }
            let inspected = s.ok(&["policy", "inspect", arg(&wasm)]);
            assert_eq!(inspected["contract"], "keyhost:policy@0.2.0");
            assert_eq!(inspected["keys"], 1);
            let revision = s
                .registry_text()
                .lines()
                .find_map(|line| line.strip_prefix("revision = ")?.parse::<u64>().ok());
            assert_eq!(inspected["revision"].as_u64(), revision);
            let exports = inspected["exports"].as_array().unwrap();
            assert_eq!(exports.len(), 1, "{inspected}");
            assert!(unversioned(exports[0].as_str().unwrap()) == "wasi:http/incoming-handler");
            let expected_mode = match mode {
                Mode::Middleware => "middleware",
                Mode::ReverseProxy => "reverse-proxy",
            };
            assert_eq!(inspected["mode"], expected_mode);
        }
    }
}

#[test]
fn a_gate_build_refuses_what_cannot_work_and_says_why() {
    let s = Sandbox::new().with_people();
    let out = s.dir.path().join("gate.wasm");
    let empty = s.dir.path().join("empty.wasm");
    std::fs::write(&empty, wat::parse_str("(component)").unwrap()).unwrap();
    let cases: [(Vec<String>, &str); 8] = [
        (
            vec![
                "--app".into(),
                arg(&policy("keyhost_policy_default.wasm")).into(),
            ],
            "does not export wasi:http/incoming-handler",
        ),
        // A component that would reach the network from inside the gate.
        (
            vec![
                "--upstream".into(),
                "http://127.0.0.1:1".into(),
                "--policy".into(),
                arg(&echo_app()).into(),
            ],
            "imports wasi:http/types@0.2.12, which a gate does not give a policy",
        ),
        (
            vec![
                "--upstream".into(),
                "http://127.0.0.1:1".into(),
                "--policy".into(),
                arg(&empty).into(),
            ],
            "does not export keyhost:policy/validator@0.2.0",
        ),
        // A 0.1 policy exports its functions from the world, which a gate
        // cannot import as an interface: refused, with what to do.
        (
            vec![
                "--upstream".into(),
                "http://127.0.0.1:1".into(),
                "--policy".into(),
                arg(&policy("keyhost_policy_default_v0_1.wasm")).into(),
            ],
            "a gate composes keyhost:policy@0.2 policies: rebuild it",
        ),
        (
            vec![
                "--upstream".into(),
                "http://127.0.0.1:1".into(),
                "--policy".into(),
                arg(&s.registry()).into(),
            ],
            "not a WebAssembly component",
        ),
        (
            vec!["--upstream".into(), "ftp://example".into()],
            "--upstream",
        ),
        (
            vec!["--upstream".into(), "http://user:pw@host/".into()],
            "credentials",
        ),
        (
            vec![
                "--upstream".into(),
                "http://127.0.0.1:1".into(),
                "--client-ip-header".into(),
                "X-Forwarded-For\r\nX-Evil".into(),
            ],
            "not a header name",
        ),
    ];
    for (extra, says) in cases {
        let mut args = vec!["gate", "build", "-o", arg(&out)];
        args.extend(extra.iter().map(String::as_str));
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(!out.exists(), "a refused build left a file");
    }
    // A refused upstream is quoted without the password it held.
    for json in [false, true] {
        let mut args = vec!["gate", "build", "-o", arg(&out)];
        args.extend(["--upstream", "http://user:Sesame-hunter2@host/"]);
        if json {
            args.push("--json");
        }
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{}", run.stderr);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(said.contains("credentials"), "{said}");
        assert!(
            !said.contains("hunter2"),
            "the password was printed: {said}"
        );
    }
    let both = s.run(&[
        "gate",
        "build",
        "-o",
        arg(&out),
        "--upstream",
        "http://h",
        "--app",
        arg(&echo_app()),
    ]);
    assert_eq!(both.code, 2, "{}", both.stderr);
    let neither = s.run(&["gate", "build", "-o", arg(&out)]);
    assert_eq!(neither.code, 2, "{}", neither.stderr);
}

/// A policy that traps, exits, loops, hoards memory, returns a code only
/// keyhost may give, or info no header can carry: the request fails closed
/// (within the host's bounds) or is cleaned, and nothing it should not see
/// reaches the app.
#[test]
fn a_hostile_policy_inside_a_gate_fails_closed() {
    let s = Sandbox::new().with_people();
    let (_, key) = s.create(&["--as", "user:alice", "--name", "k"]);
    let hostile = policy("keyhost_policy_hostile.wasm");
    let auth = bearer(&key);
    for service in ["trap", "exit", "loop", "grow", "reserved-not-found", "info"] {
        let wasm = build(
            &s,
            &format!("{service}.wasm"),
            Mode::Middleware,
            None,
            &["--policy", arg(&hostile), "--service", service],
        );
        // In a proxy, time and memory bounds are the host's settings.
        let bounds = ["-W", "timeout=500ms", "-W", "max-memory-size=67108864"];
        let host = ProxyHost::start(HostKind::WasmtimeServe, &wasm, &bounds);
        let started = std::time::Instant::now();
        let answer = send(&host, "/", &[("authorization", &auth)]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{service} held the request"
        );
        match service {
            "trap" | "exit" | "loop" | "grow" => {
                // The host answers a trapped instance with a 500; the app
                // never ran.
                assert!(
                    answer.status >= 500,
                    "{service}: {} {}",
                    answer.status,
                    answer.body
                );
                assert!(!answer.body.contains("x-keyhost-key-id"), "{}", answer.body);
            }
            "reserved-not-found" => {
                assert_eq!((answer.status, answer.code().as_str()), (403, "denied"));
            }
            "info" => {
                assert_eq!(answer.status, 200, "{}", answer.body);
                assert!(!answer.body.contains('\u{1b}'), "an escape reached the app");
                let info: Vec<&str> = answer
                    .body
                    .lines()
                    .filter(|line| line.starts_with("x-keyhost-info-"))
                    .collect();
                assert!(!info.is_empty(), "{}", answer.body);
                for line in info {
                    assert!(
                        line.chars().all(|c| c.is_ascii() && !c.is_control()),
                        "{line:?}"
                    );
                }
            }
            _ => unreachable!(),
        }
    }
}
