//! The sanitiser for text that can come from a policy lives in the core
//! crate, shared with the gate and the filters.

pub use keyhost_core::text::{policy_pairs, policy_text};
