//! The management API. The caller's own key authenticates it and, as in IBM
//! Cloud, a user's key acts as that user. Every change goes through the same
//! library rules as the CLI (`lifecycle`), so a non-owner is refused (403).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{deny_status, presented_key};
use crate::check::{CheckRequest, Verdict};
use crate::iam::{IamId, KeyKind};
use crate::lifecycle::{self, KeyChanges, NewKey, Refused, StateChange, UnknownId};
use crate::registry::Registry;
use crate::time::{self, Timestamp};
use crate::views::{KeyView, issued_secret};

/// The service a key must be valid for to use the management API.
pub const MANAGEMENT_SERVICE: &str = "keyhost";

/// An API error: its status and a JSON body saying what went wrong.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_request",
            message: message.into(),
            code: None,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        let (status, kind) = if error.downcast_ref::<Refused>().is_some() {
            (StatusCode::FORBIDDEN, "refused")
        } else if error.downcast_ref::<UnknownId>().is_some() {
            (StatusCode::NOT_FOUND, "not_found")
        } else {
            (StatusCode::BAD_REQUEST, "bad_request")
        };
        ApiError {
            status,
            kind,
            message: format!("{error:#}"),
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "kind": self.kind, "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The user the caller's key acts as.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<IamId, ApiError> {
    let Some(key) = presented_key(headers, &state.auth) else {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: "no API key in the request".into(),
            code: Some("not_found"),
        });
    };
    let request = CheckRequest {
        service: Some(MANAGEMENT_SERVICE.into()),
        source_ip: Some(peer.ip().to_string()),
        ..CheckRequest::default()
    };
    match state.evaluate(&key, &request).verdict {
        Verdict::Allow { key, .. } if key.kind == KeyKind::User => {
            key.owner.parse().map_err(ApiError::bad_request)
        }
        Verdict::Allow { key, .. } => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "refused",
            message: format!("only a user's key manages keys; this is a {} key", key.kind),
            code: None,
        }),
        Verdict::Deny { code, reason, .. } => Err(ApiError {
            status: deny_status(code),
            kind: "unauthorized",
            message: reason,
            code: Some(code.as_str()),
        }),
    }
}

/// Runs a registry change off the async threads (it locks and fsyncs), then
/// makes it live at once.
async fn write<T: Send + 'static>(
    state: &AppState,
    change: impl FnOnce(&mut Registry) -> anyhow::Result<T> + Send + 'static,
) -> Result<(T, u64), ApiError> {
    let shared = state.shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let result = shared.registry_file.update(change);
        if result.is_ok() {
            shared.reload_registry();
        }
        result
    })
    .await
    .map_err(|e| ApiError::from(anyhow::anyhow!("the write task failed: {e}")))?;
    Ok(result?)
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the JSON body is not valid: {e}")))
}

fn parse_when(text: Option<String>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        time::parse_when(&t, now).map_err(|e| ApiError::bad_request(format!("expires: {e}")))
    })
    .transpose()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    kind: Option<KeyKind>,
    #[serde(rename = "for")]
    for_identity: Option<IamId>,
    service: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    expires: Option<String>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    lock: bool,
    rate_limit: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let body: CreateBody = parse_body(&body)?;
    let now = Timestamp::now();
    let new = NewKey {
        for_identity: body.for_identity,
        name: body.name,
        kind: body.kind,
        service: body.service,
        scopes: body.scopes,
        expires_at: parse_when(body.expires, now)?,
        allowed_ips: body.allowed_ips,
        description: body.description,
        lock: body.lock,
        rate_limit: body.rate_limit,
    };
    let ((record, secret), revision) = write(&state, move |registry| {
        lifecycle::create_key(registry, &actor, new, now)
    })
    .await?;
    let body = issued_secret(&record, &secret, revision, now);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let checker = state.shared.checker();
    let now = Timestamp::now();
    let keys: Vec<KeyView> = lifecycle::keys_managed_by(&checker.registry, &actor)
        .into_iter()
        .map(|key| KeyView::of(key, now))
        .collect();
    Ok(Json(json!({ "keys": keys, "revision": checker.registry.revision })).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let checker = state.shared.checker();
    let key = lifecycle::readable_key(&checker.registry, &id, &actor)?;
    let view = KeyView::of(key, Timestamp::now());
    Ok(Json(json!({ "key": view, "revision": checker.registry.revision })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    /// An empty list gives the key all of its identity's scopes.
    scopes: Option<Vec<String>>,
    /// A duration or RFC 3339 time, or `never`.
    expires: Option<String>,
    /// An empty list allows any address.
    allowed_ips: Option<Vec<String>>,
    /// `COUNT/PERIOD`, or `none`.
    rate_limit: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let body: UpdateBody = parse_body(&body)?;
    let now = Timestamp::now();
    let expires_at = match body.expires {
        None => None,
        Some(text) if text == "never" => Some(None),
        Some(text) => Some(parse_when(Some(text), now)?),
    };
    let changes = KeyChanges {
        name: body.name,
        description: body.description,
        scopes: body.scopes,
        expires_at,
        allowed_ips: body.allowed_ips,
        rate_limit: body
            .rate_limit
            .map(|limit| Some(limit).filter(|l| l != "none")),
    };
    let (record, revision) = write(&state, move |registry| {
        lifecycle::update_key(registry, &id, &actor, changes, now)
    })
    .await?;
    Ok(key_response(&record, revision, now))
}

fn key_response(record: &crate::registry::KeyRecord, revision: u64, now: Timestamp) -> Response {
    Json(json!({ "key": KeyView::of(record, now), "revision": revision })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    grace: Option<String>,
}

/// `POST /v1/keys/{id}/{action}`: lock, unlock, disable, enable or rotate.
pub async fn act(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let now = Timestamp::now();
    let change = match action.as_str() {
        "lock" => StateChange::Lock,
        "unlock" => StateChange::Unlock,
        "disable" => StateChange::Disable,
        "enable" => StateChange::Enable,
        "rotate" => {
            let body: RotateBody = parse_body(&body)?;
            let grace = body
                .grace
                .map(|text| {
                    time::parse_duration(&text)
                        .map_err(|e| ApiError::bad_request(format!("grace: {e}")))
                })
                .transpose()?;
            let ((record, secret), revision) = write(&state, move |registry| {
                lifecycle::rotate_key(registry, &id, &actor, grace, now)
            })
            .await?;
            return Ok(Json(issued_secret(&record, &secret, revision, now)).into_response());
        }
        other => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "not_found",
                message: format!(
                    "no action {other:?}: use lock, unlock, disable, enable or rotate"
                ),
                code: None,
            });
        }
    };
    let (record, revision) = write(&state, move |registry| {
        lifecycle::change_state(registry, &id, &actor, change, now)
    })
    .await?;
    Ok(key_response(&record, revision, now))
}

pub async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let actor = authenticate(&state, &headers, peer)?;
    let (record, revision) = write(&state, move |registry| {
        lifecycle::delete_key(registry, &id, &actor)
    })
    .await?;
    let body: Value = json!({ "deleted": record.id, "revision": revision });
    Ok(Json(body).into_response())
}
