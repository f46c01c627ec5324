//! An example of a configurable policy: the default rules, plus three rules
//! set in the registry's `[policy.config]`, so that an operator changes a
//! decision by editing the registry, not by rebuilding anything:
//!
//! ```toml
//! [policy.config]
//! max_key_age_days = 90                 # keys older than this are refused (expired)
//! service_id_keys_need_expiry = true    # a service ID's keys must have an expiry (denied)
//! denied_services = ["legacy-billing"]  # no key may reach these services (denied)
//! ```
//!
//! Each rule is off when its setting is absent. `classic_service` is read by
//! the default rules, as in the default policy.

use keyhost_policy_sdk::{
    Decision, Guest, Identity, IdentityKind, KeyRecord, Request, configure_default_rules,
    default_decision, deny, rules,
};

/// The example's own settings.
#[derive(Clone, Debug, Default)]
struct Settings {
    max_key_age_days: Option<i64>,
    service_id_keys_need_expiry: bool,
    denied_services: Vec<String>,
}

const SECONDS_PER_DAY: i64 = 24 * 60 * 60;

impl Settings {
    fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (name, text) in pairs {
            let setting = format!("policy.config.{name}");
            match name.as_str() {
                "max_key_age_days" => match toml_value(text) {
                    Some(toml::Value::Integer(days)) if days > 0 => {
                        settings.max_key_age_days = Some(days)
                    }
                    _ => {
                        return Err(format!(
                            "{setting} must be a whole number of days above 0, not {text}"
                        ));
                    }
                },
                "service_id_keys_need_expiry" => match toml_value(text) {
                    Some(toml::Value::Boolean(need)) => settings.service_id_keys_need_expiry = need,
                    _ => return Err(format!("{setting} must be true or false, not {text}")),
                },
                "denied_services" => settings.denied_services = service_list(&setting, text)?,
                _ => {}
            }
        }
        Ok(settings)
    }

    /// The example's rules, after the default ones have allowed the key.
    fn decide(
        &self,
        key: &KeyRecord,
        identity: &Identity,
        request: &Request,
    ) -> Option<rules::Deny> {
        if let Some(service) = &request.service
            && self.denied_services.contains(service)
        {
            return Some(rules::Deny::new(
                rules::DenyCode::Denied,
                format!("the service {service} is closed to API keys by the registry's policy"),
            ));
        }
        if let Some(days) = self.max_key_age_days
            && request.now - key.created_at > days.saturating_mul(SECONDS_PER_DAY)
        {
            return Some(rules::Deny::new(
                rules::DenyCode::Expired,
                format!("the key is older than the policy's maximum age of {days} days; rotate it"),
            ));
        }
        if self.service_id_keys_need_expiry
            && identity.kind == IdentityKind::ServiceId
            && key.expires_at.is_none()
        {
            return Some(rules::Deny::new(
                rules::DenyCode::Denied,
                "the policy requires an expiry on every key of a service ID",
            ));
        }
        None
    }
}

/// A setting's text as a TOML value, as keyhost passes non-strings.
fn toml_value(text: &str) -> Option<toml::Value> {
    let table: toml::Table = toml::from_str(&format!("value = {text}")).ok()?;
    table.get("value").cloned()
}

/// A TOML array of service names, or one name.
fn service_list(setting: &str, text: &str) -> Result<Vec<String>, String> {
    match toml_value(text) {
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(name) => Ok(name),
                other => Err(format!("{setting} must list service names, not {other:?}")),
            })
            .collect(),
        // A plain string setting arrives as its text, unquoted.
        None if !text.trim().is_empty() => Ok(vec![text.trim().to_string()]),
        _ => Err(format!(
            "{setting} must be a list of service names, not {text:?}"
        )),
    }
}

thread_local! {
    static SETTINGS: std::cell::RefCell<Settings> = std::cell::RefCell::default();
}

struct ExamplePolicy;

impl Guest for ExamplePolicy {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        configure_default_rules(&config)?;
        let settings = Settings::from_pairs(&config)?;
        SETTINGS.with(|cell| *cell.borrow_mut() = settings);
        Ok(())
    }

    fn validate(key: KeyRecord, identity: Identity, request: Request) -> Decision {
        let decision = default_decision(&key, &identity, &request);
        if !matches!(decision, Decision::Allow(_)) {
            return decision;
        }
        match SETTINGS.with(|settings| settings.borrow().decide(&key, &identity, &request)) {
            Some(denial) => deny(denial),
            None => decision,
        }
    }
}

keyhost_policy_sdk::export!(ExamplePolicy with_types_in keyhost_policy_sdk::bindings);
