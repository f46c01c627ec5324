//! What `keyhost export` writes for the proxies that check keys in place:
//! the filters built into keyhost, and their configurations, with the
//! registry's snapshot inline or fetched live from `keyhost serve`.
//!
//! - Envoy (proxy-wasm): the filter module and its plugin configuration.
//! - Traefik (http-wasm): the plugin's folder (`plugins-local/src/keyhost`)
//!   and a dynamic configuration file that defines the middleware, with the
//!   snapshot in it; Traefik reloads that file when it changes.
//!
//! Both filters are the default policy built with the SDK's filter
//! features (host/build.rs); a policy of one's own builds the same way.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyhost_core::request::Checking;
use serde_json::{Value, json};

/// The default policy as a proxy-wasm filter (Envoy).
pub const PROXY_WASM_FILTER: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_proxy_wasm.wasm"
));

/// The default policy as an http-wasm plugin (Traefik).
pub const HTTP_WASM_PLUGIN: &[u8] = include_bytes!(concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_http_wasm.wasm"
));

/// The name Traefik knows the plugin by (`experimental.localPlugins.NAME`
/// and its folder `plugins-local/src/NAME`).
pub const TRAEFIK_PLUGIN: &str = "keyhost";

/// The plugin's manifest, `.traefik.yml`.
pub const TRAEFIK_MANIFEST: &str = "displayName: keyhost\ntype: middleware\nruntime: wasm\nsummary: API keys checked in place against a keyhost registry snapshot\ntestData: {}\n";

/// Where a filter's registry comes from, as written into its configuration.
pub enum Registry<'a> {
    /// The snapshot itself.
    Inline(&'a [u8]),
    /// Fetched from `keyhost serve` through this Envoy cluster.
    Live {
        /// The cluster's name.
        cluster: &'a str,
    },
}

/// A filter's configuration (JSON): what every request is checked for, and
/// the registry. Every value is a string or a list of strings, as Traefik
/// hands plugin settings on.
pub fn filter_config(
    checking: &Checking,
    registry: Registry<'_>,
    trust_source_address: Option<bool>,
) -> Value {
    let mut config = serde_json::Map::new();
    for (name, value) in [
        ("service", &checking.service),
        ("scope", &checking.scope),
        ("client_ip_header", &checking.client_ip_header),
    ] {
        if let Some(value) = value {
            config.insert(name.into(), json!(value));
        }
    }
    if !checking.key_headers.is_empty() {
        config.insert("key_headers".into(), json!(checking.key_headers));
    }
    if let Some(trust) = trust_source_address {
        config.insert("trust_source_address".into(), json!(trust));
    }
    let registry = match registry {
        Registry::Inline(snapshot) => json!({ "inline": STANDARD.encode(snapshot) }),
        Registry::Live { cluster } => json!({ "live": { "cluster": cluster } }),
    };
    config.insert("registry".into(), registry);
    Value::Object(config)
}

/// A Traefik dynamic configuration that defines middleware `middleware`:
/// the plugin with `config`. JSON is YAML, so it goes in a `.yml` file as
/// it is.
pub fn traefik_dynamic(middleware: &str, config: Value) -> String {
    let dynamic = json!({
        "http": { "middlewares": { middleware: { "plugin": { TRAEFIK_PLUGIN: config } } } }
    });
    let mut text = serde_json::to_string_pretty(&dynamic).expect("JSON serializes");
    text.push('\n');
    text
}
