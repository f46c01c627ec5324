//! The management API's routes. The caller (`caller.rs`) is a user's key
//! or token for the service `keyhost`: `keys:read` to list and show,
//! `keys:write` for every change. Every change goes through the same library
//! rules as the CLI (`lifecycle`), so a non-owner is refused (403), and a
//! key never grants more than it has.
//!
//! A write keeps to the request deadline up to its commit, and is always
//! answered once committed: an answer of failure means nothing was written.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::caller::{Caller, Counted, IfMatch};
use super::errors::{ApiError, ApiResult};
use super::identity::no_store;
use super::openapi::ErrorAnswer;
use crate::activity::{DEFAULT_PERIOD, InactiveReport, Period};
use crate::iam::{IamId, KeyKind};
use crate::lifecycle::{self, EntityTag, KeyChanges, LifecycleError, NewKey, StateChange};
use crate::registry::{Identity, KeyRecord, Lookup, Touches};
use crate::time::{self, Timestamp};
use crate::views::{IssuedSecret, KeyView};

/// The header a client sends to have a replica forward its write to the
/// primary, rather than answer with a redirect it cannot follow (a page,
/// whose fetch may not carry its credential to another origin). Not an
/// `X-Keyhost-*` name: those are keyhost's to set, and every proxy in
/// front removes a client's.
pub const FORWARD_HEADER: &str = "keyhost-forward";

/// The most bytes of the primary's answer a forwarded write hands back
/// (a write's answer is one key).
const MAX_FORWARDED_ANSWER: usize = 1 << 20;

/// How much longer than its own request timeout a replica waits for the
/// primary's answer: the primary's deadline starts after the replica's, and
/// a write it commits at its deadline is still answered.
const PRIMARY_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a replica's writes go.
#[derive(Clone)]
pub struct Primary {
    pub(super) url: Option<String>,
    pub(super) state: AppState,
    pub(super) client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        axum::body::Body,
    >,
}

impl Primary {
    pub(super) fn new(url: Option<String>, state: AppState) -> Primary {
        if let Some(url) = &url
            && !plain_http(url)
        {
            tracing::warn!(
                "--primary is not an http:// URL: this replica cannot forward writes to it, so the console's writes here are answered with the redirect, which a page cannot follow"
            );
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Primary { url, state, client }
    }
}

/// Whether `url` is plain HTTP, the only kind a replica forwards to.
fn plain_http(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// On a replica that does not take writes (`--primary URL`), a management
/// write is answered `307 Temporary Redirect` to the primary, which keeps the
/// method and body; reads are served here. Nothing is written locally.
///
/// A write that asks for it (`Keyhost-Forward: primary`, as the console
/// sends) is forwarded instead, once this replica has checked its caller as
/// the primary would (with the address it sees, so that a key bound to
/// addresses is never let through by the primary seeing the replica's), and
/// the primary's answer is handed back.
pub async fn writes_to_primary(
    State(primary): State<Primary>,
    request: Request,
    next: Next,
) -> Response {
    let Some(url) = primary
        .url
        .clone()
        .filter(|_| request.method() != Method::GET)
    else {
        return next.run(request).await;
    };
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
    );
    let forward = request
        .headers()
        .get(FORWARD_HEADER)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"primary"));
    if forward && plain_http(&target) {
        return forward_to_primary(&primary, request, &target).await;
    }
    let mut response = ApiError::new(
        StatusCode::TEMPORARY_REDIRECT,
        "not_primary",
        format!("this replica takes no writes; send them to the primary, {url}"),
    )
    .into_response();
    if let Ok(location) = header::HeaderValue::from_str(&target) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Checks the caller here, then sends the write to the primary and hands
