//! A filter's configuration: JSON, as Envoy's plugin `configuration` and
//! Traefik's middleware settings carry it.
//!
//! ```json
//! { "service": "inventory", "scope": "read", "client_ip_header": "x-forwarded-for",
//!   "key_headers": ["authorization", "x-api-key"],
//!   "registry": { "inline": "<base64 of a snapshot>" } }
//! ```
//!
//! or `"registry": { "live": { "cluster": "keyhost" } }` in Envoy. The
//! configuration is never quoted back: an error names the field and the
//! place, not the value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyhost_core::key_format;
use keyhost_core::request::Checking;
use keyhost_core::snapshot::Snapshot;
use serde::Deserialize;

/// Where a filter's registry comes from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistrySource {
    /// A snapshot in the configuration, base64.
    Inline(String),
    /// Snapshots fetched from `keyhost serve` (proxy-wasm only).
    Live(Live),
}

/// How a live filter reaches `keyhost serve`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Live {
    /// The proxy's name for the upstream that is `keyhost serve` (an Envoy
    /// cluster).
    pub cluster: String,
    /// The `:authority` of the fetch.
    #[serde(default = "Live::default_authority")]
    pub authority: String,
    /// The snapshot endpoint's path.
    #[serde(default = "Live::default_path")]
    pub path: String,
    /// How often to ask for a newer snapshot, in milliseconds.
    #[serde(default = "Live::default_every_ms")]
    pub every_ms: u64,
    /// How long one fetch may take, in milliseconds.
    #[serde(default = "Live::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The environment variable of the proxy process that holds the replica
    /// credential, so that the credential is in no configuration.
    #[serde(default = "Live::default_credential_env")]
    pub credential_env: String,
    /// How long the filter may decide on a snapshot with no proven answer
    /// from keyhost serve since, in milliseconds; past it, every check
    /// fails closed. Unset: the last good snapshot serves on, however old.
    #[serde(default)]
    pub max_stale_ms: Option<u64>,
}

impl Live {
    fn default_authority() -> String {
        "keyhost".into()
    }
    fn default_path() -> String {
        "/v1/snapshot".into()
    }
    fn default_every_ms() -> u64 {
        1000
    }
    fn default_timeout_ms() -> u64 {
        5000
    }
    fn default_credential_env() -> String {
        "KEYHOST_REPLICA_CREDENTIAL".into()
    }
}

/// A filter's whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterConfig {
    /// What every request is checked for.
    pub checking: Checking,
    /// Where the registry comes from.
    pub registry: RegistrySource,
    /// Whether the proxy's own word for its peer's address may be taken as
    /// the client's (when no `client_ip_header` is named); unset, each
    /// filter's default. Envoy's is the peer only when its connection
    /// manager has `use_remote_address: true` (or `xff_num_trusted_hops`
    /// naming the proxies in front): otherwise Envoy takes it from
    /// `X-Forwarded-For`, which a client writes, so Envoy's filter trusts it
    /// only when told. Traefik's is the connection's peer, so its plugin
    /// trusts it unless told not to. Untrusted, keys with an IP allow-list
    /// fail closed.
    pub trust_source_address: Option<bool>,
}

impl FilterConfig {
    /// Parses `bytes`: the checking fields, and `registry`.
    pub fn parse(bytes: &[u8]) -> Result<FilterConfig, String> {
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| described("the configuration", &e))?;
        let registry = fields
            .remove("registry")
            .ok_or("the configuration has no `registry` (`inline` or `live`)")?;
        let registry: RegistrySource =
            serde_json::from_value(registry).map_err(|e| described("`registry`", &e))?;
        let trust_source_address = match fields.remove("trust_source_address") {
            None => None,
            Some(serde_json::Value::Bool(trust)) => Some(trust),
            // Traefik hands settings on as strings.
            Some(serde_json::Value::String(text)) if text == "true" || text == "false" => {
                Some(text == "true")
            }
            Some(_) => return Err("`trust_source_address` must be true or false".into()),
        };
        let checking: Checking = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| described("the configuration", &e))?;
        checking.validate()?;
        if let RegistrySource::Live(live) = &registry {
            if live.every_ms < 100 || live.timeout_ms == 0 {
                return Err(
                    "`registry.live`: `every_ms` must be at least 100 and `timeout_ms` above 0"
                        .into(),
                );
            }
            if live.max_stale_ms.is_some_and(|max| max <= live.every_ms) {
                return Err("`registry.live.max_stale_ms` must be longer than `every_ms`".into());
            }
            if !live.path.starts_with('/') {
                return Err("`registry.live.path` must start with `/`".into());
            }
        }
        Ok(FilterConfig {
            checking,
            registry,
            trust_source_address,
        })
    }
}

