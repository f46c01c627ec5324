//! IAM identities (`user:NAME`, `service-id:NAME`) and the four kinds of key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of an identity, read from its IAM id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    /// A person, `user:NAME`.
    User,
    /// An application identity, `service-id:NAME`.
    ServiceId,
}

impl IdentityKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::ServiceId => "service-id",
        }
    }
}

/// An IAM id such as `user:alice` or `service-id:billing`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IamId(String);

impl IamId {
    /// Whether this id names a user or a service ID.
    pub fn kind(&self) -> IdentityKind {
        if self.0.starts_with("user:") {
            IdentityKind::User
        } else {
            IdentityKind::ServiceId
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IamId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, name) = text.split_once(':').ok_or_else(|| {
            format!("{text:?} is not an IAM id: expected user:NAME or service-id:NAME")
        })?;
        if kind != "user" && kind != "service-id" {
            return Err(format!(
                "{text:?} is not an IAM id: the kind must be `user` or `service-id`, not {kind:?}"
            ));
        }
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !name_ok {
            return Err(format!(
                "{text:?} is not an IAM id: the name must be 1 to 128 letters, digits, '.', '_', '-' or '@'"
            ));
        }
        Ok(IamId(text.to_string()))
    }
}

impl TryFrom<String> for IamId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<IamId> for String {
    fn from(id: IamId) -> String {
        id.0
    }
}

impl fmt::Display for IamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The four kinds of API key (docs/src/design.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// Acts as its user on any service, classic infrastructure included.
    User,
    /// Belongs to a service ID; not valid for classic infrastructure.
    ServiceId,
    /// A user's one key for the service `classic-infrastructure`.
    ClassicInfrastructure,
    /// Bound to one named service.
    ServiceSpecific,
}

impl KeyKind {
    /// Every kind.
    pub const ALL: [KeyKind; 4] = [
        KeyKind::User,
        KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific,
    ];

    /// The kinds' names, as [`KeyKind::as_str`] gives them.
    pub const NAMES: [&'static str; 4] = [
        "user",
        "service-id",
        "classic-infrastructure",
        "service-specific",
    ];

    /// The kind's name (`service-id`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::User => "user",
            KeyKind::ServiceId => "service-id",
            KeyKind::ClassicInfrastructure => "classic-infrastructure",
            KeyKind::ServiceSpecific => "service-specific",
        }
    }

    /// The short tag that names the kind inside a secret.
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::User => "usr",
            KeyKind::ServiceId => "sid",
            KeyKind::ClassicInfrastructure => "cls",
            KeyKind::ServiceSpecific => "svc",
        }
    }

    /// The kind a secret's tag names.
    pub fn from_tag(tag: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    /// Whether a key of this kind may belong to an identity of `identity`'s kind.
    pub fn fits(self, identity: IdentityKind) -> bool {
        match self {
            KeyKind::User | KeyKind::ClassicInfrastructure => identity == IdentityKind::User,
            KeyKind::ServiceId => identity == IdentityKind::ServiceId,
            KeyKind::ServiceSpecific => true,
        }
    }

    /// The kind a key gets when none is asked for.
    pub fn default_for(identity: IdentityKind) -> KeyKind {
        match identity {
            IdentityKind::User => KeyKind::User,
            IdentityKind::ServiceId => KeyKind::ServiceId,
        }
    }
}

impl FromStr for KeyKind {
    type Err = String;

    fn from_str(name: &str) -> Result<KeyKind, String> {
        KeyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a kind of key; the kinds are {}",
                    KeyKind::NAMES.join(", ")
                )
            })
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_ids_parse_and_refuse() {
        let user: IamId = "user:alice".parse().unwrap();
        assert_eq!(user.kind(), IdentityKind::User);
        let sid: IamId = "service-id:ci-bot".parse().unwrap();
        assert_eq!(sid.kind(), IdentityKind::ServiceId);
        assert!("alice".parse::<IamId>().is_err());
        assert!("group:x".parse::<IamId>().is_err());
        assert!("user:".parse::<IamId>().is_err());
        assert!("user:a b".parse::<IamId>().is_err());
    }

    #[test]
    fn tags_round_trip() {
        for kind in KeyKind::ALL {
            assert_eq!(KeyKind::from_tag(kind.tag()), Some(kind));
        }
        assert_eq!(KeyKind::from_tag("xyz"), None);
    }
}