/// its answer back. Only a write that never reached the primary is
/// answered as not written; once it was sent, a lost answer says it may
/// have been.
async fn forward_to_primary(primary: &Primary, request: Request, target: &str) -> Response {
    let state = &primary.state;
    let deadline = tokio::time::Instant::now() + state.request_timeout;
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    // Checked here without counting a use: the primary counts it.
    if let Err(refused) = Caller::checked(&parts, state, Counted::No).await {
        return refused.into_response();
    }
    let read = tokio::time::timeout_at(deadline, axum::body::to_bytes(body, state.max_body_bytes));
    let Ok(Ok(body)) = read.await else {
        return ApiError::bad_request(format!(
            "the request body was not read whole: it exceeds {} bytes, was cut off, or took longer than the request timeout; nothing was written",
            state.max_body_bytes
        ))
        .into_response();
    };
    let mut forwarded = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(target);
    // What the write needs, and nothing a client could use to speak for
    // someone else: the address is the one this replica checked.
    // Every If-Match line goes too: without it, a write made on one
    // version would be made on whatever version the primary holds.
    for value in parts.headers.get_all(header::IF_MATCH) {
        forwarded = forwarded.header(header::IF_MATCH, value);
    }
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            forwarded = forwarded.header(name, value);
        }
    }
    for name in state.auth.key_headers.iter() {
        if let Some(value) = parts.headers.get(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    if let Some(peer) = peer {
        let client = super::auth::client_ip(&parts.headers, &state.auth, peer);
        forwarded = forwarded.header("x-forwarded-for", client.to_string());
    }
    let not_written = |why: String| {
        tracing::warn!("a write could not be forwarded to the primary: {why}");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "primary_unreachable",
            format!(
                "the primary could not be reached to make this write ({why}); nothing was written"
            ),
        )
        .into_response()
    };
    let maybe_written = |why: String| {
        tracing::warn!("a write forwarded to the primary lost its answer: {why}");
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "primary_answer_lost",
            format!("the write was sent to the primary, but its answer was lost ({why}); it may have been made: look at the key before trying again"),
        )
        .into_response()
    };
    let Ok(forwarded) = forwarded.body(axum::body::Body::from(body)) else {
        return not_written("the write could not be put into a request".into());
    };
    let answer_deadline = deadline + PRIMARY_MARGIN;
    let answer =
        match tokio::time::timeout_at(answer_deadline, primary.client.request(forwarded)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.is_connect() => return not_written(format!("{e}")),
            Ok(Err(e)) => return maybe_written(format!("{e}")),
            Err(_) => return maybe_written("no answer in time".into()),
        };
    let (answer_parts, answer_body) = answer.into_parts();
    let read = axum::body::to_bytes(axum::body::Body::new(answer_body), MAX_FORWARDED_ANSWER);
    let body = match tokio::time::timeout_at(answer_deadline, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return maybe_written(format!("{e}")),
        Err(_) => return maybe_written("its body did not come in time".into()),
    };
    if answer_parts.status.is_success() {
        read_own_write(state, &body, answer_deadline).await;
    }
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = answer_parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::PRAGMA,
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
        header::ETAG,
    ] {
        if let Some(value) = answer_parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// Waits (up to `deadline`) until this replica has in force the revision
/// the primary's answer names, so that what the caller reads here next
/// holds the write it just made.
async fn read_own_write(state: &AppState, answer: &[u8], deadline: tokio::time::Instant) {
    let Some(written) = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|answer| answer["revision"].as_u64())
    else {
        return;
    };
    while state.shared.checker().revision() < written && tokio::time::Instant::now() < deadline {
        let shared = state.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.reload_registry(false)).await;
        if state.shared.checker().revision() < written {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A JSON body, read before the caller's deadline. An empty body is the
/// body type's default; any other must say it is JSON.
pub struct Body<T>(T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Body<T>, ApiError> {
        let deadline = tokio::time::Instant::now() + state.request_timeout;
        let declared_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let read = axum::body::to_bytes(request.into_body(), state.max_body_bytes);
        let bytes = match tokio::time::timeout_at(deadline, read).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the request body did not arrive in time; nothing was written",
                ));
            }
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is over {} bytes", state.max_body_bytes),
                ));
            }
            Ok(Ok(bytes)) => bytes,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(T::default()));
        }
        if declared_json.as_deref() != Some("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body is not valid: {e}")))
    }
}

fn parse_when(text: Option<String>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        time::parse_when(&t, now).map_err(|e| ApiError::bad_request(format!("expires: {e}")))
    })
    .transpose()
}

/// A new key. Only `name` is needed: the rest default to a user key of the
/// caller's, with all of its identity's scopes, that never expires.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    /// `user`, `service-id`, `classic-infrastructure` or `service-specific`.
    #[schema(value_type = Option<String>)]
    kind: Option<KeyKind>,
    /// The identity the key is for (a service ID the caller owns).
    #[serde(rename = "for")]
    #[schema(rename = "for", value_type = Option<String>)]
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

/// The answers of the key routes: a key and the registry's revision.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyAnswer {
    key: KeyView,
    /// The registry's revision the answer was read from or written in.
    revision: u64,
}

