//! Runs the real `keyhost` binary against a registry in a temporary folder.
#![allow(dead_code)]

pub mod docs;
pub mod envoy;
pub mod foreign;
pub mod in_place;
pub mod nginx;
pub mod proxy_host;
pub mod redis;
pub mod traefik;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const KEYHOST: &str = env!("CARGO_BIN_EXE_keyhost");

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository")
        .to_path_buf()
}

/// A policy component built by host/build.rs, by file name.
pub fn policy(name: &str) -> PathBuf {
    Path::new(env!("KEYHOST_POLICY_DIR")).join(name)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("keyhost exited by a signal"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A registry in its own folder, with its own compiled-policy cache.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// An initialised, empty registry.
    pub fn new() -> Sandbox {
        let sandbox = Sandbox::bare();
        sandbox.ok(&["init"]);
        sandbox
    }

    /// A folder with no registry yet.
    pub fn bare() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.path().join("keys.toml")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KEYHOST);
        command
            .args(args)
            .env("KEYHOST_REGISTRY", self.registry())
            .env("KEYHOST_CACHE_DIR", self.cache_dir())
            .env_remove("KEYHOST_KEY")
            .env_remove("KEYHOST_LOG");
        command
    }

    /// Runs keyhost with `args` and `stdin`, and any extra environment.
    pub fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start keyhost");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait for keyhost"))
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "", &[])
    }

    /// Runs a command that must succeed, with `--json`, and returns its object.
    pub fn ok(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let run = self.run(&with_json);
        assert_eq!(
            run.code, 0,
            "keyhost {args:?} failed: {}{}",
            run.stdout, run.stderr
        );
        run.json()
    }

    /// Runs a command that a rule must refuse (exit 1), and checks that the
    /// registry file did not change.
    pub fn refused(&self, args: &[&str]) -> Run {
        let before = std::fs::read(self.registry()).expect("read registry");
        let run = self.run(args);
        assert_eq!(
            run.code, 1,
            "keyhost {args:?} should be refused: {}{}",
            run.stdout, run.stderr
        );
        let after = std::fs::read(self.registry()).expect("read registry");
        assert!(before == after, "a refused {args:?} changed the registry");
        run
    }

    /// Creates a key and returns (id, secret).
    pub fn create(&self, args: &[&str]) -> (String, String) {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        let out = self.ok(&full);
        (
            out["id"].as_str().expect("id").to_string(),
            out["key"].as_str().expect("key").to_string(),
        )
    }

    /// Checks `secret` (given on stdin) with extra `args`; returns the JSON
    /// verdict and the exit code.
    pub fn check(&self, secret: &str, args: &[&str]) -> (Value, i32) {
        let mut full = vec!["check", "--json"];
        full.extend_from_slice(args);
        let run = self.run_with(&full, &format!("{secret}\n"), &[]);
        (run.json(), run.code)
    }

    /// The deny code of a check, or "allow".
    pub fn decide(&self, secret: &str, args: &[&str]) -> String {
        let (verdict, code) = self.check(secret, args);
        match verdict["decision"].as_str() {
            Some("allow") => {
                assert_eq!(code, 0, "allow must exit 0");
                "allow".into()
            }
            Some("deny") => {
                assert_eq!(code, 1, "deny must exit 1");
                verdict["code"].as_str().expect("deny code").to_string()
            }
            other => panic!("unexpected decision {other:?}: {verdict}"),
        }
    }

    /// Adds the identities most tests use: alice and bob (read, write) and
    /// service-id:billing owned by alice (read).
    pub fn with_people(self) -> Sandbox {
        self.ok(&[
            "identity",
            "add",
            "user:alice",
            "--scope",
            "read",
            "--scope",
            "write",
        ]);
        self.ok(&[
            "identity", "add", "user:bob", "--scope", "read", "--scope", "write",
        ]);
        self.ok(&[
            "identity",
            "add",
            "service-id:billing",
            "--owner",
            "user:alice",
            "--scope",
            "read",
        ]);
        self
    }

    pub fn registry_text(&self) -> String {
        std::fs::read_to_string(self.registry()).expect("read registry")
    }
}

