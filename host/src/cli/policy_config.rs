//! `keyhost policy config show|set|unset`: the registry's `[policy.config]`,
//! the settings the policy's `configure` gets, changed through the same
//! locked, durable write as every other change (and so with a new revision).

use std::fmt::Write as _;

use anyhow::{Result, bail};
use serde_json::json;

use super::Report;
use super::args::PolicyConfigCommand;
use crate::registry::RegistryFile;

pub fn run(command: PolicyConfigCommand, file: &RegistryFile) -> Result<Report> {
    match command {
        PolicyConfigCommand::Show => show(file),
        PolicyConfigCommand::Set {
            name,
            value,
            string,
        } => {
            check_name(&name)?;
            let value = if string {
                toml::Value::String(value)
            } else {
                toml_value(&value)
            };
            let shown = value.to_string();
            let ((), revision) = file.update(|registry| {
                registry.policy.config.insert(name.clone(), value);
                Ok(())
            })?;
            Ok(Report::new(
                json!({ "set": name, "value": shown, "revision": revision }),
                format!("{name} = {shown} (revision {revision})"),
            ))
        }
        PolicyConfigCommand::Unset { name } => {
            let ((), revision) = file.update(|registry| {
                if registry.policy.config.remove(&name).is_none() {
                    bail!("[policy.config] has no setting {name:?}");
                }
                Ok(())
            })?;
            Ok(Report::new(
                json!({ "unset": name, "revision": revision }),
                format!("{name} removed (revision {revision})"),
            ))
        }
    }
}

fn show(file: &RegistryFile) -> Result<Report> {
    let registry = file.load()?;
    let config = &registry.policy.config;
    let mut text = String::new();
    for (name, value) in config {
        let _ = writeln!(text, "{name} = {value}");
    }
    if config.is_empty() {
        text.push_str("(no settings)");
    }
    Ok(Report::new(
        json!({ "config": config, "revision": registry.revision }),
        text.trim_end().to_string(),
    ))
}

/// Names are TOML bare keys, so the table reads the same by hand.
fn check_name(name: &str) -> Result<()> {
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(bare) {
        bail!("{name:?} is not a setting name (letters, digits, `_` and `-`)");
    }
    Ok(())
}

/// `text` as a TOML value (`90`, `true`, `["a", "b"]`), or else as a string.
fn toml_value(text: &str) -> toml::Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_when_they_parse_and_strings_otherwise() {
        assert_eq!(toml_value("90"), toml::Value::Integer(90));
        assert_eq!(toml_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            toml_value("[\"a\", \"b\"]").to_string(),
            "[\"a\", \"b\"]".to_string()
        );
        assert_eq!(
            toml_value("legacy-billing"),
            toml::Value::String("legacy-billing".into())
        );
        assert_eq!(toml_value("\"90\""), toml::Value::String("90".into()));
    }

    #[test]
    fn names_are_bare_keys() {
        assert!(check_name("max_key_age_days").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a.b").is_err());
    }
}