/// The caller's keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    keys: Vec<KeyView>,
    revision: u64,
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    iam_id: String,
    /// The caller's rights.
    scopes: Vec<String>,
    /// The service IDs the caller owns.
    service_ids: Vec<OwnedServiceId>,
    /// Whether every change to a key must send `If-Match`.
    require_if_match: bool,
    revision: u64,
}

/// A service ID the caller owns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OwnedServiceId {
    iam_id: String,
    scopes: Vec<String>,
}

/// A key's uses per hour.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageAnswer {
    key_id: String,
    /// The last day's hours, oldest first.
    hours: Vec<HourOfUse>,
}

/// The uses of one hour.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HourOfUse {
    /// The hour's start (RFC 3339).
    #[schema(value_type = String)]
    start: Timestamp,
    count: u64,
}

/// An action's answer: a rotation's new secret, or the key as changed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ActAnswer {
    Rotated(IssuedSecret),
    Changed(KeyAnswer),
}

/// A deletion's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The deleted key's id.
    deleted: String,
    revision: u64,
}

#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    description = "Creates a key for the caller, or for a service ID the caller owns. \
        The secret is in this answer only.",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new key and its secret", body = IssuedSecret),
        (status = 400, description = "The request is not valid", body = ErrorAnswer),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 403, description = "The caller may not", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateBody>,
) -> ApiResult {
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
    let ceiling = caller.ceiling.clone();
    let touches = Touches::KeysOf(
        new.for_identity
            .clone()
            .unwrap_or_else(|| caller.user.clone()),
    );
    let ((record, secret), revision) = caller
        .write(&state, touches, move |registry, user| {
            let created = lifecycle::create_key(registry, user, new, now)?;
            ceiling.permits(&created.0)?;
            Ok(created)
        })
        .await?;
    let body = IssuedSecret::of(&record, &secret, revision, now);
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// Keys as the API shows them, with their live use counts (every
/// replica's, when the counters are shared).
fn views(state: &AppState, keys: &[&KeyRecord], now: Timestamp) -> Vec<KeyView> {
    let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
    let usage = tokio::task::block_in_place(|| state.shared.usage_of(&ids));
    keys.iter()
        .map(|key| KeyView::of(key, now).with_usage(usage.get(&key.id)))
        .collect()
}

fn view(state: &AppState, key: &KeyRecord, now: Timestamp) -> KeyView {
    views(state, &[key], now).remove(0)
}

#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    description = "The keys the caller manages: its own and its service IDs'.",
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let checker = state.shared.checker();
    let now = Timestamp::now();
    let managed = checker
        .keys_managed_by(&caller.user)
        .map_err(LifecycleError::from)?;
    let keys = views(&state, &managed.iter().collect::<Vec<_>>(), now);
    let revision = checker.revision();
    Ok(Json(KeyList { keys, revision }).into_response())
}

/// `GET /v1/me`: who the caller is, and the service IDs they own.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "keys",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let file = state.shared.clone();
    let require_if_match = tokio::task::spawn_blocking(move || file.registry_file.rules())
        .await
        .map_err(|e| ApiError::from(anyhow::anyhow!("reading the rules failed: {e}")))??
        .require_if_match;
    let checker = state.shared.checker();
    let identity = checker
        .identity(&caller.user)
        .map_err(LifecycleError::from)?;
    let scopes = identity
        .as_ref()
        .map(|identity| identity.rights().map(str::to_string).collect())
        .unwrap_or_default();
    let service_ids = checker
        .service_ids_of(&caller.user)
        .map_err(LifecycleError::from)?
        .iter()
        .map(|identity| OwnedServiceId {
            iam_id: identity.iam_id.to_string(),
            scopes: identity.scopes.clone(),
        })
        .collect();
    Ok(Json(Me {
        iam_id: caller.user.to_string(),
        scopes,
        service_ids,
        require_if_match,
        revision: checker.revision(),
    })
    .into_response())
}

/// The query of `GET /v1/reports/inactive`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InactiveQuery {
    /// How long unused: a duration such as `720h` (the default) or `90d`.
    #[serde(rename = "for")]
    #[param(rename = "for")]
    period: Option<String>,
}

