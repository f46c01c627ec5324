//! `GET /v1/snapshot`: the registry in force as a snapshot (hashes and
//! records, never a secret), for the proxy filters that check keys in
//! place. It is authenticated by a replica credential (`keyhost replica
//! add`), not a user's key: proven without being sent (`replica_proof`,
//! which the filters use; serve then proves its answer for the fetch's
//! nonce), or as a bearer token by hand. A fetch that sends back the entity
//! tag it holds (`If-None-Match`) is answered 304 with no body while the
//! registry is unchanged, so polling costs a header.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhost_core::http::key_in_header;
use keyhost_core::replica_proof;
use keyhost_core::snapshot::Snapshot;

use super::AppState;
use super::errors::ApiError;
use crate::registry::{LoadedRegistry, encode_snapshot};
use crate::replicas;

/// The snapshot of the registry in force, made once per registry.
#[derive(Default)]
pub struct SnapshotCache(Mutex<Option<(Arc<LoadedRegistry>, Arc<Encoded>)>>);

/// One snapshot, ready to send.
pub struct Encoded {
    bytes: Bytes,
    etag: String,
    revision: u64,
}

impl SnapshotCache {
    /// The snapshot of `loaded`: the one made before if `loaded` is the
    /// registry it was made of, else made now (off the async threads).
    async fn of(&self, loaded: Arc<LoadedRegistry>) -> anyhow::Result<Arc<Encoded>> {
        if let Some((made_of, encoded)) = &*self.0.lock().expect("snapshot cache")
            && Arc::ptr_eq(made_of, &loaded)
        {
            return Ok(encoded.clone());
        }
        let source = loaded.clone();
        let encoded = tokio::task::spawn_blocking(move || -> anyhow::Result<Encoded> {
            let bytes = encode_snapshot(&source.registry, "keyhost serve".to_string());
            let snapshot = Snapshot::open(bytes.as_slice())?;
            Ok(Encoded {
                etag: snapshot.etag()?,
                revision: snapshot.header().revision,
                bytes: Bytes::from(bytes),
            })
        })
        .await??;
        let encoded = Arc::new(encoded);
        *self.0.lock().expect("snapshot cache") = Some((loaded, encoded.clone()));
        Ok(encoded)
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
    let encoded = match state.snapshots.of(state.shared.checker()).await {
        Ok(encoded) => encoded,
        Err(e) => {
            tracing::error!("cannot make the registry's snapshot: {e:#}");
            return internal("cannot make the registry's snapshot");
        }
    };
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == encoded.etag);
    let status = if unchanged {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut tagged = vec![
        (header::ETAG, encoded.etag.clone()),
        (header::CACHE_CONTROL, "no-store".to_string()),
        (
            header::HeaderName::from_static("x-keyhost-revision"),
            encoded.revision.to_string(),
        ),
    ];
    if let Some((nonce, key)) = prove_with {
        tagged.push((
            header::HeaderName::from_static(replica_proof::ANSWER_PROOF_HEADER),
            replica_proof::answer_proof(&key, &nonce, status.as_u16(), &encoded.etag),
        ));
    }
    let mut response = (status, axum::response::AppendHeaders(tagged)).into_response();
    if !unchanged {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.keyhost.snapshot"),
        );
        *response.body_mut() = axum::body::Body::from(encoded.bytes.clone());
    }
    response
}
