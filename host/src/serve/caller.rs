//! Who is calling the management API: a key (or a token) valid for the
//! service `keyhost` with the scope the route needs, checked like any other
//! through the policy. A user's key acts as that user, bounded by the key
//! itself ([`Ceiling`]); a write through it keeps to the request deadline up
//! to its commit.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};

use super::AppState;
use super::auth::{client_ip, deny_status, presented_key};
use super::errors::ApiError;
use crate::ceiling::Ceiling;
use crate::check::CheckRequest;
use crate::iam::{IamId, KeyKind};
use crate::lifecycle::{self, LifecycleError, Precondition};
use crate::registry::{Committed, Lookup, OlderCopy, Registry, RegistryFile, Touches};
use crate::verdict::{DenyCode, Verdict};

/// The service a key must be valid for to use the management API.
pub const MANAGEMENT_SERVICE: &str = "keyhost";
/// The scope that reading keys takes.
pub const READ_SCOPE: &str = crate::registry::MANAGEMENT_SCOPES[0];
/// The scope that changing keys takes.
pub const WRITE_SCOPE: &str = crate::registry::MANAGEMENT_SCOPES[1];

/// The caller: the user its key acts as, the bounds of that key, and the
/// deadline of its request.
pub struct Caller {
    pub(super) user: IamId,
    pub(super) ceiling: Ceiling,
    pub(super) deadline: Instant,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        Caller::checked(parts, state, Counted::Yes).await
    }
}

/// A write's `If-Match`: the version of the record it may change. Several
/// `If-Match` lines are one list (RFC 9110, 5.3); a value that does not
/// read is a `400`, and nothing is written.
pub struct IfMatch(pub Precondition);

impl FromRequestParts<AppState> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<IfMatch, ApiError> {
        let mut lines = Vec::new();
        for value in parts.headers.get_all(header::IF_MATCH) {
            let line = value.to_str().map_err(|_| {
                ApiError::bad_request("If-Match is not plain text; nothing was written")
            })?;
            lines.push(line);
        }
        if lines.is_empty() {
            return Ok(IfMatch(Precondition::None));
        }
        Precondition::parse(&lines.join(","))
            .map(IfMatch)
            .map_err(|why| ApiError::bad_request(format!("If-Match: {why}; nothing was written")))
    }
}

/// Whether a caller's check counts as a use of its key (its rate limit,
/// usage and metrics).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    Yes,
    /// A replica checking a write it forwards: the primary counts it.
    No,
}

