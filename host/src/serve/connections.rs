//! The accept loop: how long a client may take, how many may be connected,
//! and how long a shutdown waits for them.
//!
//! `axum::serve` installs no timer in hyper, so a client that sends its
//! headers slowly (or not at all) holds a connection for ever, and it has no
//! connection cap. This loop serves each connection with hyper's HTTP/1
//! builder, a header-read timeout, a cap on open connections, and a
//! deadline on graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::metrics::Metrics;

/// Limits on clients.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// How long a client has to send a request's headers, counted from the
    /// connection's start and, on a kept-alive connection, from the end of
    /// the previous answer.
    pub header_timeout: Duration,
    /// The most connections open at once. Past it, a connection is answered
    /// 503 at once and closed.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Descriptors kept free beyond the connection cap: the registry, the
/// policy, the logs and the usage file.
const SPARE_DESCRIPTORS: u64 = 64;

/// The connection cap in force: the one asked for, lowered so that open
/// connections can never use up the process's file descriptors (after
/// raising the soft limit to the hard one).
pub fn effective_cap(asked: usize) -> usize {
    let descriptors = raise_descriptor_limit();
    let room = descriptors.saturating_sub(SPARE_DESCRIPTORS).max(1);
    asked
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit in force.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The answer past the cap. It is written without reading the request, so
/// a flood of connections costs a descriptor each only for a moment; a
/// fixed string, since serving it through hyper would mean reading first.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 94\r\n\
\r\n\
{\"error\":{\"kind\":\"unavailable\",\"message\":\"too many open connections; try again in a second\"}}\n";

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to
/// `limits.shutdown_timeout` for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let cap = effective_cap(limits.max_connections);
    tracing::info!(max_connections = cap, header_timeout = ?limits.header_timeout, "accepting connections");
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection(false);
            tokio::spawn(refuse(stream));
            continue;
        };
        metrics.connection(true);
        metrics.open_connections(1);
        // Answers are small and each ends an exchange: with Nagle's
        // algorithm on, a proxy's keep-alive connection waited on delayed
        // ACKs (nginx auth_request ran at 7% of nginx alone in bench/run.sh).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.map_request(
                |request: hyper::Request<hyper::body::Incoming>| request.map(axum::body::Body::new),
            )),
        );
        let connection = graceful.watch(connection);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            metrics.open_connections(-1);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; closing them",
            limits.shutdown_timeout
        );
    }
}

async fn refuse(mut stream: tokio::net::TcpStream) {
    tracing::warn!("connection cap reached: answering 503");
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_CAPACITY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_declares_its_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