/// `GET /v1/reports/inactive?for=720h`: the caller's keys and identities
/// (its own, and its service IDs') that serve has not let through for that
/// long (720h when `for` is left out).
#[utoipa::path(
    get,
    path = "/v1/reports/inactive",
    tag = "keys",
    params(InactiveQuery),
    responses(
        (status = 200, description = "What went unused", body = InactiveReport),
        (status = 400, description = "A period that does not read, or another parameter", body = ErrorAnswer),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn inactive(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<InactiveQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the query cannot be read: {}",
            rejection.body_text()
        ))
    })?;
    let text = query.period.as_deref().unwrap_or(DEFAULT_PERIOD);
    let period = Period::parse(text).map_err(|why| ApiError::bad_request(format!("for: {why}")))?;
    let checker = state.shared.checker();
    let keys = checker
        .keys_managed_by(&caller.user)
        .map_err(LifecycleError::from)?;
    let mut identities: Vec<Identity> = checker
        .identity(&caller.user)
        .map_err(LifecycleError::from)?
        .into_iter()
        .collect();
    identities.extend(
        checker
            .service_ids_of(&caller.user)
            .map_err(LifecycleError::from)?,
    );
    let keys: Vec<&KeyRecord> = keys.iter().collect();
    let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
    let usage = tokio::task::block_in_place(|| state.shared.usage_of(&ids));
    let report = InactiveReport::of(&identities, &keys, &usage, &period, Timestamp::now());
    Ok(Json(report).into_response())
}

/// `GET /v1/keys/{id}/usage`: the key's uses per hour over the last day.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}/usage",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key's uses per hour", body = UsageAnswer),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 404, description = "No such key of the caller's", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let checker = state.shared.checker();
    let key = lifecycle::readable_key(&checker, &id, &caller.user)?;
    let usage = tokio::task::block_in_place(|| state.shared.usage_of(&[key.id.as_str()]));
    let hours = usage
        .get(&key.id)
        .map(|usage| usage.hourly)
        .unwrap_or_default()
        .window(Timestamp::now())
        .into_iter()
        .map(|(start, count)| HourOfUse { start, count })
        .collect();
    Ok(Json(UsageAnswer {
        key_id: key.id.clone(),
        hours,
    })
    .into_response())
}

/// `GET /v1/keys/{id}`.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key; `ETag` is its `entity_tag`", body = KeyAnswer,
            headers(("ETag" = String, description = "The key's version, for `If-Match`"))),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 404, description = "No such key of the caller's", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let checker = state.shared.checker();
    let record = lifecycle::readable_key(&checker, &id, &caller.user)?;
    let key = view(&state, &record, Timestamp::now());
    let revision = checker.revision();
    Ok(tagged(
        Json(KeyAnswer { key, revision }).into_response(),
        &record,
    ))
}

/// The fields to change; those left out stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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

#[utoipa::path(
    patch,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(
        ("id" = String, Path, description = "The key's id"),
        ("If-Match" = Option<String>, Header, description = "Change only this version of the key: its `entity_tag` (the `ETag` of a read), or `*`"),
    ),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The key as changed", body = KeyAnswer),
        (status = 400, description = "The request is not valid", body = ErrorAnswer),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 403, description = "The caller may not (a locked key, or one wider than the caller's)", body = ErrorAnswer),
        (status = 404, description = "No such key of the caller's", body = ErrorAnswer),
        (status = 412, description = "The key is not the version `If-Match` named; nothing was written", body = ErrorAnswer),
        (status = 428, description = "The registry requires `If-Match` (`require_if_match`) and none was sent; nothing was written", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(precondition): IfMatch,
    Path(id): Path<String>,
    Body(body): Body<UpdateBody>,
) -> ApiResult {
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
    let ceiling = caller.ceiling.clone();
    let target = id.clone();
    let (record, revision) = caller
        .write_key(&state, &id, precondition, move |registry, user| {
            let updated = lifecycle::update_key(registry, &target, user, changes, now)?;
            ceiling.permits(&updated)?;
            Ok(updated)
        })
        .await?;
    Ok(key_response(&state, &record, revision, now))
}

fn key_response(state: &AppState, record: &KeyRecord, revision: u64, now: Timestamp) -> Response {
    let key = view(state, record, now);
    tagged(
        Json(ActAnswer::Changed(KeyAnswer { key, revision })).into_response(),
        record,
    )
}

/// `response`, about `key` as it now stands, with the key's `ETag`.
fn tagged(mut response: Response, key: &KeyRecord) -> Response {
    let tag = EntityTag::of_key(key).header_value();
    if let Ok(value) = header::HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A rotation's options; other actions take no body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret still works, as a duration (`24h`).
    grace: Option<String>,
}

