//! `keyhost serve`: the HTTP auth service for proxies, the JSON verify
//! endpoint, the management API, health and metrics, with hot reload of the
//! registry and the policy.

pub mod auth;
mod decision_log;
mod manage;
mod metrics;
mod pool;
mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

pub use auth::AuthSettings;
use decision_log::DecisionLog;
use state::{PolicySource, Shared};

use crate::policy::{CompiledCache, PolicyEngine, SandboxLimits};
use crate::registry::RegistryFile;
use crate::usage::{UsageTracker, usage_path};

/// How `keyhost serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub registry: PathBuf,
    pub listen: SocketAddr,
    /// A policy file, watched for changes; the built-in default when `None`.
    pub policy: Option<PathBuf>,
    pub auth: AuthSettings,
    pub decision_log: Option<PathBuf>,
    /// How often usage counts are written out.
    pub usage_flush: Duration,
    /// How often the registry and policy files are looked at for changes.
    pub watch_interval: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
}

impl ServeOptions {
    pub fn new(registry: PathBuf, listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            registry,
            listen,
            policy: None,
            auth: AuthSettings::default(),
            decision_log: None,
            usage_flush: Duration::from_secs(5),
            watch_interval: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 << 10,
            max_header_bytes: 16 << 10,
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
    auth: Arc<AuthSettings>,
}

impl AppState {
    /// Runs a check from an async handler. The policy call is synchronous,
    /// and a policy's WASI calls (a panic message written to stderr, say)
    /// enter the runtime themselves, so the worker thread is handed over as
    /// a blocking one for the duration.
    fn evaluate(&self, presented: &str, request: &crate::check::CheckRequest) -> state::Evaluated {
        tokio::task::block_in_place(|| self.shared.evaluate(presented, request))
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(options: ServeOptions) -> Result<()> {
    let engine = PolicyEngine::new(CompiledCache::from_env(), SandboxLimits::default())?;
    let usage = UsageTracker::open(usage_path(&options.registry))?;
    let decisions = options
        .decision_log
        .as_deref()
        .map(DecisionLog::open)
        .transpose()?;
    let source = match &options.policy {
        Some(path) => PolicySource::File(path.clone()),
        None => PolicySource::BuiltIn,
    };
    let shared = Arc::new(Shared::new(
        RegistryFile::new(&options.registry),
        engine,
        source,
        usage,
        decisions,
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyhost-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(shared, options))
}

async fn serve(shared: Arc<Shared>, options: ServeOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "listening beyond loopback: make sure only your proxies can reach keyhost");
    }
    // The first line on stdout names the address, for scripts and tests.
    println!("listening on http://{local}");
    std::io::stdout().flush().ok();
    tracing::info!(%local, policy = %shared.policy_label(), "keyhost serve started");

    spawn_watchers(&shared, &options);
    let state = AppState {
        shared: shared.clone(),
        auth: Arc::new(options.auth.clone()),
    };
    let app = router(state, &options);
    // Answers are small and each one ends an exchange: with Nagle's algorithm
    // on, a proxy's keep-alive connection waited on delayed ACKs (nginx
    // auth_request ran at 7% of nginx alone in bench/run.sh).
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("the server failed")?;
    shared.flush_usage();
    tracing::info!("keyhost serve stopped");
    Ok(())
}

fn router(state: AppState, options: &ServeOptions) -> Router {
    Router::new()
        .route("/auth", any(auth::auth))
        .route("/auth/{*rest}", any(auth::auth))
        .route("/v1/keys/verify", post(auth::verify))
        .route("/v1/keys", get(manage::list).post(manage::create))
        .route(
            "/v1/keys/{id}",
            get(manage::show)
                .patch(manage::update)
                .delete(manage::delete),
        )
        .route("/v1/keys/{id}/{action}", post(manage::act))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            options.max_header_bytes,
            header_limit,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .with_state(state)
}

/// Refuses requests whose headers add up to more than `max` bytes.
async fn header_limit(State(max): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > max {
        let body = json!({ "error": { "kind": "bad_request", "message": format!("request headers exceed {max} bytes") } });
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(body),
        )
            .into_response();
    }
    next.run(request).await
}

/// `ok`, or 503 with the reason when the policy refuses the registry's
/// settings (every check then fails closed).
async fn healthz(State(state): State<AppState>) -> Response {
    let revision = state.shared.checker().registry.revision;
    let policy = state.shared.policy_label();
    match state.shared.policy_refusal() {
        None => axum::Json(json!({ "status": "ok", "revision": revision, "policy": policy }))
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "policy_error",
                "revision": revision,
                "policy": policy,
                "reason": reason,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.shared.metrics.render(),
    )
        .into_response()
}

/// What identifies a file's content without reading it.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Polls the registry and policy files, flushes usage, and reloads on SIGHUP.
fn spawn_watchers(shared: &Arc<Shared>, options: &ServeOptions) {
    let mut watched = vec![(options.registry.clone(), Reload::Registry)];
    if let Some(path) = &options.policy {
        watched.push((path.clone(), Reload::Policy));
    }
    for (path, what) in watched {
        let shared = shared.clone();
        let interval = options.watch_interval;
        tokio::spawn(async move {
            let mut seen = fingerprint(&path);
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                let now = fingerprint(&path);
                if now != seen && now.is_some() {
                    seen = now;
                    what.run_blocking(&shared).await;
                }
            }
        });
    }

    let flusher = shared.clone();
    let every = options.usage_flush;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let shared = flusher.clone();
            let _ = tokio::task::spawn_blocking(move || {
                shared.flush_usage();
                shared.trim_policy_instances();
            })
            .await;
        }
    });

    let on_hangup = shared.clone();
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the registry and the policy");
            Reload::Registry.run_blocking(&on_hangup).await;
            Reload::Policy.run_blocking(&on_hangup).await;
        }
    });
}

#[derive(Clone, Copy)]
enum Reload {
    Registry,
    Policy,
}

impl Reload {
    /// Reloads off the async threads: loading parses files and may compile.
    async fn run_blocking(self, shared: &Arc<Shared>) {
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || match self {
            Reload::Registry => shared.reload_registry(),
            Reload::Policy => shared.reload_policy(),
        })
        .await;
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
}
