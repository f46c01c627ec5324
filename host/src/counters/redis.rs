//! Rate limits and usage in Redis (or Valkey), shared by replicas.
//!
//! - A rate-limit decision is one server-side script (`sliding_window.lua`):
//!   at most COUNT uses in any PERIOD, timed by the Redis server's clock, with
//!   no read-then-write race between replicas. Large limits are leased and
//!   refusals remembered (`lease.rs`), so a busy key is not a Redis call per
//!   request.
//! - Usage is counted in memory and merged every flush by another script
//!   (`merge_usage.lua`), exactly once: a batch whose answer was lost is sent
//!   again under the same marker, and Redis skips it.
//! - When Redis is down or slow (past `timeout`), a rate-limit decision fails
//!   open or closed (`OnStateError`), usage waits in memory (up to
//!   `MAX_PENDING_KEYS` keys) until Redis is back, and `problem` says why.
//!   Once a call has failed, checks no longer call Redis at all, so they
//!   decide at once rather than each wait out the client's reconnection: a
//!   probe in the background asks Redis every `PROBE_INTERVAL` until it
//!   answers, and then checks use it again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::runtime::Handle;

use super::Limited;
use super::lease::{Leases, lease_size};
use crate::ratelimit::RateLimit;
use crate::time::Timestamp;
use crate::usage::{Hourly, Usage, Use};

/// What a rate-limit decision does when Redis cannot be reached in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStateError {
    /// Allow: the key is still checked, only its rate limit is not.
    Open,
    /// Deny as `rate_limited`, with `Retry-After: 1`.
    Closed,
}

impl OnStateError {
    /// The choices' names.
    pub const NAMES: [&'static str; 2] = ["open", "closed"];
}

impl std::str::FromStr for OnStateError {
    type Err = String;

    fn from_str(name: &str) -> Result<OnStateError, String> {
        match name {
            "open" => Ok(OnStateError::Open),
            "closed" => Ok(OnStateError::Closed),
            other => Err(format!("{other:?} is neither open nor closed")),
        }
    }
}

/// The most keys whose uses wait in memory while Redis is away; uses of
/// further keys are dropped (and logged).
pub const MAX_PENDING_KEYS: usize = 100_000;

/// How often a Redis known to be down is asked whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Why a call to Redis failed.
struct Failure {
    why: String,
    /// No answer came (a timeout, a refused or dropped connection), as
    /// opposed to an answer that was an error: only then is Redis down.
    unreachable: bool,
}

/// Whether Redis answers, shared by the calls and the probe.
#[derive(Default)]
struct Health {
    /// A call found Redis unreachable and none has reached it since:
    /// checks skip Redis.
    down: AtomicBool,
    /// Why, while it is down.
    problem: Mutex<Option<String>>,
    errors: Counter,
}

impl Health {
    /// Notes how a call ended: logged once when Redis goes and once when it
    /// comes back, never per request. A failure marks Redis down only when
    /// `marks_down` (a check's or the probe's call, not a usage merge, whose
    /// batch may be large) and Redis did not answer at all.
    fn note<T>(&self, result: &Result<T, Failure>, marks_down: bool) {
        let mut problem = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                self.down.store(false, Ordering::Release);
                if let Some(was) = problem.take() {
                    tracing::info!("Redis is back (was: {was})");
                }
            }
            Err(failure) => {
                self.errors.inc();
                let why = &failure.why;
                if problem.is_none() {
                    tracing::error!("shared state unavailable: {why}");
                }
                *problem = Some(why.clone());
                if marks_down && failure.unreachable && !self.down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        "rate limits are decided without Redis until it answers again (asked every {PROBE_INTERVAL:?})"
                    );
                }
            }
        }
    }
}

/// Awaits a Redis call to its end, or to `timeout`.
async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure {
            unreachable: e.is_io_error()
                || e.is_timeout()
                || e.is_connection_refusal()
                || e.is_connection_dropped(),
            why: format!("Redis: {e}"),
        }),
        Err(_) => Err(Failure {
            why: format!("Redis did not answer within {timeout:?}"),
            unreachable: true,
        }),
    }
}

/// How long a usage merge may take: its batch holds every key used since
/// the last one (up to `MAX_PENDING_KEYS` after an outage), more than a
/// check's call.
const MERGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The names keyhost uses in Redis; one registry per database.
const COUNTS: &str = "keyhost:usage:count";
const LAST_USED: &str = "keyhost:usage:last";
const HOURLY: &str = "keyhost:usage:hourly";
const LAST_AUTHN: &str = "keyhost:usage:last_authn";

/// Redis's answer for some keys' usage: counts, last-use times, hourly
/// windows and last authentications, in the keys' order.
type Fetched = (
    Vec<Option<u64>>,
    Vec<Option<i64>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
);

