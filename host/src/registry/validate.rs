//! Checks that hold across a registry's entries, which serde alone cannot
//! see: unique ids, existing owners, kinds that fit their identity.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};

use super::{FORMAT_VERSION, OLDEST_FORMAT_VERSION, Registry, line_of};
use crate::fields;
use crate::iam::{IdentityKind, KeyKind};
use crate::key_format;

impl Registry {
    /// Checks the registry read from `text`; errors name the entry and, where
    /// it can be found, the line.
    pub(super) fn check_consistency(&self, text: &str) -> Result<()> {
        // Finding the line scans the text, so it is done only for an error.
        let at = |needle: &str| match line_of(text, needle) {
            Some(line) => format!("line {line}: "),
            None => String::new(),
        };
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.version) {
            bail!(
                "{}unsupported registry version {} (this keyhost reads versions \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                at("version"),
                self.version
            );
        }
        if let Err(message) = key_format::validate_prefix(&self.prefix) {
            bail!("{}{message}", at("prefix"));
        }
        // Identities by IAM id, so the checks below stay linear in the size
        // of the registry (a million keys of fifty thousand identities).
        let mut identities: HashMap<&str, IdentityKind> = HashMap::new();
        for identity in &self.identities {
            let id = identity.iam_id.as_str();
            if identities.insert(id, identity.kind()).is_some() {
                bail!("{}identity {id} appears twice", at(&format!("\"{id}\"")));
            }
        }
        for identity in &self.identities {
            let id = identity.iam_id.as_str();
            let here = || at(&format!("\"{id}\""));
            // Written by hand, perhaps: what every write checks is checked
            // here too, before it reaches a terminal.
            for scope in &identity.scopes {
                if let Err(bad) = fields::safe_chars("scope", scope) {
                    bail!("{}identity {id}: {bad}", here());
                }
            }
            match (identity.kind(), &identity.owner) {
                (IdentityKind::User, Some(_)) => bail!("{}user {id} cannot have an owner", here()),
                (IdentityKind::ServiceId, None) => {
                    bail!(
                        "{}service ID {id} needs an owner (owner = \"user:NAME\")",
                        here()
                    )
                }
                (IdentityKind::ServiceId, Some(owner)) => {
                    let owner_is_user = identities.get(owner.as_str()) == Some(&IdentityKind::User);
                    if !owner_is_user {
                        bail!(
                            "{}service ID {id} is owned by {owner}, which is not a user of this registry",
                            here()
                        );
                    }
                }
                (IdentityKind::User, None) => {}
            }
        }
        let mut key_ids = HashSet::new();
        let mut hashes = HashSet::new();
        for key in &self.keys {
            let id = key.id.as_str();
            let here = || at(&format!("\"{id}\""));
            if !key_ids.insert(id) {
                bail!("{}key id {id} appears twice", here());
            }
            let texts = [("name", &key.name), ("description", &key.description)]
                .into_iter()
                .chain(key.service.iter().map(|service| ("service", service)))
                .chain(key.scopes.iter().map(|scope| ("scope", scope)));
            for (field, value) in texts {
                if let Err(bad) = fields::safe_chars(field, value) {
                    bail!("{}key {id}: {bad}", here());
                }
            }
            let Some(&identity_kind) = identities.get(key.owner.as_str()) else {
                bail!(
                    "{}key {id} belongs to {}, which is not an identity of this registry",
                    here(),
                    key.owner
                );
            };
            if !key.kind.fits(identity_kind) {
                bail!(
                    "{}key {id} is a {} key, which a {} cannot hold",
                    here(),
                    key.kind,
                    identity_kind.as_str()
                );
            }
            if (key.kind == KeyKind::ServiceSpecific) != key.service.is_some() {
                bail!(
                    "{}key {id}: `service` is set exactly when the kind is service-specific",
                    here()
                );
            }
            for hash in std::iter::once(&key.hash).chain(key.retired.iter().map(|r| &r.hash)) {
                if !hashes.insert(hash) {
                    bail!("{}key {id}: its hash is also another key's", here());
                }
            }
            for entry in &key.allowed_ips {
                if let Err(message) = crate::net::parse_cidr(entry) {
                    bail!("{}key {id}: {message}", here());
                }
            }
        }
        Ok(())
    }
}