/// A JSON error, said without the value it is about (which could be a
/// snapshot or a credential put in the wrong place).
fn described(what: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    // These quote field names only, which are redacted all the same should
    // one be shaped like a secret ("unknown variant" would quote a value
    // put where a variant goes, so it is not kept).
    let kept = ["unknown field", "missing field", "duplicate field"];
    let detail = if kept.iter().any(|k| message.starts_with(k)) {
        key_format::redact(message.split(" at line ").next().unwrap_or(&message))
    } else if message.starts_with("unknown variant") {
        "`registry` must be {\"inline\": \"BASE64\"} or {\"live\": {...}}".into()
    } else if error.is_syntax() || error.is_eof() {
        "it is not valid JSON".into()
    } else {
        "a value has the wrong type".into()
    };
    if error.line() > 0 {
        format!(
            "{what}: {detail} (line {}, column {})",
            error.line(),
            error.column()
        )
    } else {
        format!("{what}: {detail}")
    }
}

/// A snapshot from its base64 text: decoded, opened and verified whole, in
/// every host. A flipped byte in a key's record could turn a disabled key
/// into an active one, so no host opens one on its frame alone, though
/// Traefik hashes it again at every plugin instance it makes.
pub fn inline_snapshot(base64: &str) -> Result<Snapshot<Vec<u8>>, String> {
    let bytes = STANDARD
        .decode(base64.trim())
        .map_err(|_| "`registry.inline` is not base64".to_string())?;
    verified(bytes)
}

/// A snapshot from its bytes, opened and verified whole: a truncated or
/// corrupted one is refused.
pub fn verified(bytes: Vec<u8>) -> Result<Snapshot<Vec<u8>>, String> {
    let snapshot = Snapshot::open(bytes).map_err(|e| format!("{e:#}"))?;
    snapshot.verify().map_err(|e| format!("{e:#}"))?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_refused_without_being_quoted() {
        let secret = key_format::generate("kh", keyhost_core::iam::KeyKind::User);
        let secret = secret.expose();
        for bad in [
            format!(r#"{{"service": ["{secret}"], "registry": {{"inline": ""}}}}"#),
            format!(r#"{{"registry": {{"live": {{"cluster": 7, "path": "{secret}"}}}}}}"#),
            format!(r#"{{"registry": {{"inline": "{secret}"#),
            format!(r#"{{"client_ip_header": "{secret} x", "registry": {{"inline": ""}}}}"#),
            format!(r#"{{"registry": "{secret}"}}"#),
            format!(r#"{{"registry": {{"{secret}": 1}}}}"#),
            format!(r#"{{"{secret}": 1, "registry": {{"inline": ""}}}}"#),
        ] {
            let error = FilterConfig::parse(bad.as_bytes()).unwrap_err();
            assert!(!error.contains(secret), "{error}");
        }
        let error =
            FilterConfig::parse(br#"{"servce": "a", "registry": {"inline": ""}}"#).unwrap_err();
        assert!(error.contains("unknown field `servce`"), "{error}");
        let error = FilterConfig::parse(br#"{"service": "a"}"#).unwrap_err();
        assert!(error.contains("no `registry`"), "{error}");
    }

    #[test]
    fn live_settings_default_and_are_bounded() {
        let config = FilterConfig::parse(
            br#"{"service": "inventory", "registry": {"live": {"cluster": "keyhost"}}}"#,
        )
        .unwrap();
        assert_eq!(config.checking.service.as_deref(), Some("inventory"));
        let RegistrySource::Live(live) = config.registry else {
            panic!("live")
        };
        assert_eq!(
            (
                live.path.as_str(),
                live.every_ms,
                live.credential_env.as_str()
            ),
            ("/v1/snapshot", 1000, "KEYHOST_REPLICA_CREDENTIAL")
        );
        assert!(
            FilterConfig::parse(br#"{"registry": {"live": {"cluster": "k", "every_ms": 1}}}"#)
                .is_err()
        );
    }

    #[test]
    fn a_snapshot_that_is_not_base64_or_not_whole_is_refused() {
        assert!(inline_snapshot("%%%").is_err());
        assert!(inline_snapshot(&STANDARD.encode(b"KHSNAP04 short")).is_err());
    }
}