/// A key's rate-limit window: its grants, and the uses they hold. The hash
/// tag keeps both in one slot of a cluster.
fn window_keys(key_id: &str) -> [String; 2] {
    [
        format!("keyhost:window:{{{key_id}}}:grants"),
        format!("keyhost:window:{{{key_id}}}:used"),
    ]
}

#[derive(Default)]
struct Pending {
    /// Uses counted since the last batch was cut.
    counting: BTreeMap<String, Usage>,
    /// A batch sent but not known to be applied, with its number.
    in_flight: Option<(u64, BTreeMap<String, Usage>)>,
    next_batch: u64,
}

/// Rate-limit windows and usage shared by replicas through Redis.
pub struct RedisCounters {
    handle: Handle,
    redis: ConnectionManager,
    timeout: Duration,
    on_error: OnStateError,
    /// Names this process in window members and batch markers.
    replica: String,
    next_member: AtomicU64,
    leases: Leases,
    pending: Mutex<Pending>,
    health: Arc<Health>,
    window: Script,
    merge: Script,
}

impl RedisCounters {
    /// A client for `url` (`redis://HOST:PORT[/DB]`), connecting lazily, so
    /// that serve starts (degraded) while Redis is down. Its calls run on
    /// `handle`'s runtime, which must have worker threads.
    pub fn connect(
        url: &str,
        handle: Handle,
        timeout: Duration,
        on_error: OnStateError,
    ) -> Result<RedisCounters> {
        let client = Client::open(url).map_err(|e| anyhow!("--state {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let redis = {
            let _runtime = handle.enter();
            ConnectionManager::new_lazy_with_config(client, config)
                .context("cannot set up the Redis connection")?
        };
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the operating system's random number generator failed");
        let health = Arc::new(Health::default());
        let probing = (redis.clone(), Arc::downgrade(&health));
        handle.spawn(async move {
            let (mut redis, health) = probing;
            let mut ticks = tokio::time::interval(PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(health) = health.upgrade() else {
                    return;
                };
                if health.down.load(Ordering::Acquire) {
                    let ping = redis::cmd("PING");
                    let answered = within(timeout, ping.query_async::<()>(&mut redis)).await;
                    health.note(&answered, true);
                }
            }
        });
        Ok(RedisCounters {
            handle,
            redis,
            timeout,
            on_error,
            replica: hex::encode(id),
            next_member: AtomicU64::new(0),
            leases: Leases::default(),
            pending: Mutex::new(Pending::default()),
            health,
            window: Script::new(include_str!("sliding_window.lua")),
            merge: Script::new(include_str!("merge_usage.lua")),
        })
    }

    /// Counts calls to Redis that failed or timed out, for `/metrics`.
    pub fn error_counter(&self) -> Counter {
        self.health.errors.clone()
    }

    /// Runs a Redis call (a usage merge or read) to its end, or to
    /// `MERGE_TIMEOUT`. Blocks: for callers off the async threads. Its
    /// failure never stops checks from calling Redis.
    fn run<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let result = self
            .handle
            .block_on(within(MERGE_TIMEOUT.max(self.timeout), call));
        self.health.note(&result, false);
        result.map_err(|failure| failure.why)
    }

