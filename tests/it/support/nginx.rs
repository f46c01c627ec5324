//! A real nginx running the nginx guide's `auth_request` snippet, word for word,
//! in front of a static upstream that echoes what it was given.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Sandbox, Server, free_port, http};

pub fn binary() -> String {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("nginx is not installed: .ci/run installs it (apt-get install nginx)");
}

/// An nginx configuration that keeps everything in `dir`, with `servers`
/// (and whatever else belongs in its `http` block).
fn config(dir: &std::path::Path, servers: &str) -> String {
    let d = dir.display();
    format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{servers}}}
"#
    )
}

/// Starts nginx with `config` in `dir`, and waits until it listens on `port`.
fn spawn(dir: &std::path::Path, config: &str, port: u16) -> std::process::Child {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(binary())
        .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The nginx guide's snippet (docs/src/guides/nginx.md).
pub fn guide_snippet() -> String {
    super::docs::block("nginx-snippet", "nginx")
}

pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

/// What a request through nginx got back.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: ureq::http::HeaderMap,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Nginx {
    /// nginx with the nginx guide's snippet, pointed at `keyhost`, in front of an
    /// upstream that answers with the identity headers and the method and
    /// path it saw.
    pub fn start(s: &Sandbox, keyhost: &Server) -> Nginx {
        let dir = s.dir.path().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let (port, upstream) = (free_port(), free_port());
        let auth = keyhost.base.trim_start_matches("http://");
        let snippet = guide_snippet()
            .replace("127.0.0.1:8080", auth)
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("http://backend", &format!("http://127.0.0.1:{upstream}"));
        let config = config(
            &dir,
            &format!(
                r#"{snippet}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "upstream saw key id [$http_x_keyhost_key_id] owner [$http_x_keyhost_owner] $request_method $request_uri kind [$http_x_keyhost_kind]\n"; }}
    }}
"#
            ),
        );
        let child = spawn(&dir, &config, port);
        Nginx { child, port, dir }
    }

    /// nginx as a plain upstream on its own port: `/static/hello.txt` is a
    /// static file, and `/static/echo` answers with the identity headers and
    /// the key headers it was given, one `name: value` line each.
    pub fn upstream(dir: &std::path::Path) -> Nginx {
        let dir = dir.join("upstream");
        std::fs::create_dir_all(dir.join("www/static")).unwrap();
        std::fs::write(
            dir.join("www/static/hello.txt"),
            "hello from a static file\n",
        )
        .unwrap();
        let port = free_port();
        let d = dir.display();
        let config = config(
            &dir,
            &format!(
                r#"    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /static/echo {{
            return 200 "$request_method $request_uri\nx-keyhost-key-id: $http_x_keyhost_key_id\nx-keyhost-owner: $http_x_keyhost_owner\nx-keyhost-kind: $http_x_keyhost_kind\nx-keyhost-info-role: $http_x_keyhost_info_role\nx-keyhost-service: $http_x_keyhost_service\nauthorization: $http_authorization\nx-api-key: $http_x_api_key\n";
        }}
    }}
"#
            ),
        );
        let child = spawn(&dir, &config, port);
        Nginx { child, port, dir }
    }

    /// `method path` through nginx with the key in X-API-Key and extra headers.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = http()
            .run(request.body(()).unwrap())
            .expect("request through nginx");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    /// `GET /files/report.txt`: (status, body, WWW-Authenticate).
    pub fn get(&self, key: Option<&str>) -> (u16, String, Option<String>) {
        let answer = self.send("GET", "/files/report.txt", key, &[]);
        let challenge = answer.header("www-authenticate").map(String::from);
        (answer.status, answer.body, challenge)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
