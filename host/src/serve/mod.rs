//! `keyhost serve`: the HTTP auth service for proxies, the JSON verify
//! endpoint, the management API, health and metrics, with hot reload of the
//! registry and the policy.

pub mod auth;
mod caller;
mod connections;
mod console;
mod decision_log;
mod errors;
mod hosts;
mod identity;
mod leaks;
mod manage;
mod metrics;
mod openapi;
mod snapshot;
mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use auth::AuthSettings;
pub use connections::ConnectionLimits;
use decision_log::DecisionLog;
pub use hosts::AllowedHosts;
use state::{PolicySource, Shared};

use crate::counters::{Counters, OnStateError, RedisCounters};
use crate::policy::{CompiledCache, PolicyEngine, SandboxLimits};
use crate::ratelimit::Buckets;
use crate::registry::{Lookup, RegistryFile};
use crate::side_files::{FileStamp, RegistryStamp, signing_keys_path, usage_path};
use crate::usage::UsageTracker;

/// How `keyhost serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The registry file.
    pub registry: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// A policy file, watched for changes; the built-in default when `None`.
    pub policy: Option<PathBuf>,
    /// Which headers carry the key, service and scope, and which proxies are trusted.
    pub auth: AuthSettings,
    /// Where to append one JSON line per decision.
    pub decision_log: Option<PathBuf>,
    /// How often usage counts are written out.
    pub usage_flush: Duration,
    /// How often the registry and policy files are looked at for changes.
    pub watch_interval: Duration,
    /// How long a request may take. A management write that cannot commit
    /// within it is not made at all; one that committed is always answered.
    pub request_timeout: Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// The largest request head.
    pub max_header_bytes: usize,
    /// Connection limits and timeouts.
    pub connections: ConnectionLimits,
    /// Where rate limits and usage are shared between replicas
    /// (`redis://HOST:PORT[/DB]`); in this process when `None`.
    pub state: Option<String>,
    /// How long a call to the shared state may take.
    pub state_timeout: Duration,
    /// What a rate limit does when Redis cannot be reached.
    pub on_state_error: OnStateError,
    /// The replica that takes management writes; this one redirects them
    /// there when set.
    pub primary: Option<String>,
    /// How long an access token from `/identity/token` lives.
    pub token_ttl: Duration,
    /// The `Host` names answered.
    pub allowed_hosts: AllowedHosts,
    /// GitHub's published secret scanning key set (a JSON file), which
    /// `POST /v1/leaks/github` checks alerts against; none takes no alerts.
    pub github_keys: Option<PathBuf>,
}

impl ServeOptions {
    /// The defaults, for `registry` on `listen`.
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
            connections: ConnectionLimits::default(),
            state: None,
            state_timeout: Duration::from_millis(100),
            on_state_error: OnStateError::Open,
            primary: None,
            token_ttl: crate::token::DEFAULT_TTL,
            allowed_hosts: AllowedHosts::local_to(listen),
            github_keys: None,
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The snapshot proxy filters fetch, made once per snapshot in force.
    snapshots: Arc<snapshot::SnapshotCache>,
    shared: Arc<Shared>,
    auth: Arc<AuthSettings>,
    /// How long a request may take (management writes keep to it themselves).
    request_timeout: Duration,
    max_body_bytes: usize,
    /// GitHub's published key set, for its secret scanning alerts.
    github_keys: Option<Arc<std::path::Path>>,
}

impl AppState {
    /// Runs a check from an async handler; a request without a key is
    /// decided (and logged) without one.
    async fn evaluate(
        &self,
        presented: Option<&str>,
        request: &crate::check::CheckRequest,
    ) -> state::Evaluated {
        let Some(key) = presented else {
            return self.shared.unkeyed(request);
        };
        let started = std::time::Instant::now();
        let checked = self.shared.check(key, request).await;
        self.shared.finish(checked, request, started).await
    }

    /// A check that is not a use of the key: no rate limit taken, no use
    /// counted, nothing logged (a replica's check of a write it forwards;
    /// the primary's check counts).
    async fn uncounted(
        &self,
        presented: Option<&str>,
        request: &crate::check::CheckRequest,
    ) -> state::Evaluated {
        match presented {
            Some(key) => self.shared.check(key, request).await.uncounted(),
            None => self.shared.unkeyed(request),
        }
    }
}