    /// Awaits a check's Redis call to its end, or to the timeout, and notes
    /// whether Redis answered.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let result = within(self.timeout, call).await;
        self.health.note(&result, true);
        result.map_err(|failure| failure.why)
    }

    /// Takes one use of `key_id`'s rate limit.
    pub async fn take(&self, key_id: &str, limit: RateLimit) -> Limited {
        let now = Instant::now();
        if let Some(decided) = self.leases.spend(key_id, now) {
            return match decided {
                Ok(()) => Limited::Allowed,
                Err(wait) => Limited::Wait(wait),
            };
        }
        let unreachable = match self.on_error {
            OnStateError::Open => Limited::Allowed,
            OnStateError::Closed => Limited::Unreachable,
        };
        if self.health.down.load(Ordering::Acquire) {
            return unreachable;
        }
        let member = format!(
            "{}:{}",
            self.replica,
            self.next_member.fetch_add(1, Ordering::Relaxed)
        );
        let period = u64::try_from(limit.per.as_micros()).unwrap_or(u64::MAX);
        let mut redis = self.redis.clone();
        let decided = self
            .call(async {
                self.window
                    .key(&window_keys(key_id))
                    .arg(limit.count)
                    .arg(period)
                    .arg(member)
                    .arg(lease_size(limit))
                    .invoke_async::<(u32, u64)>(&mut redis)
                    .await
            })
            .await;
        match decided {
            Ok((taken, wait)) => {
                let wait = Duration::from_micros(wait.max(1));
                self.leases.keep(key_id, limit, taken, wait, now);
                if taken > 0 {
                    Limited::Allowed
                } else {
                    Limited::Wait(wait)
                }
            }
            Err(_) => unreachable,
        }
    }

    /// Counts a use of `key_id`.
    pub fn record(&self, key_id: &str, used: Use<'_>) {
        let mut pending = self.pending.lock().expect("usage lock");
        let full = pending.counting.len() >= MAX_PENDING_KEYS;
        let usage = match pending.counting.get_mut(key_id) {
            Some(usage) => usage,
            None if full => {
                tracing::warn!(
                    "{MAX_PENDING_KEYS} keys' uses wait for Redis; a use of another key is not counted"
                );
                return;
            }
            None => pending.counting.entry(key_id.to_string()).or_default(),
        };
        usage.add_use(used);
    }

    /// Merges the uses counted here into Redis; with none to merge, checks
    /// that Redis answers, so health comes back without traffic.
    pub fn flush(&self) -> Result<()> {
        let batch = {
            let mut pending = self.pending.lock().expect("usage lock");
            if pending.in_flight.is_none() && !pending.counting.is_empty() {
                let number = pending.next_batch;
                pending.next_batch += 1;
                let counted = std::mem::take(&mut pending.counting);
                pending.in_flight = Some((number, counted));
            }
            pending.in_flight.clone()
        };
        let mut redis = self.redis.clone();
        let Some((number, batch)) = batch else {
            return self
                .run(async { redis::cmd("PING").query_async::<()>(&mut redis).await })
                .map_err(|why| anyhow!(why));
        };
        let mut invocation = self.merge.key(COUNTS);
        invocation
            .key(LAST_USED)
            .key(format!("keyhost:batch:{}:{number}", self.replica))
            .key(HOURLY)
            .key(LAST_AUTHN);
        for (key_id, usage) in &batch {
            invocation
                .arg(key_id)
                .arg(usage.count)
                .arg(usage.last_used.map_or(0, |t| t.0))
                .arg(serde_json::to_string(&usage.hourly).expect("a window serializes"))
                .arg(serde_json::to_string(&usage.last_authn).expect("an address serializes"));
        }
        self.run(async { invocation.invoke_async::<i64>(&mut redis).await })
            .map_err(|why| {
                anyhow!(
                    "{why}; the uses of {} keys wait in memory for it",
                    self.pending_keys()
                )
            })?;
        self.pending.lock().expect("usage lock").in_flight = None;
        Ok(())
    }

    /// Redis's figures for these keys, plus the uses this process has not
    /// merged yet.
    pub fn usage_of(&self, key_ids: &[&str]) -> BTreeMap<String, Usage> {
        let mut merged = BTreeMap::new();
        if !key_ids.is_empty() {
            let mut redis = self.redis.clone();
            let fetched = self.run(async {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(COUNTS)
                    .arg(key_ids)
                    .cmd("HMGET")
                    .arg(LAST_USED)
                    .arg(key_ids)
                    .cmd("HMGET")
                    .arg(HOURLY)
                    .arg(key_ids)
                    .cmd("HMGET")
                    .arg(LAST_AUTHN)
                    .arg(key_ids)
                    .query_async::<Fetched>(&mut redis)
                    .await
            });
            if let Ok((counts, lasts, hourlies, authns)) = fetched {
                let rows = key_ids
                    .iter()
                    .zip(counts)
                    .zip(lasts)
                    .zip(hourlies)
                    .zip(authns);
                for ((((id, count), last), hourly), authn) in rows {
                    if count.is_some() || last.is_some() {
                        let usage = Usage {
                            count: count.unwrap_or(0),
                            last_used: last.filter(|t| *t > 0).map(Timestamp),
                            // Written by keyhost alone; one that does not
                            // read is left out rather than failing the rest.
                            last_authn: authn
                                .and_then(|json| serde_json::from_str(&json).ok())
                                .unwrap_or_default(),
                            // Redis's Lua JSON writes whole numbers as such.
                            hourly: hourly
                                .and_then(|json| serde_json::from_str::<Hourly>(&json).ok())
                                .unwrap_or_default(),
                        };
                        merged.insert(id.to_string(), usage);
                    }
                }
            }
        }
        let pending = self.pending.lock().expect("usage lock");
        let unmerged = pending
            .in_flight
            .iter()
            .flat_map(|(_, batch)| batch.iter())
            .chain(pending.counting.iter());
        for (id, usage) in unmerged {
            if key_ids.contains(&id.as_str()) {
                merged.entry(id.clone()).or_default().merge(usage);
            }
        }
        merged
    }

    /// Why the shared counters may be off, if they may.
    pub fn problem(&self) -> Option<String> {
        self.health.problem.lock().expect("problem lock").clone()
    }

    /// How many keys' uses wait in memory for Redis.
    pub fn pending_keys(&self) -> usize {
        let pending = self.pending.lock().expect("usage lock");
        let in_flight = pending
            .in_flight
            .as_ref()
            .map_or(0, |(_, batch)| batch.len());
        pending.counting.len() + in_flight
    }
}
