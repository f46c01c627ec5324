//! The policy the gate was composed with, as the core crate's `Decider`:
//! configured once per instance with the registry's `[policy.config]`, then
//! asked about each key. The records go over, and its answer comes back
//! made safe, through the core crate's one conversion (`policy_conversions!`).

use keyhost_core::check::{CheckRequest, Decider};
use keyhost_core::record::{Identity, KeyRecord};
use keyhost_core::text::policy_text;
use keyhost_core::time::Timestamp;
use keyhost_core::verdict::Decision;

use crate::from_core;
use crate::keyhost::policy::validator;

/// The composed policy.
pub struct Policy;

/// Configures the policy, once per instance; a refusal is remembered and
/// fails every check closed.
pub fn configured(config: impl FnOnce() -> Vec<(String, String)>) -> Result<(), String> {
    static CONFIGURED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CONFIGURED
        .get_or_init(|| {
            validator::configure(&config()).map_err(|refused| {
                format!("the policy refused its settings: {}", policy_text(&refused))
            })
        })
        .clone()
}

impl Decider for Policy {
    type Fault = String;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, String> {
        let answer = validator::validate(
            &from_core::key_record(key),
            &from_core::identity(identity),
            &from_core::request(request, now),
        );
        Ok(from_core::decision(answer))
    }
}
