//! Every error answer is JSON. keyhost's own handlers answer
//! `{"error": {kind, message}}` (or a deny body); the answers made by the
//! layers around them (a timeout's 408, a body limit's 413, a wrong content
//! type's 415, an unknown route's 404) come with a plain body or none, and
//! are given the same form here.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::key_format;
use crate::lifecycle::LifecycleError;
use crate::registry::{Missing, OlderCopy, TooLate};

/// The `error.kind` keyhost gives a status.
fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// Turns a non-JSON error answer into keyhost's JSON error.
pub async fn as_json(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The plain bodies the layers write are short; cap what is read anyway.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        // The extractors' rejections quote what the client sent.
        key_format::redact(&text)
    };
    let body = json!({ "error": { "kind": kind_of(status), "message": message } });
    // Keep what the layer said in its headers (Allow, Retry-After), but not
    // what described the old body.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut fresh = (status, Json(body)).into_response();
    fresh.headers_mut().extend(parts.headers);
    fresh
}

/// An API error: its status and a JSON body saying what went wrong.
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
    pub(super) code: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        // Every message, whoever wrote it: a field or id a client sent may
        // be a secret pasted in the wrong place, and messages quote them.
        ApiError {
            status,
            kind,
            message: key_format::redact(&message.into()),
            code: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        let lifecycle = error.downcast_ref::<LifecycleError>();
        let (status, kind) = if let Some(LifecycleError::Unreadable(unreadable)) = lifecycle {
            // Offsets and parser errors are for the log, not a client.
            tracing::error!("{unreadable}");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the registry in force cannot be read; it is being made again",
            );
        } else if let Some(LifecycleError::Refused(_)) = lifecycle {
            (StatusCode::FORBIDDEN, "refused")
        } else if let Some(LifecycleError::Unknown { .. }) = lifecycle {
            (StatusCode::NOT_FOUND, "not_found")
        } else if let Some(LifecycleError::Invalid(_)) = lifecycle {
            (StatusCode::BAD_REQUEST, "bad_request")
        } else if let Some(LifecycleError::Stale { .. }) = lifecycle {
            (StatusCode::PRECONDITION_FAILED, "precondition_failed")
        } else if let Some(LifecycleError::PreconditionRequired(_)) = lifecycle {
            (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
        } else if error.downcast_ref::<TooLate>().is_some() {
            (StatusCode::SERVICE_UNAVAILABLE, "timeout")
        } else if error.downcast_ref::<OlderCopy>().is_some() {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        } else if error.downcast_ref::<Missing>().is_some() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the registry file is missing on the server; nothing was written",
            );
        } else {
            (StatusCode::BAD_REQUEST, "bad_request")
        };
        ApiError::new(status, kind, format!("{error:#}"))
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> ApiError {
        ApiError::from(anyhow::Error::from(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "kind": self.kind, "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// What a management handler answers.
pub(super) type ApiResult = Result<Response, ApiError>;
