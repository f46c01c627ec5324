//! What people and programs are shown of identities and keys: never a secret,
//! never a hash.

use serde::Serialize;

use crate::iam::KeyKind;
use crate::key_format::Secret;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::usage::Usage;

#[derive(Clone, Debug, Serialize)]
pub struct IdentityView {
    pub iam_id: String,
    pub kind: &'static str,
    pub owner: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
}

impl IdentityView {
    pub fn of(identity: &Identity) -> IdentityView {
        IdentityView {
            iam_id: identity.iam_id.to_string(),
            kind: identity.kind().as_str(),
            owner: identity.owner.as_ref().map(|o| o.to_string()),
            scopes: identity.scopes.clone(),
            created_at: identity.created_at.to_string(),
        }
    }
}

/// The one response that carries a secret: after a create or a rotate.
pub fn issued_secret(
    record: &KeyRecord,
    secret: &Secret,
    revision: u64,
    now: Timestamp,
) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "key": secret.expose(),
        "kind": record.kind,
        "owner": record.owner.to_string(),
        "record": KeyView::of(record, now),
        "revision": revision,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub kind: KeyKind,
    pub owner: String,
    pub service: Option<String>,
    pub description: String,
    pub state: &'static str,
    pub locked: bool,
    pub disabled: bool,
    pub leaked: bool,
    pub expired: bool,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub rate_limit: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    /// Until when the previous secret still works after a rotation.
    pub rotation_grace_until: Option<String>,
    /// When `keyhost serve` last let the key through.
    pub last_used: Option<String>,
    /// How often `keyhost serve` let the key through.
    pub use_count: u64,
}

impl KeyView {
    pub fn of(key: &KeyRecord, now: Timestamp) -> KeyView {
        KeyView {
            id: key.id.clone(),
            name: key.name.clone(),
            kind: key.kind,
            owner: key.owner.to_string(),
            service: key.service.clone(),
            description: key.description.clone(),
            state: key.state(now),
            locked: key.locked,
            disabled: key.disabled,
            leaked: key.leaked,
            expired: key.is_expired(now),
            scopes: key.scopes.clone(),
            allowed_ips: key.allowed_ips.clone(),
            rate_limit: key.rate_limit.clone(),
            created_at: key.created_at.to_string(),
            updated_at: key.updated_at.to_string(),
            expires_at: key.expires_at.map(|t| t.to_string()),
            rotation_grace_until: key
                .retired
                .iter()
                .map(|r| r.valid_until)
                .filter(|until| *until > now)
                .max()
                .map(|t| t.to_string()),
            last_used: None,
            use_count: 0,
        }
    }

    pub fn with_usage(mut self, usage: Option<&Usage>) -> KeyView {
        if let Some(usage) = usage {
            self.last_used = usage.last_used.map(|t| t.to_string());
            self.use_count = usage.count;
        }
        self
    }

    /// One line for `keyhost list`.
    pub fn summary(&self) -> String {
        let service = self
            .service
            .as_deref()
            .map(|s| format!(" service={s}"))
            .unwrap_or_default();
        format!(
            "{}  {:<8}  {:<22}  {:<24}  {}{service}",
            self.id,
            self.state,
            self.kind.as_str(),
            self.owner,
            self.name
        )
    }

    /// Several lines for `keyhost show`.
    pub fn details(&self) -> String {
        let list = |items: &[String]| {
            if items.is_empty() {
                "(all)".to_string()
            } else {
                items.join(", ")
            }
        };
        let mut lines = vec![
            format!("id:          {}", self.id),
            format!("name:        {}", self.name),
            format!("kind:        {}", self.kind),
            format!("owner:       {}", self.owner),
            format!("state:       {}", self.state),
            format!("locked:      {}", self.locked),
            format!("disabled:    {}", self.disabled),
            format!("leaked:      {}", self.leaked),
            format!("scopes:      {}", list(&self.scopes)),
            format!(
                "allowed ips: {}",
                if self.allowed_ips.is_empty() {
                    "(any)".into()
                } else {
                    self.allowed_ips.join(", ")
                }
            ),
            format!("created:     {}", self.created_at),
            format!("updated:     {}", self.updated_at),
            format!(
                "expires:     {}",
                self.expires_at.as_deref().unwrap_or("never")
            ),
        ];
        if let Some(service) = &self.service {
            lines.insert(4, format!("service:     {service}"));
        }
        if !self.description.is_empty() {
            lines.push(format!("description: {}", self.description));
        }
        lines.push(format!(
            "last used:   {} ({} uses)",
            self.last_used.as_deref().unwrap_or("never"),
            self.use_count
        ));
        if let Some(until) = &self.rotation_grace_until {
            lines.push(format!("old secret valid until: {until}"));
        }
        lines.join("\n")
    }
}
