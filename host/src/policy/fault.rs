//! Why a call into a policy failed. A check fails closed on any of them.

/// A policy failure. Every text in it has been through the sanitiser
/// (`text.rs`): it may quote what the policy returned or named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFault {
    /// The policy ran, and its `configure` refused the registry's
    /// `[policy.config]`.
    #[error("policy {label}: refused its configuration: {message}")]
    RefusedConfiguration {
        /// Which policy.
        label: String,
        /// The policy's own message.
        message: String,
    },
    /// The call trapped, ran out of time, overflowed its stack or failed to
    /// instantiate.
    #[error("policy {label}: {reason}")]
    Failed {
        /// Which policy.
        label: String,
        /// What happened, and during which call.
        reason: String,
    },
    /// Every instance the pool may hold was busy for the whole wait.
    #[error("policy {label}: all {max} instances of the policy are busy")]
    Busy {
        /// Which policy.
        label: String,
        /// The pool's cap.
        max: usize,
    },
}

impl PolicyFault {
    /// What went wrong, without the policy's label.
    pub fn reason(&self) -> String {
        match self {
            PolicyFault::RefusedConfiguration { message, .. } => {
                format!("refused its configuration: {message}")
            }
            PolicyFault::Failed { reason, .. } => reason.clone(),
            PolicyFault::Busy { max, .. } => format!("all {max} instances of the policy are busy"),
        }
    }
}
