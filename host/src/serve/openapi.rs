//! The HTTP API as an OpenAPI 3.1 document, made by utoipa from the
//! handlers' `#[utoipa::path]` annotations and the types they answer with.
//! `GET /openapi.json` serves it, and `docs/src/reference/openapi.json`
//! keeps a copy that a test holds equal.
//!
//! Most answers are typed where their handler builds them. The few written
//! as text elsewhere (a verdict, a denial, an error) have a shape here, and
//! the route test checks real answers against every one.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document, as `GET /openapi.json` answers it.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyhost serve",
        description = "keyhost's HTTP API: the key check for proxies (`/auth`), \
            a key's verification as JSON, access tokens for keys, the management \
            of a caller's own keys, the registry snapshot for replicas and filters, \
            health and metrics.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::auth::auth,
        super::auth::auth_with_path,
        super::auth::verify,
        super::identity::token,
        super::identity::keys,
        super::manage::list,
        super::manage::create,
        super::manage::show,
        super::manage::update,
        super::manage::delete,
        super::manage::act,
        super::manage::usage,
        super::manage::me,
        super::manage::inactive,
        super::leaks::github,
        super::snapshot::snapshot,
        super::healthz,
        super::metrics,
        super::openapi_json,
        super::nothing_here,
        super::console::page,
        super::console::redirect,
        super::console::script,
        super::console::style,
    ),
    modifiers(&KeySchemes),
    tags(
        (name = "check", description = "Checking keys"),
        (name = "tokens", description = "Access tokens for keys"),
        (name = "keys", description = "A caller's own keys"),
        (name = "replicas", description = "The registry snapshot"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "console", description = "The console's page"),
    )
)]
struct ApiDoc;

/// Where a key or token goes: `Authorization: Bearer` or `X-API-Key`.
struct KeySchemes;

impl Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, or an access token from /identity/token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key",
            ))),
        );
    }
}

/// A check's denial, as `/auth` answers it.
#[derive(Serialize, ToSchema)]
pub struct Denial {
    /// Always `deny`.
    #[schema(pattern = "^deny$")]
    pub decision: String,
    /// The stable deny code (see the deny codes' reference).
    pub code: String,
    /// Why, for people; never the key.
    pub reason: String,
}

/// A verdict as `POST /v1/keys/verify` answers it.
#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// Whether the key is allowed (the decision, under Unkey's name).
    pub valid: bool,
    /// `allow` or `deny`.
    #[schema(pattern = "^(allow|deny)$")]
    pub decision: String,
    /// The deny code.
    pub code: Option<String>,
    /// Why it was denied.
    pub reason: Option<String>,
    /// The key's id, when one was found.
    pub key_id: Option<String>,
    /// The key's identity.
    pub owner: Option<String>,
    /// The key's kind.
    pub kind: Option<String>,
    /// The policy's allow info.
    pub info: BTreeMap<String, String>,
}

/// A management error.
#[derive(Serialize, ToSchema)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable word: `bad_request`, `unauthorized`, `refused`,
    /// `not_found`, `timeout`, `too_large`, `unavailable`, …
    pub kind: String,
    /// The deny code, when the caller's own check was denied.
    pub code: Option<String>,
    /// For people; a secret it might quote is redacted.
    pub message: String,
}

/// An OAuth error (RFC 6749, 5.2).
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, …
    pub error: String,
    pub error_description: String,
}

/// The public keys that verify access tokens (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// One P-256 public key.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    pub x: String,
    pub y: String,
    /// The key's id, as tokens name it in their header.
    pub kid: String,
    /// `ES256`.
    pub alg: Option<String>,
    /// `sig`.
    #[serde(rename = "use")]
    #[schema(rename = "use")]
    pub usage: Option<String>,
}