/// A running `keyhost serve`, stopped with SIGTERM when dropped.
/// A number no other server's log of this test run has.
fn next_log() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Server {
    child: std::process::Child,
    pub base: String,
    pub stderr_path: PathBuf,
}

impl Sandbox {
    /// Starts `keyhost serve` on a free loopback port with extra `args`.
    pub fn serve(&self, args: &[&str]) -> Server {
        use std::io::BufRead;
        let stderr_path =
            self.dir
                .path()
                .join(format!("serve-{}-{}.log", std::process::id(), next_log()));
        let stderr = std::fs::File::create(&stderr_path).expect("serve log");
        let mut full = vec!["serve", "--listen", "127.0.0.1:0", "--usage-flush", "1s"];
        full.extend_from_slice(args);
        let mut child = self
            .command(&full)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start keyhost serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("keyhost serve did not start: {line:?}\n{log}")
            })
            .to_string();
        Server {
            child,
            base,
            stderr_path,
        }
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The address serve listens on, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.base.strip_prefix("http://").expect("an http:// base")
    }

    /// What serve answers `request`, sent as it is (bytes an HTTP client
    /// would not send), read until serve closes the connection.
    pub fn raw(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr()).expect("connect to serve");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("a read timeout");
        stream.write_all(request).expect("send the request");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// What `/auth` answers `key` (in `x-api-key`) now.
    pub fn auth_status(&self, key: &str) -> u16 {
        http()
            .get(&self.url("/auth"))
            .header("x-api-key", key)
            .call()
            .expect("request")
            .status()
            .as_u16()
    }

    /// Asks `/auth` with `key` until `status` comes, for at most 1 s.
    pub fn auth_becomes(&self, key: &str, status: u16, what: &str) {
        self.auth_becomes_within(key, status, what, std::time::Duration::from_secs(1));
    }

    /// Asks `/auth` with `key` until `status` comes, for at most `limit`.
    pub fn auth_becomes_within(
        &self,
        key: &str,
        status: u16,
        what: &str,
        limit: std::time::Duration,
    ) {
        let since = std::time::Instant::now();
        loop {
            let got = self.auth_status(key);
            if got == status {
                return;
            }
            assert!(
                since.elapsed() < limit,
                "{what}: serve still answers {got} after {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Stops with SIGTERM and waits; returns the exit code.
    pub fn stop(mut self) -> i32 {
        self.signal("TERM");
        let code = self
            .child
            .wait()
            .expect("wait for serve")
            .code()
            .unwrap_or(-1);
        std::mem::forget(self);
        code
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 3xx, 4xx and 5xx responses instead of
/// errors or following them.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

/// The entries of a decision log, in order.
pub fn decisions(log: &Path, count: usize) -> Vec<Value> {
    decision_log(log, count)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a decision is one JSON line"))
        .collect()
}

/// The decision log's text once it holds `count` lines or more: serve's
/// writer thread writes a line moments after its answer, so a test waits
/// up to 5 s for it.
pub fn decision_log(log: &Path, count: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().count() >= count || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A free loopback port (closed again before it is returned).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the hand-written policy component of `policy.wat` to `path`, with
/// `extra_memories` memories beside the first, `validate_body` run by
/// `validate` before it allows, and `functions` added to its core module.
pub fn wat_policy(path: &Path, extra_memories: usize, validate_body: &str, functions: &str) {
    let memories = "(memory 0)\n".repeat(extra_memories);
    let text = include_str!("policy.wat")
        .replace("EXTRA_MEMORIES", &memories)
        .replace("VALIDATE_BODY", validate_body)
        .replace("FUNCTIONS", functions);
    let wasm = wat::parse_str(&text).unwrap_or_else(|e| panic!("policy.wat: {e}"));
    std::fs::write(path, wasm).expect("write the policy component");
}
