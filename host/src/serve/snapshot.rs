//! `GET /v1/snapshot`: the registry in force as a snapshot (hashes and
//! records, never a secret), for the proxy filters that check keys in
//! place. It is authenticated by a replica credential (`keyhost replica
//! add`), not a user's key: proven without being sent (`replica_proof`,
//! which the filters use; serve then proves its answer for the fetch's
//! nonce), or as a bearer token by hand. A fetch that sends back the entity
//! tag it holds (`If-None-Match`) is answered 304 with no body while the
//! registry is unchanged, so polling costs a header. The snapshot sent is
//! the very one serve checks keys with.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhost_core::http::key_in_header;
use keyhost_core::replica_proof;

use super::AppState;
use super::errors::ApiError;
use crate::registry::{CompactRegistry, Lookup};
use crate::replicas;

/// The bytes of the snapshot in force, sent as they lie: no copy, and the
/// snapshot stays mapped until the last answer that sends it is sent.
struct InForce(Arc<CompactRegistry>);

impl AsRef<[u8]> for InForce {
    fn as_ref(&self) -> &[u8] {
        self.0.snapshot().source()
    }
}

/// A fetch without a valid replica credential: 401, with a challenge.
fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"keyhost-replica\""),
    );
    response
}

fn internal(message: &str) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message).into_response()
}

/// Who is fetching: a replica credential presented as a bearer token (by
/// hand, with curl), or proven without sending it, with the nonce serve's
/// answer is proven for.
enum Fetcher {
    Bearer(String),
    Proof { nonce: String, proof: String },
}

pub async fn snapshot(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let fetcher = authorization.and_then(|value| {
        if let Some((nonce, proof)) = replica_proof::parse_authorization(value) {
            return Some(Fetcher::Proof {
                nonce: nonce.to_string(),
                proof: proof.to_string(),
            });
        }
        key_in_header("authorization", value).map(|key| Fetcher::Bearer(key.to_string()))
    });
    let Some(fetcher) = fetcher else {
        return unauthorized(
            "a replica credential is needed (Authorization: Bearer, or KeyhostReplica with a proof; keyhost replica add)",
        );
    };
    let registry = state.shared.registry_file.path().to_path_buf();
    let path = uri.path().to_string();
    let verified = tokio::task::spawn_blocking(move || match fetcher {
        Fetcher::Bearer(presented) => {
            replicas::verify(&registry, &presented).map(|name| name.map(|_| None))
        }
        Fetcher::Proof { nonce, proof } => replicas::verify_proof(&registry, &nonce, &path, &proof)
            .map(|found| found.map(|(_, key)| Some((nonce, key)))),
    })
    .await;
    // With a proven fetch, the nonce and key the answer is proven with.
    let prove_with = match verified {
        Ok(Ok(Some(prove_with))) => prove_with,
        Ok(Ok(None)) => {
            return unauthorized(
                "this is not a replica credential of this registry, or it was revoked",
            );
        }
        Ok(Err(e)) => {
            tracing::error!("cannot read the replica credentials: {e:#}");
            return internal("cannot read the replica credentials");
        }
        Err(_) => return internal("the credential check failed"),
    };
    let in_force = state.shared.checker();
    let etag = match in_force.snapshot().etag() {
        Ok(etag) => etag,
        Err(e) => {
            tracing::error!("cannot read the registry's snapshot: {e:#}");
            return internal("cannot read the registry's snapshot");
        }
    };
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag);
    let status = if unchanged {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut tagged = vec![
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-store".to_string()),
        (
            header::HeaderName::from_static("x-keyhost-revision"),
            in_force.revision().to_string(),
        ),
    ];
    if let Some((nonce, key)) = prove_with {
        tagged.push((
            header::HeaderName::from_static(replica_proof::ANSWER_PROOF_HEADER),
            replica_proof::answer_proof(&key, &nonce, status.as_u16(), &etag),
        ));
    }
    let mut response = (status, axum::response::AppendHeaders(tagged)).into_response();
    if !unchanged {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.keyhost.snapshot"),
        );
        *response.body_mut() = axum::body::Body::from(Bytes::from_owner(InForce(in_force)));
    }
    response
}