/// How many tasks a worker polls between two looks at the sockets.
const EVENT_INTERVAL: u32 = 4;

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(options: ServeOptions) -> Result<()> {
    // Serve logs as it goes: a registry read or snapshot made on a reload
    // says so in the log, with no bar drawn over it.
    crate::progress::without_bars();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A policy call that runs long yields at every epoch tick (1 ms);
        // with the default (61 polls between looks at the sockets), twenty
        // of them kept a new request unseen for tens of milliseconds.
        .event_interval(EVENT_INTERVAL)
        .thread_name("keyhost-serve")
        .build()
        .context("cannot start the async runtime")?;
    let engine = PolicyEngine::serving(CompiledCache::from_env(), SandboxLimits::default())?;
    let counters = match &options.state {
        Some(url) => Counters::Redis(Box::new(RedisCounters::connect(
            url,
            runtime.handle().clone(),
            options.state_timeout,
            options.on_state_error,
        )?)),
        None => Counters::Local {
            buckets: Buckets::default(),
            usage: UsageTracker::open(usage_path(&options.registry))?,
        },
    };
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
        counters,
        decisions,
        options.token_ttl,
    )?);
    let served = runtime.block_on(serve(shared, options));
    // Requests still running past the shutdown deadline are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(500));
    served
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
    // Signals are caught from here on, before anyone can know the address:
    // a SIGHUP or SIGTERM sent right after the first line must not meet the
    // default action, which ends the process.
    let signals = Signals::register()?;
    println!("listening on http://{local}");
    std::io::stdout().flush().ok();
    tracing::info!(%local, policy = %shared.policy_label(), "keyhost serve started");

    spawn_watchers(&shared, &options, signals.hangup);
    let state = AppState {
        shared: shared.clone(),
        snapshots: Arc::default(),
        auth: Arc::new(options.auth.clone()),
        request_timeout: options.request_timeout,
        max_body_bytes: options.max_body_bytes,
        github_keys: options.github_keys.as_deref().map(Arc::from),
    };
    let app = router(state, &options);
    connections::serve(
        listener,
        app,
        options.connections,
        shared.metrics.clone(),
        shutdown_signal(signals.terminate, signals.interrupt),
    )
    .await;
    // A flush may wait on Redis: off the async threads.
    let flushing = shared.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush_at_shutdown()).await;
    tracing::info!("keyhost serve stopped");
    Ok(())
}

fn router(state: AppState, options: &ServeOptions) -> Router {
    // Reads and checks are cut off at the request timeout. Management calls
    // are not: a write keeps to the deadline itself, up to its commit, and a
    // committed write is always answered (manage.rs).
    let timed = Router::new()
        .route("/auth", any(auth::auth))
        // Envoy's ext_authz appends the original path: `/` makes `/auth/`,
        // which the wildcard below does not match.
        .route("/auth/", any(auth::auth))
        .route("/auth/{*rest}", any(auth::auth))
        .route("/v1/keys/verify", post(auth::verify))
        .route("/identity/token", post(identity::token))
        .route("/identity/keys", get(identity::keys))
        .route("/v1/snapshot", get(snapshot::snapshot))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ));
    let management = Router::new()
        .route("/v1/keys", get(manage::list).post(manage::create))
        .route(
            "/v1/keys/{id}",
            get(manage::show)
                .patch(manage::update)
                .delete(manage::delete),
        )
        .route("/v1/keys/{id}/{action}", post(manage::act))
        .route("/v1/keys/{id}/usage", get(manage::usage))
        .route("/v1/me", get(manage::me))
        .route("/v1/reports/inactive", get(manage::inactive))
        // An alert of a thousand tokens is larger than any other body: the
        // handler reads it to its own limit.
        .route("/v1/leaks/github", post(leaks::github))
        .layer(middleware::from_fn_with_state(
            manage::Primary::new(options.primary.clone(), state.clone()),
            manage::writes_to_primary,
        ));
    let routes = timed
        .merge(management)
        .merge(console::routes())
        .route("/", get(nothing_here))
        .with_state(state);
    with_middleware(routes, options)
}

/// Wraps `routes` in what every request to serve goes through: the header
/// limit, the Host check, JSON errors and `nosniff` (in one layer, see
/// [`guard`]), the panic guard and the body limit.
fn with_middleware(routes: Router, options: &ServeOptions) -> Router {
    let guarded = Arc::new(Guarded {
        allowed_hosts: options.allowed_hosts.clone(),
        max_header_bytes: options.max_header_bytes,
    });
    routes
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        // A bug that panics answers 500 (a check: denied by the proxy in
        // front) instead of dropping the connection; the server goes on.
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request's handler panicked; it was answered 500");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
        .layer(middleware::from_fn_with_state(guarded, guard))
}

