//! The web console in a real browser: Debian's Chromium, headless, driven
//! over WebDriver by chromedriver (both started here, on loopback) with
//! fantoccini, against a real `keyhost serve`. Keys are made with the CLI and
//! their ids compared with its output; secrets shown by the page are tried
//! at `/auth`.
//!
//! `KEYHOST_SCREENSHOTS=1` saves the screenshots of the book into docs/src/images/.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::{Sandbox, Server, free_port, http};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what a step waits for (the whole
/// suite shares two cores with this browser).
const PATIENCE: Duration = Duration::from_secs(30);

/// A binary the browser tests need, or a failure that says how to install it.
fn needed(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "the console's browser tests need Chromium and its WebDriver, and {} is missing: \
         install them with `apt-get install -y chromium chromium-driver` (Debian), \
         or name other binaries with KEYHOST_CHROMIUM and KEYHOST_CHROMEDRIVER",
        path.display()
    );
    path
}

/// Headless Chromium with a fresh profile, behind its own chromedriver.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = needed("KEYHOST_CHROMIUM", CHROMIUM);
        let chromedriver = needed("KEYHOST_CHROMEDRIVER", CHROMEDRIVER);
        let port = free_port();
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that Chromium goes with it (Drop).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut browser = Browser {
            client: None,
            driver,
            _profile: profile,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver did not listen on port {port}"
            );
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at once ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1360,1000",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }) else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Ends the session (Chromium quits) and chromedriver.
    async fn quit(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    async fn text(&self, script_expression: &str) -> String {
        let value = self.js(&format!("return {script_expression};")).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// What the live region says.
    async fn messages(&self) -> String {
        self.text("document.getElementById('messages').textContent")
            .await
    }

    /// Polls `expression` until it is truthy.
    async fn wait(&self, expression: &str, what: &str) {
        let started = Instant::now();
        let script = format!("return Boolean({expression});");
        loop {
            if self.js(&script).await == Value::Bool(true) {
                return;
            }
            if started.elapsed() > PATIENCE {
                panic!(
                    "the page did not show {what} within {PATIENCE:?}; it says: {:?}",
                    self.messages().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear a field");
        field.send_keys(text).await.expect("type into a field");
    }

    async fn open(&self, server: &Server) {
        self.client()
            .goto(&server.url("/console/"))
            .await
            .expect("open the console");
        self.wait(
            "document.documentElement.dataset.ready === 'true'",
            "the login form",
        )
        .await;
    }

    /// Types `secret` into the login form and waits for the list of keys.
    async fn login(&self, secret: &str) {
        self.fill("#apikey", secret).await;
        self.click("#login-button").await;
        self.wait(
            "!document.getElementById('console').hidden \
             && document.getElementById('keys-table').getAttribute('aria-busy') === 'false'",
            "the list of keys after logging in",
        )
        .await;
    }

    /// The ids of the keys in the table, in order.
    async fn key_ids(&self) -> Vec<String> {
        let ids = self
            .js("return [...document.querySelectorAll('#keys-table tr.key-row')].map(r => r.dataset.keyId);")
            .await;
        serde_json::from_value(ids).expect("a list of ids")
    }

    /// Opens a key's panel.
    async fn manage(&self, id: &str) {
        self.click(&format!("#keys-table tr[data-key-id='{id}'] button.manage"))
            .await;
        self.wait(
            &format!(
                "!document.getElementById('key-details').hidden \
                 && document.getElementById('key-details').dataset.keyId === '{id}'"
            ),
            "the key's panel",
        )
        .await;
    }

    /// Reads the secret in the once-only dialog, then closes it and checks
    /// that it is gone from the page.
    async fn take_secret(&self, screenshot: Option<&str>) -> String {
        self.wait("document.getElementById('secret-value')", "the new secret")
            .await;
        let secret = self
            .text("document.getElementById('secret-value').textContent")
            .await;
        assert!(secret.starts_with("kh_"), "a secret: {secret:?}");
        if let Some(name) = screenshot {
            self.screenshot(name).await;
        }
        self.click("#secret-close").await;
        self.wait(
            "!document.getElementById('secret-dialog')",
            "the dialog closed",
        )
        .await;
        assert!(
            !self.page().await.contains(&secret),
            "the secret stays in the page after its dialog is closed"
        );
        secret
    }

    /// The live DOM, serialised.
    async fn page(&self) -> String {
        self.text("document.documentElement.outerHTML").await
    }

    /// Saves a screenshot into docs/src/images/ when KEYHOST_SCREENSHOTS=1.
    async fn screenshot(&self, name: &str) {
        if std::env::var("KEYHOST_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        // Let the page paint what it just changed (a dialog's backdrop).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let png = self.client().screenshot().await.expect("a screenshot");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/src/images")
            .join(name);
        std::fs::write(&path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started, by its process group.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// The ids `keyhost list --owner OWNER` gives.
fn cli_ids(s: &Sandbox, owner: &str) -> Vec<String> {
    s.ok(&["list", "--owner", owner])["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["id"].as_str().expect("id").to_string())
        .collect()
}

/// The status `/auth` gives a secret.
fn auth(server: &Server, secret: &str) -> u16 {
    http()
        .get(&server.url("/auth"))
        .header("x-api-key", secret)
        .call()
        .expect("call /auth")
        .status()
        .as_u16()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_user_logs_in_with_a_key_and_the_token_stays_in_memory() {
    let s = Sandbox::new().with_people();
    let (_, secret) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    // Watch the answers the page gets, to learn the token it is given.
    browser
        .js("window.__tokens = []; const fetched = window.fetch; \
             window.fetch = async (...args) => { const r = await fetched(...args); \
             try { const body = await r.clone().json(); \
             if (body && body.access_token) window.__tokens.push(body.access_token); } catch (e) {} \
             return r; }; return null;")
        .await;
    browser.login(&secret).await;

    assert_eq!(
        browser
            .text("document.getElementById('whoami').textContent")
            .await,
        "user:alice"
    );
    assert!(browser.messages().await.contains("Logged in as user:alice"));
    assert_eq!(
        browser
            .text("document.getElementById('apikey').value")
            .await,
        "",
        "the key input is cleared"
    );
    let token = browser.text("window.__tokens[0]").await;
    assert!(token.len() > 16, "the page got a token: {token:?}");
    browser.js("delete window.__tokens; return null;").await;

    // Neither the token nor the key is kept anywhere but in a variable.
    let kept = browser
        .js("return { local: JSON.stringify(Object.entries(localStorage)), \
             session: JSON.stringify(Object.entries(sessionStorage)), \
             cookie: document.cookie, href: location.href, \
             requests: performance.getEntriesByType('resource').map(e => e.name).join(' '), \
             globals: Object.keys(window).filter(k => typeof window[k] === 'string').map(k => window[k]).join(' ') };")
        .await;
    assert_eq!(kept["local"], "[]");
    assert_eq!(kept["session"], "[]");
    assert_eq!(kept["cookie"], "");
    assert_eq!(kept["href"], server.url("/console/").as_str());
    for (place, text) in kept.as_object().unwrap() {
        let text = text.as_str().unwrap();
        assert!(!text.contains(&token), "the token is in {place}");
        assert!(!text.contains(&secret), "the key is in {place}");
    }
    assert!(!kept["requests"].as_str().unwrap().contains('?'));
    let page = browser.page().await;
    assert!(!page.contains(&token) && !page.contains(&secret));

    // Logging out forgets it all: the page asks for a key again.
    browser.click("#logout").await;
    browser
        .wait(
            "document.getElementById('console').hidden \
             && !document.getElementById('login-section').hidden",
            "the login form after logging out",
        )
        .await;
    assert!(browser.key_ids().await.is_empty());
    assert!(
        browser
            .text("document.getElementById('whoami').textContent")
            .await
            .is_empty()
    );
    browser.quit().await;
}

#[tokio::test]
async fn the_table_shows_exactly_the_users_keys_and_their_service_ids_keys() {
    let s = Sandbox::new().with_people();
    let (alice_id, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    s.create(&[
        "--as",
        "user:alice",
        "--name",
        "object storage",
        "--kind",
        "service-specific",
        "--service",
        "object-storage",
        "--expires",
        "3d",
    ]);
    let (locked_id, _) = s.create(&["--as", "user:alice", "--name", "deploy", "--lock"]);
    let (off_id, _) = s.create(&["--as", "user:alice", "--name", "old laptop"]);
    s.ok(&["disable", &off_id, "--as", "user:alice"]);
    s.create(&[
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        "--name",
        "billing app",
        "--expires",
        "90d",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let (bob_id, _) = s.create(&["--as", "user:bob", "--name", "bob's laptop"]);
    // The old laptop's key was made 40 days ago, as a registry from before
    // would hold it, and never used since.
    let registry = s.registry_text();
    let at = registry.find(&format!("id = \"{off_id}\"")).unwrap();
    let line = at + registry[at..].find("created_at = ").unwrap();
    let end = line + registry[line..].find('\n').unwrap();
    let forty_days_ago = keyhost::time::Timestamp(keyhost::time::Timestamp::now().0 - 40 * 86_400);
    let registry = format!(
        "{}created_at = {forty_days_ago}{}",
        &registry[..line],
        &registry[end..]
    );
    std::fs::write(s.registry(), registry).unwrap();
    let server = s.serve(&[]);
    for _ in 0..3 {
        assert_eq!(auth(&server, &alice), 200);
    }

    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    let mut expected = cli_ids(&s, "user:alice");
    expected.extend(cli_ids(&s, "service-id:billing"));
    assert_eq!(expected.len(), 5);
    assert_eq!(sorted(browser.key_ids().await), sorted(expected));
    assert!(!browser.key_ids().await.contains(&bob_id));

    // Each key sits in its owner's group; the groups are alice's, then
    // billing's.
    let groups = browser
        .js(
            "return [...document.querySelectorAll('#keys-table tbody.owner-group')].map(g => \
             [g.dataset.owner, [...g.querySelectorAll('tr.key-row')].map(r => r.dataset.owner)]);",
        )
        .await;
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0][0], "user:alice");
    assert_eq!(groups[1][0], "service-id:billing");
    for group in groups {
        for owner in group[1].as_array().unwrap() {
            assert_eq!(owner, &group[0]);
        }
    }
    // State badges.
    let badges = |id: &str| {
        format!(
            "[...document.querySelectorAll(\"#keys-table tr[data-key-id='{id}'] [data-badge]\")].map(b => b.dataset.badge).join(' ')"
        )
    };
    assert_eq!(browser.text(&badges(&locked_id)).await, "locked");
    assert_eq!(browser.text(&badges(&off_id)).await, "disabled inactive");
    assert_eq!(browser.text(&badges(&alice_id)).await, "active session");
    assert!(
        browser
            .text("[...document.querySelectorAll('#keys-table [data-badge=expiring]')].length + ''")
            .await
            == "1"
    );

    // The key's panel charts its requests per hour.
    browser.manage(&alice_id).await;
    browser
        .wait(
            "document.getElementById('usage').getAttribute('aria-busy') === 'false'",
            "the usage chart",
        )
        .await;
    let chart = browser
        .js(
            "return { bars: document.querySelectorAll('#usage svg rect.bar').length, \
             total: Number(document.getElementById('usage-summary').dataset.total), \
             summary: document.getElementById('usage-summary').textContent, \
             label: document.querySelector('#usage svg').getAttribute('role') };",
        )
        .await;
    assert_eq!(chart["bars"], 24, "{chart}");
    assert!(chart["total"].as_u64().unwrap() >= 3, "{chart}");
    assert!(
        chart["summary"]
            .as_str()
            .unwrap()
            .contains("in the last 24 hours"),
        "{chart}"
    );
    assert_eq!(chart["label"], "img");
    if std::env::var("KEYHOST_SCREENSHOTS").as_deref() == Ok("1") {
        browser
            .client()
            .set_window_size(1360, 1900)
            .await
            .expect("resize");
        browser.js("window.scrollTo(0, 0); return null;").await;
    }
    browser.screenshot("console-keys.png").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_key_created_in_the_page_shows_its_secret_once_and_the_secret_works() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    browser.fill("#create-name", "deploy pipeline").await;
    browser.fill("#create-expires", "90d").await;
    browser.fill("#create-scopes", "read").await;
    browser.click("#create-button").await;
    let secret = browser.take_secret(Some("console-created.png")).await;
    browser
        .wait(
            "[...document.querySelectorAll('#keys-table .key-name')].some(c => c.textContent === 'deploy pipeline')",
            "the new key in the table",
        )
        .await;
    assert!(browser.messages().await.contains("deploy pipeline"));
    assert_eq!(browser.key_ids().await.len(), 2);
    let listed = cli_ids(&s, "user:alice");
    assert_eq!(sorted(browser.key_ids().await), sorted(listed));

    // After a reload the page has forgotten the token, and logging in again
    // shows the key but never its secret.
    browser.client().refresh().await.expect("reload");
    browser
        .wait(
            "document.documentElement.dataset.ready === 'true' \
             && document.getElementById('console').hidden",
            "the login form after a reload",
        )
        .await;
    browser.login(&alice).await;
    assert_eq!(browser.key_ids().await.len(), 2);
    let page = browser.client().source().await.expect("the page source");
    assert!(!page.contains(&secret), "the secret is in the page again");
    assert!(!browser.page().await.contains(&secret));

    assert_eq!(auth(&server, &secret), 200, "the secret works at /auth");
    browser.quit().await;
}

/// Locks key `id` from its panel, and waits until the table shows it.
async fn lock_in_the_page(browser: &Browser, id: &str) {
    browser.manage(id).await;
    browser.click("#lock-toggle").await;
    browser
        .wait(
            &format!(
                "document.querySelector(\"#keys-table tr[data-key-id='{id}'] [data-badge=locked]\")"
            ),
            "the key locked",
        )
        .await;
}

#[tokio::test]
async fn the_console_names_the_version_it_changes_where_the_registry_requires_it() {
    let s = Sandbox::bare();
    s.ok(&["init", "--require-if-match"]);
    let s = s.with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (id, _) = s.create(&["--as", "user:alice", "--name", "production"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    lock_in_the_page(&browser, &id).await;
    assert_eq!(s.ok(&["show", &id])["key"]["locked"], true);
    // Changed elsewhere after the page read it, the key is not changed
    // from the page's stale version: the page says so.
    s.ok(&["leak", &id, "--as", "user:alice"]);
    browser.click("#lock-toggle").await;
    browser
        .wait(
            "document.querySelector('#messages .message-error')",
            "the refusal of a stale change",
        )
        .await;
    assert_eq!(s.ok(&["show", &id])["key"]["locked"], true);
    browser.quit().await;
}

#[tokio::test]
async fn a_locked_key_cannot_be_deleted_and_the_page_says_why() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (id, _) = s.create(&["--as", "user:alice", "--name", "production"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    lock_in_the_page(&browser, &id).await;
    assert_eq!(
        browser
            .text("document.getElementById('lock-toggle').textContent")
            .await,
        "Unlock"
    );
    assert_eq!(s.ok(&["show", &id])["key"]["locked"], true);

    browser.click("#delete-button").await;
    browser.click("#delete-confirm").await;
    browser
        .wait(
            "document.querySelector('#messages .message-error')",
            "the refusal",
        )
        .await;
    // The message is the API's own.
    let mut response = http()
        .delete(&server.url(&format!("/v1/keys/{id}")))
        .header("authorization", &format!("Bearer {alice}"))
        .call()
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 403);
    let body: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).expect("JSON");
    let message = body["error"]["message"].as_str().expect("error.message");
    let shown = browser.messages().await;
    assert!(
        shown.contains(message),
        "the page shows {shown:?}, not the API's message {message:?}"
    );
    assert!(browser.key_ids().await.contains(&id));
    assert!(cli_ids(&s, "user:alice").contains(&id));
    browser.quit().await;
}

#[tokio::test]
async fn rotating_in_the_page_keeps_the_old_secret_for_its_grace_period() {
    let s = Sandbox::new().with_people();
    let (alice_id, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (id, old) = s.create(&["--as", "user:alice", "--name", "web"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    browser.manage(&id).await;
    browser.fill("#rotate-grace", "1h").await;
    browser.click("#rotate-button").await;
    let new = browser.take_secret(None).await;
    assert_ne!(new, old);
    assert!(browser.messages().await.contains("the old one works until"));
    browser
        .wait(
            &format!(
                "document.querySelector(\"#keys-table tr[data-key-id='{id}'] [data-badge=grace]\")"
            ),
            "the grace period in the table",
        )
        .await;
    assert_eq!(auth(&server, &new), 200, "the new secret");
    assert_eq!(auth(&server, &old), 200, "the old secret, in its grace");

    // Rotating the key this session logged in with, at once: the new secret
    // is shown until it is saved, then the page asks to log in again.
    browser.manage(&alice_id).await;
    browser.fill("#rotate-grace", "").await;
    browser.click("#rotate-button").await;
    let renewed = browser.take_secret(None).await;
    browser
        .wait(
            "document.getElementById('console').hidden \
             && !document.getElementById('login-section').hidden",
            "the login form after rotating the session's key",
        )
        .await;
    assert!(browser.messages().await.contains("Log in again"));
    assert_eq!(auth(&server, &alice), 401, "the old secret, no grace");
    browser.login(&renewed).await;
    assert!(browser.key_ids().await.contains(&alice_id));
    browser.quit().await;
}

#[tokio::test]
async fn names_from_the_api_are_shown_as_text_and_never_run() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let alert = "<img src=x onerror=alert(1)>";
    let flag = "<img src=x onerror=window.__xss=1>";
    let (alert_id, _) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        alert,
        "--description",
        "<script>window.__xss=2</script>",
    ]);
    let (flag_id, _) = s.create(&["--as", "user:alice", "--name", flag]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;

    for (id, name) in [(&alert_id, alert), (&flag_id, flag)] {
        let shown = browser
            .text(&format!(
                "document.querySelector(\"#keys-table tr[data-key-id='{id}'] .key-name\").textContent"
            ))
            .await;
        assert_eq!(shown, name);
        browser.manage(id).await;
        assert_eq!(
            browser
                .text("document.querySelector('#key-details .details-name').textContent")
                .await,
            name
        );
        // A message naming the key.
        browser
            .js("document.getElementById('messages').replaceChildren(); return null;")
            .await;
        browser.click("#lock-toggle").await;
        browser
            .wait(
                "document.querySelector('#messages .message-success')",
                "the key locked",
            )
            .await;
        assert!(browser.messages().await.contains(name));
    }
    let counts = browser
        .js(
            "return { tableImages: document.querySelectorAll('#keys-table img').length, \
             images: document.querySelectorAll('img').length, \
             scripts: [...document.scripts].filter(s => !s.src).length, \
             xss: typeof window.__xss };",
        )
        .await;
    assert_eq!(counts["tableImages"], 0);
    assert_eq!(counts["images"], 0);
    assert_eq!(counts["scripts"], 0);
    assert_eq!(counts["xss"], "undefined");
    assert!(
        browser.client().get_alert_text().await.is_err(),
        "an alert is open"
    );
    browser.quit().await;
}

#[tokio::test]
async fn bob_never_sees_alices_keys() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "alice laptop"]);
    s.create(&[
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        "--name",
        "billing app",
    ]);
    let (_, bob) = s.create(&["--as", "user:bob", "--name", "bob laptop"]);
    s.create(&["--as", "user:bob", "--name", "bob ci"]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&bob).await;

    assert_eq!(
        browser
            .text("document.getElementById('whoami').textContent")
            .await,
        "user:bob"
    );
    let mine = cli_ids(&s, "user:bob");
    assert_eq!(mine.len(), 2);
    assert_eq!(sorted(browser.key_ids().await), sorted(mine));
    let page = browser.page().await;
    for id in cli_ids(&s, "user:alice")
        .into_iter()
        .chain(cli_ids(&s, "service-id:billing"))
    {
        assert!(!page.contains(&id), "bob's page shows alice's key {id}");
    }
    assert!(!page.contains("alice laptop") && !page.contains("billing app"));
    assert!(!page.contains("service-id:billing"));
    // Alice's session, afterwards in the same browser, is hers alone.
    browser.click("#logout").await;
    browser
        .wait(
            "document.getElementById('console').hidden",
            "the login form",
        )
        .await;
    browser.login(&alice).await;
    assert!(!browser.page().await.contains("bob laptop"));
    browser.quit().await;
}

#[test]
fn the_console_is_served_with_its_security_headers() {
    let s = Sandbox::new();
    let server = s.serve(&[]);
    for (path, content_type) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let mut response = http().get(&server.url(path)).call().expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        assert_eq!(
            header("content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-store");
        let body = response.body_mut().read_to_string().expect("a body");
        assert!(!body.is_empty());
    }
    let response = http().get(&server.url("/console")).call().expect("GET");
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/console/")
    );
    assert!(response.headers().contains_key("content-security-policy"));
}

/// Behind a load balancer most clicks land on a replica: there, a change
/// made in the page is forwarded to the primary and takes effect.
#[tokio::test]
async fn the_console_on_a_replica_makes_changes_through_the_primary() {
    let s = Sandbox::new().with_people();
    let (_, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (target, _) = s.create(&["--as", "user:alice", "--name", "to disable"]);
    let primary = s.serve(&[]);
    let replica = s.serve(&["--primary", &primary.base]);
    let browser = Browser::start().await;
    browser.open(&replica).await;
    browser.login(&alice).await;

    browser.fill("#create-name", "made on a replica").await;
    browser.click("#create-button").await;
    let secret = browser.take_secret(None).await;
    browser
        .wait(
            "[...document.querySelectorAll('#keys-table .key-name')].some(c => c.textContent === 'made on a replica')",
            "the new key in the table",
        )
        .await;
    assert_eq!(
        sorted(browser.key_ids().await),
        sorted(cli_ids(&s, "user:alice"))
    );
    assert_eq!(
        auth(&primary, &secret),
        200,
        "the key made on a replica works"
    );

    browser.manage(&target).await;
    browser.click("#disable-toggle").await;
    browser
        .wait(
            &format!(
                "document.querySelector(\"#keys-table tr[data-key-id='{target}'] [data-badge=disabled]\")"
            ),
            "the key disabled",
        )
        .await;
    assert_eq!(s.ok(&["show", &target])["key"]["state"], "disabled");
    assert!(!browser.messages().await.contains("could not be reached"));
    browser.quit().await;
}

/// A replica checks the caller itself before it forwards a write, with the
/// address it sees: a primary that believes the replica's forwarding
/// header never learns a client's forged address from it.
#[test]
fn a_forwarded_write_is_checked_on_the_replica_against_the_clients_own_address() {
    let s = Sandbox::new().with_people();
    let (_, bound) = s.create(&[
        "--as",
        "user:alice",
        "--name",
        "office",
        "--allow-ip",
        "10.9.9.0/24",
    ]);
    let primary = s.serve(&["--trusted-proxy", "127.0.0.1/32"]);
    let replica = s.serve(&["--primary", &primary.base]);
    let before = s.registry_text();
    let mut response = http()
        .post(&replica.url("/v1/keys"))
        .header("authorization", &format!("Bearer {bound}"))
        .header("keyhost-forward", "primary")
        .header("x-forwarded-for", "10.9.9.9")
        .send_json(json!({ "name": "sneaked", "for": "user:alice" }))
        .expect("POST");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ip_not_allowed"), "{body}");
    assert_eq!(s.registry_text(), before, "a refused write wrote something");
    // Without the header the replica still answers with the redirect.
    let response = http()
        .post(&replica.url("/v1/keys"))
        .header("authorization", &format!("Bearer {bound}"))
        .send_json(json!({ "name": "x" }))
        .expect("POST");
    assert_eq!(response.status().as_u16(), 307);
}

/// A session whose key stops working (disabled, leaked) ends at the next
/// answer that says so, and a service ID's key is told the rule.
#[tokio::test]
async fn a_session_ends_when_its_key_stops_working_and_a_service_id_is_told_the_rule() {
    let s = Sandbox::new().with_people();
    let (alice_id, alice) = s.create(&["--as", "user:alice", "--name", "laptop"]);
    let (_, billing) = s.create(&[
        "--as",
        "user:alice",
        "--for",
        "service-id:billing",
        "--name",
        "ci",
    ]);
    let server = s.serve(&[]);
    let browser = Browser::start().await;
    browser.open(&server).await;
    browser.login(&alice).await;
    s.ok(&["disable", &alice_id, "--as", "user:alice"]);
    server.auth_becomes(&alice, 403, "the disabled key");
    browser.click("#refresh").await;
    browser
        .wait(
            "document.getElementById('console').hidden \
             && !document.getElementById('login-section').hidden",
            "the login form once the key is disabled",
        )
        .await;
    assert!(
        browser.messages().await.contains("session has ended"),
        "{}",
        browser.messages().await
    );
    assert!(
        browser.key_ids().await.is_empty(),
        "the stale list stays on screen"
    );

    browser.fill("#apikey", &billing).await;
    browser.click("#login-button").await;
    browser
        .wait(
            "document.querySelector('#messages .message-error')",
            "the refusal of a service ID's key",
        )
        .await;
    let said = browser.messages().await;
    assert!(said.contains("only a user's key manages keys"), "{said}");
    assert!(!said.contains("keys:read"), "{said}");
    browser.quit().await;
}
