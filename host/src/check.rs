//! The host's entry points to the check pipeline: [`check`] (in the core
//! crate, shared with the gate) for a key, and [`check_token`] for an
//! access token.

use crate::registry::Lookup;
use crate::time::Timestamp;
use crate::token::{self, TokenError, TokenVerifier};
use crate::verdict::{DenyCode, Verdict};

use keyhost_core::check::decide;
pub use keyhost_core::check::{CheckRequest, Decider, Prepared, check, find, prepare};
use keyhost_core::lookup::Found;

/// The verdict on `presented`, an access token, for `request`: its
/// signature and expiry (with `verifier`; none means this registry never
/// issued a token), then the token's own limits (`token::admit`: the key by
/// id in `registry`, its state, the secret it was exchanged for, the
/// token's service and scopes), then `decider`, as for the key itself.
pub fn check_token(
    registry: &(impl Lookup + ?Sized),
    verifier: Option<&TokenVerifier>,
    decider: &mut impl Decider,
    presented: &str,
    request: &CheckRequest,
) -> Verdict {
    match find_token(registry, verifier, presented, request) {
        Ok(found) => decide(Some(found), decider, request),
        Err(refused) => refused,
    }
}

/// The first steps of [`check_token`]: the token's signature, expiry and
/// limits. The key it names, or the verdict on a token refused.
pub fn find_token<'r, L: Lookup + ?Sized>(
    registry: &'r L,
    verifier: Option<&TokenVerifier>,
    presented: &str,
    request: &CheckRequest,
) -> Result<Found<'r>, Verdict> {
    let now = request.now.unwrap_or_else(Timestamp::now);
    let claims = verifier
        .ok_or(TokenError::NoKeys)
        .and_then(|v| v.verify(presented, now))
        .map_err(|refused| Verdict::deny(DenyCode::NotFound, refused.to_string(), None))?;
    token::admit(&claims, registry, request, now)
}