/// What [`guard`] holds requests to.
struct Guarded {
    allowed_hosts: AllowedHosts,
    max_header_bytes: usize,
}

/// Refuses a request whose headers are too large or whose `Host` is not
/// allowed, makes every error answer JSON, and marks every answer
/// `nosniff` so that none is read as other than the type it names.
///
/// One layer for four: each `from_fn` layer clones the service under it and
/// boxes a future on every request (`clone_box` and the boxing showed in a
/// profile of /auth); this pays that once.
async fn guard(State(guarded): State<Arc<Guarded>>, request: Request, next: Next) -> Response {
    let refused = header_limit(guarded.max_header_bytes, &request)
        .or_else(|| hosts::misdirected(&guarded.allowed_hosts, &request));
    let mut response = match refused {
        Some(refused) => refused,
        None => errors::as_json(next.run(request).await).await,
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The floor of serve's speed rows in `bench/run.sh`: serve's accept loop,
/// connection limits and middleware, with a request timeout on `/auth`
/// that answers 200 without checking anything. Runs until SIGTERM or Ctrl-C.
pub fn run_floor(listen: SocketAddr) -> Result<()> {
    let options = ServeOptions::new(PathBuf::new(), listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let signals = Signals::register()?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush().ok();
        let routes = Router::new()
            .route("/auth", any(|| async { StatusCode::OK }))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                options.request_timeout,
            ));
        connections::serve(
            listener,
            with_middleware(routes, &options),
            options.connections,
            Arc::new(metrics::Metrics::new()),
            shutdown_signal(signals.terminate, signals.interrupt),
        )
        .await;
        Ok(())
    })
}

/// `GET /`: nothing is served here; says where things are.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 404, description = "Nothing is served here; the answer says where things are",
        body = openapi::ErrorAnswer)))]
async fn nothing_here() -> Response {
    let body = json!({ "error": {
        "kind": "not_found",
        "message": "nothing is served at /: the console is at /console/, checks at /auth, the management API under /v1/keys, health at /healthz",
    }});
    let mut response = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::LINK,
        HeaderValue::from_static("</console/>; rel=\"alternate\""),
    );
    response
}

/// The `431` for a request whose headers add up to more than `max` bytes.
fn header_limit(max: usize, request: &Request) -> Option<Response> {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size <= max {
        return None;
    }
    let body = json!({ "error": { "kind": "bad_request", "message": format!("request headers exceed {max} bytes") } });
    Some(
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(body),
        )
            .into_response(),
    )
}

/// `ok`, or what is wrong: `policy_error` with the reason when the policy
/// refuses the registry's settings (every check then fails closed), else
/// `degraded`, with every problem listed. A registry that may be stale (the
/// file is gone, unreadable, or went back in revision) or a refusing policy
/// answers 503. Shared counters out of reach answer 200: keys are still
/// checked, only limits and usage wait, and taking every replica out because
/// Redis is down would stop all traffic. `snapshot` says whether the
/// registry's snapshot is mapped from the cache folder or, with no folder
/// that could keep it, held in memory (about 0.7 KB a key).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Serving (perhaps degraded: shared counters out of reach)", body = Health),
        (status = 503, description = "The policy or the registry cannot be used", body = Health),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Response {
    let in_force = state.shared.checker();
    let revision = in_force.revision();
    let snapshot = if in_force.is_mapped() {
        "mapped"
    } else {
        "in memory"
    };
    drop(in_force);
    let policy = state.shared.policy_label();
    let refusal = state.shared.policy_refusal();
    let registry = state.shared.registry_problem();
    let counters = state.shared.counters_problem();
    let problems: Vec<String> = refusal
        .iter()
        .map(|p| format!("policy: {p}"))
        .chain(registry.iter().map(|p| format!("registry: {p}")))
        .chain(counters.iter().map(|p| format!("shared state: {p}")))
        .collect();
    let (status, health) = if problems.is_empty() {
        (StatusCode::OK, "ok")
    } else if refusal.is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "policy_error")
    } else if registry.is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    } else {
        (StatusCode::OK, "degraded")
    };
    let body = Health {
        status: health,
        reason: refusal,
        revision,
        policy,
        snapshot,
        problems,
    };
    (status, axum::Json(body)).into_response()
}

/// What `/healthz` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, `degraded` or `policy_error`.
    status: &'static str,
    /// Why the policy is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The registry's revision in force.
    revision: u64,
    /// The policy in force.
    policy: String,
    /// `mapped` or `in memory`.
    snapshot: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi::document);
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics",
        content_type = "text/plain; version=0.0.4")))]
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

