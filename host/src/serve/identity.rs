//! IBM Cloud IAM's token endpoints: `POST /identity/token` exchanges an API
//! key for a short-lived access token, and `GET /identity/keys` publishes
//! the public keys that verify tokens (a JWKS), so a service can check a
//! token offline.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::client_ip;
use super::openapi::{JwkSet, OAuthError};
use crate::check::CheckRequest;
use crate::key_format;
use crate::registry::KeyHash;
use crate::time::Timestamp;
use crate::token::{self, API_KEY_GRANT};
use crate::verdict::{DenyCode, Verdict};

/// The service a token is for when the request names none.
const DEFAULT_SERVICE: &str = "keyhost";

/// The form of `POST /identity/token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    grant_type: Option<String>,
    apikey: Option<String>,
    /// The service the token is for; `keyhost` (the management API and the
    /// console) when unset.
    service: Option<String>,
}

/// An OAuth error answer.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    // Redacted as every error message is: it may quote what was sent.
    let description = key_format::redact(&description.into());
    let body = json!({ "error": error, "error_description": description });
    no_store((status, Json(body)).into_response())
}

/// An answer that carries a token (RFC 6749, 5.1) or a new secret is
/// never cached.
pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A token's answer (RFC 6749, 5.1), in IBM Cloud IAM's shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    /// An ES256 JWT.
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: i64,
    /// When it expires (Unix seconds).
    expiration: i64,
    /// The scopes it carries, space-separated.
    scope: String,
}

/// `POST /identity/token`: checks the key through the policy, for the
/// service asked for, and answers a token for what it was allowed.
#[utoipa::path(
    post,
    path = "/identity/token",
    tag = "tokens",
    description = "Exchanges an API key for a short-lived access token, as IBM \
        Cloud IAM's `grant_type=urn:ibm:params:oauth:grant-type:apikey`.",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token", body = TokenAnswer),
        (status = 400, description = "A malformed request", body = OAuthError),
        (status = 401, description = "The key was refused", body = OAuthError),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(FormRejection::InvalidFormContentType(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send grant_type and apikey as application/x-www-form-urlencoded",
            );
        }
        // Says what is wrong with a form that was sent as one: a field
        // given twice, a value that is not UTF-8.
        Err(rejection) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the form cannot be read: {}", rejection.body_text()),
            );
        }
    };
    if form.grant_type.as_deref() != Some(API_KEY_GRANT) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("the grant type must be {API_KEY_GRANT}"),
        );
    }
    let Some(apikey) = form.apikey.filter(|key| !key.trim().is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "apikey is missing",
        );
    };
    if token::looks_like_token(apikey.trim()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "a token cannot be exchanged for another; send the API key",
        );
    }
    let service = form
        .service
        .filter(|service| !service.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
    let request = CheckRequest {
        service: Some(service.clone()),
        source_ip: Some(client_ip(&headers, &state.auth, peer.ip()).to_string()),
        method: Some("POST".into()),
        path: Some("/identity/token".into()),
        ..CheckRequest::default()
    };
    let evaluated = state.evaluate(Some(apikey.trim()), &request).await;
    match &evaluated.verdict {
        Verdict::Allow { .. } => {}
        Verdict::Deny { code, reason, .. } => {
            // An unknown or malformed key is not a credential at all: 401.
            // A known key the rules refuse is a grant that is not valid: 400.
            let status = match code {
                DenyCode::NotFound | DenyCode::Malformed => StatusCode::UNAUTHORIZED,
                DenyCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                // The policy or the registry failed: the server's fault,
                // not the key's.
                DenyCode::PolicyError => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            let error = match status {
                StatusCode::UNAUTHORIZED => "invalid_client",
                StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
                _ => "invalid_grant",
            };
            let mut refused = oauth_error(status, error, format!("{}: {reason}", code.as_str()));
            // Every 429 keyhost sends says when to try again.
            if let Some(wait) = evaluated.retry_after {
                refused
                    .headers_mut()
                    .insert(header::RETRY_AFTER, super::auth::retry_after_value(wait));
            }
            return refused;
        }
    }
    let Some(found) = &evaluated.found else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "an allowed key came without its record",
        );
    };
    let record = &*found.key;
    let Some(identity) = found.identity.as_deref() else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the key's identity no longer exists",
        );
    };
    let now = Timestamp::now();
    let issued = token::issue(
        &state.shared.signing_keys(),
        record,
        identity,
        &KeyHash::of(apikey.trim()),
        &service,
        evaluated.revision,
        state.shared.token_ttl,
        now,
    );
    match issued {
        Ok((access_token, claims)) => no_store(
            Json(TokenAnswer {
                access_token,
                token_type: "Bearer",
                expires_in: claims.exp - now.0,
                expiration: claims.exp,
                scope: claims.scope,
            })
            .into_response(),
        ),
        Err(e) => {
            tracing::error!("cannot issue a token: {e:#}");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be signed",
            )
        }
    }
}

/// `GET /identity/keys`: the public keys that verify tokens now.
#[utoipa::path(
    get,
    path = "/identity/keys",
    tag = "tokens",
    responses((status = 200, description = "The keys that verify tokens now", body = JwkSet)),
)]
pub async fn keys(State(state): State<AppState>) -> Response {
    Json(state.shared.signing_keys().jwks(Timestamp::now())).into_response()
}
