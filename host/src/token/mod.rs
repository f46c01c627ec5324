//! Access tokens, as IBM Cloud IAM issues them for API keys: a key is
//! exchanged once (`POST /identity/token`) for a short-lived, signed token,
//! and the token then travels instead of the long-lived secret.
//!
//! - `signing`: the ES256 keys that sign tokens, kept beside the registry;
//! - `claims`: what a token says, how it is issued, and the verdict on a
//!   request that carries one.
//!
//! A token is checked with no hash lookup: its signature and expiry, then
//! the key it names, by id, in the registry in force (`admit`), then the
//! policy, as for the key itself (`check::check_token`). So a key disabled,
//! deleted, rotated or marked leaked stops its tokens as soon as the
//! registry change is live (serve reloads within its watch interval).

mod claims;
mod signing;

pub use claims::{Claims, DEFAULT_TTL, admit, effective_scopes, issue, unreadable};
pub use signing::{SigningKeys, TokenVerifier};

/// The grant type of the exchange, as IBM Cloud names it.
pub const API_KEY_GRANT: &str = "urn:ibm:params:oauth:grant-type:apikey";

/// The issuer every token names.
pub const ISSUER: &str = "keyhost";

/// Whether `presented` is shaped like a token (a JWS in compact form) rather
/// than an API key. Keys are `PREFIX_TAG_BODY`: no dots, so never both.
pub fn looks_like_token(presented: &str) -> bool {
    presented.starts_with("eyJ") && presented.bytes().filter(|&b| b == b'.').count() == 2
}

/// Why a token was not accepted. The texts never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWS this keyhost could have written.
    #[error("the token is not well-formed")]
    Malformed,
    /// Signed with a key this keyhost does not know (or no longer trusts).
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not match: the token was changed.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
    /// No signing keys are kept beside this registry: it never issued one.
    #[error("this registry has issued no tokens (no signing keys beside it)")]
    NoKeys,
}
