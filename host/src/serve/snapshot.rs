//! `GET /v1/snapshot`: the registry in force as a snapshot (hashes and
//! records, never a secret), for the proxy filters that check keys in
//! place. It is authenticated by a replica credential (`keyhost replica
//! add`), not a user's key. A fetch that sends back the entity tag it holds
//! (`If-None-Match`) is answered 304 with no body while the registry is
//! unchanged, so polling costs a header.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhost_core::http::key_in_header;
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

pub async fn snapshot(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| key_in_header("authorization", value))
        .map(str::to_string);
    let Some(presented) = presented else {
        return unauthorized(
            "a replica credential is needed (Authorization: Bearer; keyhost replica add)",
        );
    };
    let registry = state.shared.registry_file.path().to_path_buf();
    let verified =
        tokio::task::spawn_blocking(move || replicas::verify(&registry, &presented)).await;
    match verified {
        Ok(Ok(Some(_name))) => {}
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
    }
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
    let tagged = [
        (header::ETAG, encoded.etag.clone()),
        (header::CACHE_CONTROL, "no-store".to_string()),
        (
            header::HeaderName::from_static("x-keyhost-revision"),
            encoded.revision.to_string(),
        ),
    ];
    if unchanged {
        return (StatusCode::NOT_MODIFIED, tagged).into_response();
    }
    (
        StatusCode::OK,
        tagged,
        [(header::CONTENT_TYPE, "application/vnd.keyhost.snapshot")],
        encoded.bytes.clone(),
    )
        .into_response()
}
