//! What people and programs are shown of identities and keys: never a secret,
//! never a hash.

use serde::Serialize;

use crate::iam::KeyKind;
use crate::key_format::Secret;
use crate::lifecycle::EntityTag;
use crate::registry::{Identity, KeyRecord};
use crate::time::Timestamp;
use crate::usage::Usage;

#[derive(Clone, Debug, Serialize)]
/// An identity as people and programs see it.
pub struct IdentityView {
    /// The IAM id.
    pub iam_id: String,
    /// `user` or `service-id`.
    pub kind: &'static str,
    /// A service ID's owner.
    pub owner: Option<String>,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// Its version, for `--if-match`.
    pub entity_tag: String,
}

impl IdentityView {
    /// The view of `identity`.
    pub fn of(identity: &Identity) -> IdentityView {
        IdentityView {
            iam_id: identity.iam_id.to_string(),
            kind: identity.kind().as_str(),
            owner: identity.owner.as_ref().map(|o| o.to_string()),
            scopes: identity.scopes.clone(),
            created_at: identity.created_at.to_string(),
            entity_tag: EntityTag::of_identity(identity).to_string(),
        }
    }
}

/// The one answer that carries a secret: after a create or a rotate.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedSecret {
    /// The key's id.
    pub id: String,
    /// The secret, shown this once.
    pub key: String,
    /// The key's kind.
    #[schema(value_type = String)]
    pub kind: KeyKind,
    /// Its identity.
    pub owner: String,
    /// The key as it now stands.
    pub record: KeyView,
    /// The registry's revision with the key in it.
    pub revision: u64,
}

impl IssuedSecret {
    /// The answer for `secret`, just issued for `record`.
    pub fn of(record: &KeyRecord, secret: &Secret, revision: u64, now: Timestamp) -> IssuedSecret {
        IssuedSecret {
            id: record.id.clone(),
            key: secret.expose().to_string(),
            kind: record.kind,
            owner: record.owner.to_string(),
            record: KeyView::of(record, now),
            revision,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
/// A key as people and programs see it: never its secret or hash.
pub struct KeyView {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    #[schema(value_type = String)]
    pub kind: KeyKind,
    /// Its identity.
    pub owner: String,
    /// A service-specific key's service.
    pub service: Option<String>,
    /// Its description.
    pub description: String,
    /// `active`, `locked`, `disabled`, `leaked` or `expired`.
    pub state: &'static str,
    /// Protected against change.
    pub locked: bool,
    /// Does not authenticate.
    pub disabled: bool,
    /// Found exposed.
    pub leaked: bool,
    /// Past its expiry.
    pub expired: bool,
    /// Its own scopes.
    pub scopes: Vec<String>,
    /// The CIDRs it may be used from.
    pub allowed_ips: Vec<String>,
    /// Its rate limit.
    pub rate_limit: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it expires.
    pub expires_at: Option<String>,
    /// Until when the previous secret still works after a rotation.
    pub rotation_grace_until: Option<String>,
    /// When `keyhost serve` last let the key through.
    pub last_used: Option<String>,
    /// The service that use named, if it named one.
    pub last_service: Option<String>,
    /// The client address that use came from, if serve knew it.
    pub last_address: Option<String>,
    /// How often `keyhost serve` let the key through.
    pub use_count: u64,
    /// Its version, for `If-Match` and `--if-match` (the `ETag` of its
    /// API answers).
    pub entity_tag: String,
}

impl KeyView {
    /// The view of `key` at `now`.
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
            rate_limit: key.rate_limit.map(|limit| limit.to_string()),
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
            last_service: None,
            last_address: None,
            use_count: 0,
            entity_tag: EntityTag::of_key(key).to_string(),
        }
    }

    /// Adds the live use count and last use.
    pub fn with_usage(mut self, usage: Option<&Usage>) -> KeyView {
        if let Some(usage) = usage {
            self.last_used = usage.last_used.map(|t| t.to_string());
            self.last_service = usage.last_authn.service.clone();
            self.last_address = usage.last_authn.address.clone();
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
        if self.last_service.is_some() || self.last_address.is_some() {
            lines.push(format!(
                "last use:    service {} from {}",
                self.last_service.as_deref().unwrap_or("(none)"),
                self.last_address.as_deref().unwrap_or("(unknown)")
            ));
        }
        if let Some(until) = &self.rotation_grace_until {
            lines.push(format!("old secret valid until: {until}"));
        }
        lines.join("\n")
    }
}