/// `POST /v1/keys/{id}/{action}`: lock, unlock, disable, enable, rotate or
/// end-grace.
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/{action}",
    tag = "keys",
    params(
        ("id" = String, Path, description = "The key's id"),
        ("action" = String, Path, description = "`lock`, `unlock`, `disable`, `enable`, `rotate` or `end-grace`"),
        ("If-Match" = Option<String>, Header, description = "Change only this version of the key: its `entity_tag` (the `ETag` of a read), or `*`"),
    ),
    request_body = RotateBody,
    responses(
        (status = 200, description = "The key as changed; after `rotate`, the new secret", body = ActAnswer),
        (status = 400, description = "The request is not valid", body = ErrorAnswer),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 403, description = "The caller may not", body = ErrorAnswer),
        (status = 404, description = "No such key or action", body = ErrorAnswer),
        (status = 412, description = "The key is not the version `If-Match` named; nothing was written", body = ErrorAnswer),
        (status = 428, description = "The registry requires `If-Match` (`require_if_match`) and none was sent; nothing was written", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(precondition): IfMatch,
    Path((id, action)): Path<(String, String)>,
    Body(body): Body<RotateBody>,
) -> ApiResult {
    let now = Timestamp::now();
    // A key may hand out a new secret of a key, bring one back or lift its
    // lock only when that key is no wider than itself; taking a key out of
    // use is any manager's.
    let ceiling = caller.ceiling.clone();
    let change = match action.as_str() {
        "lock" => StateChange::Lock,
        "unlock" => StateChange::Unlock,
        "disable" => StateChange::Disable,
        "enable" => StateChange::Enable,
        "rotate" => {
            let grace = body
                .grace
                .map(|text| {
                    time::parse_duration(&text)
                        .map_err(|e| ApiError::bad_request(format!("grace: {e}")))
                })
                .transpose()?;
            let target = id.clone();
            let ((record, secret), revision) = caller
                .write_key(&state, &id, precondition, move |registry, user| {
                    let rotated = lifecycle::rotate_key(registry, &target, user, grace, now)?;
                    ceiling.permits(&rotated.0)?;
                    Ok(rotated)
                })
                .await?;
            let body = Json(ActAnswer::Rotated(IssuedSecret::of(
                &record, &secret, revision, now,
            )));
            return Ok(no_store(tagged(body.into_response(), &record)));
        }
        "end-grace" => {
            let target = id.clone();
            let (record, revision) = caller
                .write_key(&state, &id, precondition, move |registry, user| {
                    lifecycle::end_grace(registry, &target, user, now)
                })
                .await?;
            return Ok(key_response(&state, &record, revision, now));
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no action {other:?}: the actions are lock, unlock, disable, enable, rotate and end-grace"
                ),
            ));
        }
    };
    let target = id.clone();
    let (record, revision) = caller
        .write_key(&state, &id, precondition, move |registry, user| {
            let changed = lifecycle::change_state(registry, &target, user, change, now)?;
            if matches!(change, StateChange::Enable | StateChange::Unlock) {
                ceiling.permits(&changed)?;
            }
            Ok(changed)
        })
        .await?;
    Ok(key_response(&state, &record, revision, now))
}

#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(
        ("id" = String, Path, description = "The key's id"),
        ("If-Match" = Option<String>, Header, description = "Change only this version of the key: its `entity_tag` (the `ETag` of a read), or `*`"),
    ),
    responses(
        (status = 200, description = "The key is deleted", body = Deleted),
        (status = 401, description = "No valid key or token", body = ErrorAnswer),
        (status = 403, description = "The caller may not (a locked key)", body = ErrorAnswer),
        (status = 404, description = "No such key of the caller's", body = ErrorAnswer),
        (status = 412, description = "The key is not the version `If-Match` named; nothing was written", body = ErrorAnswer),
        (status = 428, description = "The registry requires `If-Match` (`require_if_match`) and none was sent; nothing was written", body = ErrorAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(precondition): IfMatch,
    Path(id): Path<String>,
) -> ApiResult {
    let target = id.clone();
    let (record, revision) = caller
        .write_key(&state, &id, precondition, move |registry, user| {
            lifecycle::delete_key(registry, &target, user)
        })
        .await?;
    Ok(Json(Deleted {
        deleted: record.id,
        revision,
    })
    .into_response())
}