impl Caller {
    /// The caller of a management request, checked as the API checks it.
    pub(super) async fn checked(
        parts: &Parts,
        state: &AppState,
        counted: Counted,
    ) -> Result<Caller, ApiError> {
        let deadline = Instant::now() + state.request_timeout;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or_else(|| ApiError::bad_request("no peer address"))?;
        let scope = if parts.method == Method::GET {
            READ_SCOPE
        } else {
            WRITE_SCOPE
        };
        let request = CheckRequest {
            service: Some(MANAGEMENT_SERVICE.into()),
            scope: Some(scope.into()),
            source_ip: Some(client_ip(&parts.headers, &state.auth, peer).to_string()),
            method: Some(parts.method.to_string()),
            path: Some(parts.uri.path().to_string()),
            ..CheckRequest::default()
        };
        let presented = presented_key(&parts.headers, &state.auth);
        let evaluated = match counted {
            Counted::Yes => state.evaluate(presented.as_deref(), &request).await,
            Counted::No => state.uncounted(presented.as_deref(), &request).await,
        };
        let key = match evaluated.verdict {
            Verdict::Allow { key, .. } => key,
            // A key of another kind lacks the management scopes because
            // only a user's key manages keys: say the rule, not the scope.
            Verdict::Deny {
                code: DenyCode::InsufficientScope,
                key: Some(key),
                ..
            } if key.kind != KeyKind::User => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "refused",
                    format!("only a user's key manages keys; this is a {} key", key.kind),
                ));
            }
            Verdict::Deny { code, reason, .. } => {
                return Err(ApiError {
                    code: Some(code.as_str()),
                    ..ApiError::new(deny_status(code), "unauthorized", reason)
                });
            }
        };
        if key.kind != KeyKind::User {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "refused",
                format!("only a user's key manages keys; this is a {} key", key.kind),
            ));
        }
        let Some(found) = &evaluated.found else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an allowed key came without its record",
            ));
        };
        Ok(Caller {
            user: key.owner.parse().map_err(ApiError::bad_request)?,
            ceiling: Ceiling::of(&found.key),
            deadline,
        })
    }

    /// [`write`](Self::write) to key `id` alone, made only if the key
    /// stands as `precondition` (the request's `If-Match`) asks: checked in
    /// the write, under the registry's lock.
    pub(super) async fn write_key<T: Send + 'static>(
        &self,
        state: &AppState,
        id: &str,
        precondition: Precondition,
        change: impl FnOnce(&mut Registry, &IamId) -> Result<T, LifecycleError> + Send + 'static,
    ) -> Result<(T, u64), ApiError> {
        let target = id.to_string();
        self.write(
            state,
            Touches::Key(id.to_string()),
            move |registry, user| {
                // The rules of the change come first, as for a stale tag.
                let required = precondition.is_none() && registry.rules.require_if_match;
                let value = lifecycle::on_key(registry, &target, &precondition, |registry| {
                    change(registry, user)
                })?;
                if required {
                    return Err(LifecycleError::PreconditionRequired(target));
                }
                Ok(value)
            },
        )
        .await
    }

    /// Runs a registry change off the async threads (it locks and fsyncs),
    /// checks what it made against the caller's ceiling, commits it before
    /// the deadline or not at all, and makes it live at once.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        state: &AppState,
        touches: Touches,
        change: impl FnOnce(&mut Registry, &IamId) -> Result<T, LifecycleError> + Send + 'static,
    ) -> Result<(T, u64), ApiError> {
        write_keys(state, self.deadline, self.user.clone(), touches, change).await
    }
}

/// A write of keys alone made as `actor`, which reads and changes what
/// `touches` says, committed by `deadline` or not at all, and live at once.
/// A caller's writes are made so; so is a change no caller's key makes (a
/// leak GitHub reports), as the key's manager.
pub(super) async fn write_keys<T: Send + 'static>(
    state: &AppState,
    deadline: Instant,
    actor: IamId,
    touches: Touches,
    change: impl FnOnce(&mut Registry, &IamId) -> Result<T, LifecycleError> + Send + 'static,
) -> Result<(T, u64), ApiError> {
    commit_in_force(state, move |file, in_force| {
        file.commit_keys(Some(deadline), &actor, touches, |registry| {
            not_older(registry, in_force)?;
            Ok(change(registry, &actor)?)
        })
    })
    .await
}

/// Runs `commit` (a write of the registry file, given the revision in
/// force) off the async threads, and puts what it committed in force. The
/// task runs to its end even if the request is dropped, so its outcome,
/// commit or not, is what the answer says.
async fn commit_in_force<T: Send + 'static>(
    state: &AppState,
    commit: impl FnOnce(&RegistryFile, u64) -> anyhow::Result<Committed<T>> + Send + 'static,
) -> Result<(T, u64), ApiError> {
    let shared = state.shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _in_flight = shared.start_write();
        let in_force = shared.checker().revision();
        let Committed {
            value,
            revision,
            written,
            base,
            stamp,
        } = commit(&shared.registry_file, in_force)?;
        shared.take_committed(written, &base, stamp);
        Ok::<_, anyhow::Error>((value, revision))
    })
    .await
    .map_err(|e| ApiError::from(anyhow::anyhow!("the write task failed: {e}")))?;
    Ok(result?)
}

/// An older copy put in place of the registry is refused as a reload would
/// refuse it: a change made to it would bring back what was revoked since,
/// and never be in force.
fn not_older(registry: &Registry, in_force: u64) -> anyhow::Result<()> {
    if registry.revision < in_force {
        return Err(OlderCopy {
            found: registry.revision,
            in_force,
        }
        .into());
    }
    Ok(())
}
