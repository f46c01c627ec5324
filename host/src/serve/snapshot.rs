//! `GET /v1/snapshot`: the registry in force as a snapshot (hashes and
//! records, never a secret), for the proxy filters that check keys in
//! place. It is authenticated by a replica credential (`keyhost replica
//! add`), not a user's key: proven without being sent (`replica_proof`,
//! which the filters use; serve then proves its answer for the fetch's
//! nonce), or as a bearer token by hand. A fetch that sends back the entity
//! tag it holds (`If-None-Match`) is answered 304 with no body while the
//! registry is unchanged, so polling costs a header.
//!
//! The snapshot sent is the one serve checks keys with (with the registry's
//! changes, when it has some, made into it), sent as it lies, but for its
//! header's source: in the cache that is the stamp of the
//! registry file on this machine (device, inode, times), which would give
//! every replica of one registry another entity tag and tell a fetcher
//! about serve's files. It is sent naming "keyhost serve" instead, with
//! the checksum made again once per snapshot in force.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhost_core::http::key_in_header;
use keyhost_core::{replica_proof, snapshot};

use super::AppState;
use super::errors::ApiError;
use super::openapi::ErrorAnswer;
use crate::registry::{CompactRegistry, Lookup};
use crate::replicas;

/// What a fetched snapshot names as its source.
const SOURCE: &str = "keyhost serve";

/// The bytes of the snapshot in force: the middle of what is sent, with no
/// copy; the snapshot stays mapped until the last answer that sends it is
/// sent.
struct InForce(Arc<CompactRegistry>);

impl AsRef<[u8]> for InForce {
    fn as_ref(&self) -> &[u8] {
        self.0.snapshot().source()
    }
}

/// The snapshot in force as it is sent, made once per snapshot in force.
#[derive(Default)]
///
/// Held while one is made, so that replicas polling together after a change
/// wait for one checksum rather than start one each.
pub struct SnapshotCache(tokio::sync::Mutex<Option<(Arc<CompactRegistry>, Arc<Sent>)>>);

/// One snapshot as it is sent: its own beginning (naming [`SOURCE`]), the
/// snapshot in force's bytes after its header, and its own checksum.
pub struct Sent {
    head: Bytes,
    middle: Bytes,
    checksum: Bytes,
    etag: String,
    revision: u64,
}

impl SnapshotCache {
    /// The snapshot `in_force` as it is sent: the one made before if
    /// `in_force` is the snapshot it was made of, else made now (off the
    /// async threads: the checksum reads every byte).
    async fn of(&self, in_force: Arc<CompactRegistry>) -> anyhow::Result<Arc<Sent>> {
        let mut cached = self.0.lock().await;
        if let Some((made_of, sent)) = &*cached
            && Arc::ptr_eq(made_of, &in_force)
        {
            return Ok(sent.clone());
        }
        let source = in_force.clone();
        let sent = tokio::task::spawn_blocking(move || -> anyhow::Result<Sent> {
            let revision = source.revision();
            // With changes laid over the registry file's snapshot, one
            // snapshot of both is made (once per snapshot in force).
            let whole = if source.has_changes() {
                Bytes::from(source.whole_bytes()?.into_owned())
            } else {
                Bytes::from_owner(InForce(source))
            };
            let (head, checksum) = snapshot::with_source(&whole, SOURCE)?;
            let middle = head.len()..whole.len() - snapshot::CHECKSUM_LEN;
            Ok(Sent {
                etag: snapshot::etag_of(&checksum),
                revision,
                head: Bytes::from(head),
                middle: whole.slice(middle),
                checksum: Bytes::copy_from_slice(&checksum),
            })
        })
        .await??;
        let sent = Arc::new(sent);
        *cached = Some((in_force, sent.clone()));
        Ok(sent)
    }
}

impl Sent {
    /// The body: its three parts, none copied.
    fn body(&self) -> axum::body::Body {
        let parts = [&self.head, &self.middle, &self.checksum]
            .map(|part| Ok::<_, std::convert::Infallible>(part.clone()));
        axum::body::Body::from_stream(futures_util::stream::iter(parts))
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

#[utoipa::path(
    get,
    path = "/v1/snapshot",
    tag = "replicas",
    description = "The registry in force as a snapshot (hashes and records, never a \
        secret), for replicas and the proxy filters. Authenticated by a replica \
        credential: `Authorization: Bearer`, or `KeyhostReplica` with a proof.",
    params(("If-None-Match" = Option<String>, Header, description = "The entity tag held")),
    responses(
        (status = 200, description = "The snapshot", content_type = "application/vnd.keyhost.snapshot"),
        (status = 304, description = "Unchanged since the entity tag sent"),
        (status = 401, description = "No replica credential, or a wrong one", body = ErrorAnswer),
    ),
    security(("bearer" = [])),
)]
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
    let sent = match state.snapshots.of(state.shared.checker()).await {
        Ok(sent) => sent,
        Err(e) => {
            tracing::error!("cannot read the registry's snapshot: {e:#}");
            return internal("cannot read the registry's snapshot");
        }
    };
    let etag = &sent.etag;
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == *etag);
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
            sent.revision.to_string(),
        ),
    ];
    if let Some((nonce, key)) = prove_with {
        tagged.push((
            header::HeaderName::from_static(replica_proof::ANSWER_PROOF_HEADER),
            replica_proof::answer_proof(&key, &nonce, status.as_u16(), etag),
        ));
    }
    let mut response = (status, axum::response::AppendHeaders(tagged)).into_response();
    if !unchanged {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.keyhost.snapshot"),
        );
        let length = sent.head.len() + sent.middle.len() + sent.checksum.len();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
        *response.body_mut() = sent.body();
    }
    response
}