/// Polls the registry and policy files, flushes usage, and reloads on SIGHUP.
fn spawn_watchers(shared: &Arc<Shared>, options: &ServeOptions, mut hangups: Signal) {
    let mut watched = vec![
        (options.registry.clone(), Reload::Registry),
        (signing_keys_path(&options.registry), Reload::SigningKeys),
    ];
    if let Some(path) = &options.policy {
        watched.push((path.clone(), Reload::Policy));
    }
    for (path, what) in watched {
        let shared = shared.clone();
        let interval = options.watch_interval;
        tokio::spawn(async move {
            let registry = matches!(what, Reload::Registry);
            // The registry's watcher starts from nothing: a change made
            // while serve started is read (and the file in force is found
            // in force, and skipped).
            // The registry's stamp covers its changes file too.
            let stamp_of = move |path: &std::path::Path| {
                if registry {
                    RegistryStamp::of(path).ok()
                } else {
                    FileStamp::of(path).ok().map(|main| RegistryStamp {
                        main,
                        changes: None,
                    })
                }
            };
            let mut seen = if registry { None } else { stamp_of(&path) };
            let mut ticker = tokio::time::interval(interval);
            // Ticks missed while a reload ran are not made up at once: a
            // hold-off counts whole intervals.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut held_off = 0;
            // A damaged snapshot is made again at once, then, while it
            // fails (a TOML that does not read), less and less often.
            let mut remake_at = tokio::time::Instant::now();
            let mut remake_backoff = interval;
            loop {
                ticker.tick().await;
                // A management write puts its own file in force: wait a
                // little for it rather than read that file again, but only
                // a few ticks, so that writes kept in flight (failing, or
                // waiting on the lock) cannot hold other changes back.
                if registry && shared.writing() && held_off < MAX_HELD_OFF_TICKS {
                    held_off += 1;
                    continue;
                }
                held_off = 0;
                let now = stamp_of(&path);
                // A snapshot in force that could not be read, or whose file
                // changed in place, is made again from the TOML, whatever
                // the file's stamp. (Off the async threads: telling a
                // change of its times from one of its bytes reads it.)
                if registry {
                    let looked = shared.clone();
                    let damaged = tokio::task::spawn_blocking(move || looked.snapshot_damaged())
                        .await
                        .unwrap_or(true);
                    if !damaged {
                        remake_backoff = interval;
                    } else if tokio::time::Instant::now() >= remake_at {
                        tracing::error!(
                            "the registry snapshot in force is damaged; making it again"
                        );
                        seen = now;
                        Reload::RegistryAnyway.run_blocking(&shared).await;
                        remake_at = tokio::time::Instant::now() + remake_backoff;
                        remake_backoff = (remake_backoff * 2).min(MAX_REMAKE_BACKOFF);
                        continue;
                    }
                }
                // A file that disappears is reloaded too, so that the
                // failure is logged and reported by /healthz.
                if now != seen {
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
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the registry and the policy");
            Reload::RegistryAnyway.run_blocking(&on_hangup).await;
            Reload::Policy.run_blocking(&on_hangup).await;
        }
    });
}

/// The longest a damaged snapshot that cannot be made again waits between
/// two attempts.
const MAX_REMAKE_BACKOFF: Duration = Duration::from_secs(30);

/// The most watch ticks in a row the registry's watcher waits for a
/// management write in flight.
const MAX_HELD_OFF_TICKS: u32 = 2;

#[derive(Clone, Copy)]
enum Reload {
    /// The registry file, unless the file in force is still there.
    Registry,
    /// The registry file, whatever its stamp (SIGHUP).
    RegistryAnyway,
    Policy,
    SigningKeys,
}

impl Reload {
    /// Reloads off the async threads: loading parses files and may compile.
    async fn run_blocking(self, shared: &Arc<Shared>) {
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || match self {
            Reload::Registry => shared.reload_registry(false),
            Reload::RegistryAnyway => shared.reload_registry(true),
            Reload::Policy => shared.reload_policy(),
            Reload::SigningKeys => shared.reload_signing_keys(),
        })
        .await;
    }
}

/// The signals serve acts on.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn register() -> Result<Signals> {
        let catch = |kind| signal(kind).context("cannot listen for signals");
        Ok(Signals {
            hangup: catch(SignalKind::hangup())?,
            terminate: catch(SignalKind::terminate())?,
            interrupt: catch(SignalKind::interrupt())?,
        })
    }
}

async fn shutdown_signal(mut terminate: Signal, mut interrupt: Signal) {
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("interrupted: shutting down"),
    }
}
