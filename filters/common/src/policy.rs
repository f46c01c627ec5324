//! What a filter asks about a key: a policy compiled into it.

use keyhost_core::check::Decider;

/// A policy compiled into a filter: configured with the registry's
/// `[policy.config]` whenever a snapshot brings new settings, then asked
/// about each key. Its faults fail the check closed.
pub trait Policy: Decider<Fault = String> {
    /// Takes the settings; an `Err` refuses them, and every check fails
    /// closed until a snapshot brings settings it takes.
    fn configure(&mut self, config: &[(String, String)]) -> Result<(), String>;
}
