//! `keyhost check`, for a key or an access token, and `keyhost token`.

use anyhow::Result;
use serde_json::json;

use super::args::{CheckArgs, TokenCommand};
use super::input::read_presented_key;
use super::{EXIT_DENIED, Report};
use crate::check::{CheckRequest, check_token};
use crate::policy::PolicySlot;
use crate::registry::{self, RegistryFile};
use crate::time::Timestamp;
use crate::token::{SigningKeys, TokenVerifier};
use crate::verdict::Verdict;

pub fn token(file: &RegistryFile, command: TokenCommand, now: Timestamp) -> Result<Report> {
    match command {
        TokenCommand::RotateSigningKey { overlap } => {
            let kid = SigningKeys::rotate(file.path(), overlap, now)?;
            Ok(Report::new(
                json!({ "kid": kid, "overlap_seconds": overlap.as_secs() }),
                format!(
                    "new signing key {kid}; the previous one verifies for {} more",
                    humantime::format_duration(overlap)
                ),
            ))
        }
        TokenCommand::Keys => {
            let jwks = match TokenVerifier::open(file.path())? {
                Some(keys) => keys.jwks(now),
                None => jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            };
            let jwks = serde_json::to_value(jwks).expect("a JWKS serializes");
            let text = serde_json::to_string_pretty(&jwks).expect("JSON prints");
            Ok(Report::new(jwks, text))
        }
    }
}

pub fn check(file: &RegistryFile, args: CheckArgs, now: Timestamp) -> Result<Report> {
    let presented = read_presented_key()?;
    let request = CheckRequest {
        service: args.service,
        scope: args.scope,
        source_ip: args.ip,
        method: args.method,
        path: args.path,
        attributes: args.attributes,
        now: Some(now),
    };
    let engine = super::policy::engine()?;
    let policy = match &args.policy {
        Some(path) => engine.load_file(path)?,
        None => engine.load_default()?,
    };
    // A large registry is not parsed on every check: its snapshot is read
    // instead, and made again when the registry changes.
    let lookup = registry::open_for_check(file, crate::side_files::cache_root().as_deref())?;
    if crate::token::looks_like_token(&presented) {
        // A token names its key by id, and is verified with the public
        // keys beside the registry.
        let mut slot = PolicySlot::new(policy, lookup.policy_config());
        let verifier = TokenVerifier::open(file.path())?;
        let verdict = check_token(&*lookup, verifier.as_ref(), &mut slot, &presented, &request);
        return Ok(verdict_report(&verdict, lookup.revision()));
    }
    let mut slot = PolicySlot::new(policy, lookup.policy_config());
    let verdict = crate::check::check(&*lookup, &mut slot, &presented, &request)?;
    // The process ends with this report: the kernel takes back the policy's
    // code, memory and stack at exit faster than their destructors unmap
    // them one by one (about 0.1 ms of a check).
    std::mem::forget((slot, engine));
    Ok(verdict_report(&verdict, lookup.revision()))
}

fn verdict_report(verdict: &Verdict, revision: u64) -> Report {
    let mut json = serde_json::to_value(verdict.view()).expect("a verdict serializes");
    json["revision"] = revision.into();
    match verdict {
        Verdict::Allow { key, info } => {
            let report = Report::new(json, format!("allow {} {}", key.key_id, key.owner));
            if info.is_empty() {
                return report;
            }
            let pairs: Vec<String> = info.iter().map(|(n, v)| format!("{n}={v}")).collect();
            report.with_note(format!("info: {}", pairs.join(", ")))
        }
        Verdict::Deny { code, reason, .. } => Report::new(json, format!("deny {}", code.as_str()))
            .with_note(format!("reason: {reason}"))
            .with_exit(EXIT_DENIED),
    }
}
