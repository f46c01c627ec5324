//! A VM's root context: it reads the configuration, holds the snapshot and
//! the policy, and keeps the snapshot current.
//!
//! Live mode: every VM looks at the shared data on a short tick and takes a
//! newer snapshot that another has put there (verified, and never older
//! than its own). One fetch is in flight at a time, whichever VM claims it:
//! the due time of the next fetch is shared, and claimed with
//! compare-and-swap. A fetch proves the replica credential without sending
//! it, and takes only an answer keyhost serve proved for it. A failed fetch
//! keeps the snapshot in force, logs why, and sets the
//! `keyhost_snapshot_stale` gauge; past `max_stale_ms`, if set, checks fail
//! closed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use keyhost_core::key_format;
use keyhost_core::lookup::Lookup;
use keyhost_core::replica_proof;
use keyhost_core::request::Checking;
use keyhost_core::snapshot::Snapshot;
use keyhost_filter::config::{Live, inline_snapshot, verified};
use keyhost_filter::live::{self, Fetched};
use keyhost_filter::{FilterConfig, Held, Policy, RegistrySource};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};

use crate::request::Request;

/// How often a VM looks for a snapshot another VM fetched.
const TICK: Duration = Duration::from_millis(100);

pub struct Root<P> {
    checking: Rc<Checking>,
    trust_source_address: bool,
    held: Rc<RefCell<Held<P>>>,
    live: Option<Fetching>,
}

impl<P: Policy + Default> Default for Root<P> {
    fn default() -> Self {
        Root {
            checking: Rc::default(),
            trust_source_address: false,
            held: Rc::new(RefCell::new(Held::new(P::default()))),
            live: None,
        }
    }
}

/// A live filter's state.
struct Fetching {
    live: Live,
    /// The SHA-256 of the replica credential: the key of its proofs.
    key: [u8; 32],
    /// The shared data's keys, per endpoint.
    snapshot_key: String,
    etag_key: String,
    due_key: String,
    /// When any VM last had a proven answer: staleness is the process's,
    /// not one VM's.
    proven_key: String,
    /// The entity tag of the snapshot this VM holds.
    etag: Option<String>,
    /// This VM's fetch in flight: its token and what it sent.
    in_flight: Option<(u32, live::Fetch)>,
    /// When keyhost serve last gave a proven answer (ms since the epoch).
    proven_at: u64,
    metrics: Metrics,
}

struct Metrics {
    stale: Option<u32>,
    revision: Option<u32>,
    failures: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            stale: hostcalls::define_metric(MetricType::Gauge, "keyhost_snapshot_stale").ok(),
            revision: hostcalls::define_metric(MetricType::Gauge, "keyhost_snapshot_revision").ok(),
            failures: hostcalls::define_metric(
                MetricType::Counter,
                "keyhost_snapshot_fetch_failures",
            )
            .ok(),
        }
    }

    fn record(id: Option<u32>, value: u64) {
        if let Some(id) = id {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// A number of milliseconds in shared data; 0 when there is none.
fn shared_ms(key: &str) -> u64 {
    hostcalls::get_shared_data(key)
        .ok()
        .and_then(|(value, _)| value)
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, &format!("keyhost: {message}"));
}

impl<P: Policy> Root<P> {
    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Takes a snapshot into force.
    fn take(&self, snapshot: Snapshot<Vec<u8>>) {
        log(
            LogLevel::Info,
            &format!(
                "registry snapshot of revision {} ({} keys) in force",
                snapshot.revision(),
                snapshot.header().keys
            ),
        );
        if let Some(fetching) = &self.live {
            Metrics::record(fetching.metrics.revision, snapshot.revision());
        }
        self.held.borrow_mut().replace(snapshot);
    }

    /// Takes the snapshot another VM shared, when it is not the one held.
    fn adopt_shared(&mut self) {
        let Some(fetching) = &self.live else { return };
        let (Some(etag), _) = self.get_shared_data(&fetching.etag_key) else {
            return;
        };
        let etag = String::from_utf8_lossy(&etag).into_owned();
        if fetching.etag.as_deref() == Some(etag.as_str()) {
            return;
        }
        let (Some(bytes), _) = self.get_shared_data(&fetching.snapshot_key) else {
            return;
        };
        // Verified again, once per tag: the shared data is the whole
        // process's to write. Never older than the snapshot held.
        let adopted = verified(bytes)
            .and_then(|snapshot| match snapshot.etag() {
                Ok(own) if own == etag => Ok(snapshot),
                _ => Err("its tag is not its own".to_string()),
            })
            .and_then(|snapshot| {
                let held = self.held.borrow();
                live::newer_than(snapshot, held.snapshot())
            });
        // Either way, not looked at again until the tag changes.
        match adopted {
            Ok(snapshot) => {
                self.take(snapshot);
                if let Some(fetching) = &mut self.live {
                    fetching.etag = Some(etag);
                }
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("the shared snapshot is refused: {e}"),
                );
                if let Some(fetching) = &mut self.live {
                    fetching.etag = Some(etag);
                }
            }
        }
    }

    /// Claims the next fetch when it is due, and sends it.
    fn fetch_when_due(&mut self) {
        let now = self.now_ms();
        let Some(fetching) = &self.live else { return };
        if fetching.in_flight.is_some() {
            return;
        }
        let (due, cas) = self.get_shared_data(&fetching.due_key);
        let due = due
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0);
        if now < due {
            return;
        }
        // In flight until answered or timed out; then the next is due.
        let until = now + fetching.live.timeout_ms + 100;
        if self
            .set_shared_data(&fetching.due_key, Some(until.to_string().as_bytes()), cas)
            .is_err()
        {
            return; // another VM claimed it
        }
        let fetch = {
            let held = self.held.borrow();
            live::fetch(&fetching.live, &fetching.key, held.snapshot())
        };
        let fetch = match fetch {
            Ok(fetch) => fetch,
            Err(why) => return self.failed(&why),
        };
        let headers: Vec<(&str, &str)> = fetch
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let sent = self.dispatch_http_call(
            &fetching.live.cluster,
            headers,
            None,
            Vec::new(),
            Duration::from_millis(fetching.live.timeout_ms),
        );
        match sent {
            Ok(token) => {
                if let Some(fetching) = &mut self.live {
                    fetching.in_flight = Some((token, fetch));
                }
            }
            Err(status) => self.failed(&format!(
                "cannot reach cluster {:?}: {status:?}",
                key_format::redact(&fetching.live.cluster)
            )),
        }
    }

    /// Fails checks closed once the snapshot is older than `max_stale_ms`
    /// allows, counted from keyhost serve's last proven answer.
    fn expire_when_stale(&mut self) {
        let now = self.now_ms();
        let Some(fetching) = &self.live else { return };
        let Some(max) = fetching.live.max_stale_ms else {
            return;
        };
        let shared = shared_ms(&fetching.proven_key);
        let since = now.saturating_sub(fetching.proven_at.max(shared));
        let why = (since > max).then(|| {
            format!("no proven answer from keyhost serve for {since} ms (max_stale_ms is {max}): failing closed")
        });
        self.held.borrow_mut().expire(why);
    }

    /// A fetch failed: the snapshot in force stays.
    fn failed(&mut self, why: &str) {
        let now = self.now_ms();
        let Some(fetching) = &mut self.live else {
            return;
        };
        fetching.in_flight = None;
        let revision = self.held.borrow().snapshot().map(|s| s.revision());
        let kept = revision.map_or(
            "no snapshot yet: every check fails closed".to_string(),
            |r| format!("keeping the last good snapshot, revision {r}"),
        );
        log(
            LogLevel::Warn,
            &format!("snapshot fetch failed ({why}); {kept}"),
        );
        Metrics::record(fetching.metrics.stale, 1);
        if let Some(id) = fetching.metrics.failures {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let next = now + fetching.live.every_ms;
        let _ =
            hostcalls::set_shared_data(&fetching.due_key, Some(next.to_string().as_bytes()), None);
    }
}

impl<P: Policy> Context for Root<P> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(fetching) = &mut self.live else {
            return;
        };
        let Some((sent, fetch)) = fetching.in_flight.take() else {
            return;
        };
        if sent != token {
            fetching.in_flight = Some((sent, fetch));
            return;
        }
        let key = fetching.key;
        if headers == 0 {
            // The call failed: no connection, a reset, a timeout, or an
            // answer past Envoy's `http.async_response_buffer_limit`.
            return self.failed(
                "no answer (no connection, a timeout, or a snapshot larger than Envoy's http.async_response_buffer_limit)",
            );
        }
        // As bytes: an answer is anybody's on the wire until proven, and the
        // SDK's string getters panic on a value that is not UTF-8.
        let header = |name: &str| {
            self.get_http_call_response_header_bytes(name)
                .and_then(|value| String::from_utf8(value).ok())
        };
        let status = header(":status");
        let proof = header(replica_proof::ANSWER_PROOF_HEADER);
        let body = (body_size > 0)
            .then(|| self.get_http_call_response_body(0, body_size))
            .flatten();
        let answer = {
            let held = self.held.borrow();
            live::answer(
                &fetch,
                &key,
                status.as_deref(),
                proof.as_deref(),
                body,
                held.snapshot(),
            )
        };
        match answer {
            Err(why) => self.failed(&why),
            Ok(fetched) => {
                let now = self.now_ms();
                let Some(fetching) = &mut self.live else {
                    return;
                };
                fetching.proven_at = now;
                let _ = hostcalls::set_shared_data(
                    &fetching.proven_key,
                    Some(now.to_string().as_bytes()),
                    None,
                );
                Metrics::record(fetching.metrics.stale, 0);
                if let Fetched::New(snapshot) = fetched {
                    let etag = snapshot.etag().unwrap_or_default();
                    if let Ok(bytes) = snapshot.bytes() {
                        // The snapshot first, then its tag: a VM that sees
                        // the new tag finds the new snapshot.
                        let _ =
                            hostcalls::set_shared_data(&fetching.snapshot_key, Some(&bytes), None);
                        let _ = hostcalls::set_shared_data(
                            &fetching.etag_key,
                            Some(etag.as_bytes()),
                            None,
                        );
                    }
                    fetching.etag = Some(etag);
                    self.take(*snapshot);
                } else {
                    self.held.borrow_mut().expire(None);
                }
                let Some(fetching) = &self.live else { return };
                let next = now + fetching.live.every_ms;
                let _ = hostcalls::set_shared_data(
                    &fetching.due_key,
                    Some(next.to_string().as_bytes()),
                    None,
                );
            }
        }
    }
}

impl<P: Policy + Default + 'static> RootContext for Root<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log(LogLevel::Critical, "the filter has no configuration");
            return false;
        };
        let config = match FilterConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log(LogLevel::Critical, &e);
                return false;
            }
        };
        self.checking = Rc::new(config.checking);
        self.held.borrow_mut().forget_answers();
        self.trust_source_address = config.trust_source_address.unwrap_or(false);
        match config.registry {
            RegistrySource::Inline(base64) => match inline_snapshot(&base64) {
                Ok(snapshot) => self.take(snapshot),
                Err(e) => {
                    log(LogLevel::Critical, &format!("`registry.inline`: {e}"));
                    return false;
                }
            },
            RegistrySource::Live(live) => {
                let credential = std::env::var(&live.credential_env).ok();
                let Some(credential) = credential.filter(|c| !c.is_empty()) else {
                    // Redacted: the credential itself, put where its
                    // variable's name goes, must not reach the log.
                    log(
                        LogLevel::Critical,
                        &format!(
                            "the environment variable {} holds no replica credential; pass it to the VM with vm_config.environment_variables.host_env_keys",
                            key_format::redact(&live.credential_env)
                        ),
                    );
                    return false;
                };
                let key = key_format::hash(&credential);
                let endpoint = live::shared_name(&live, &key);
                self.live = Some(Fetching {
                    snapshot_key: format!("{endpoint}/snapshot"),
                    etag_key: format!("{endpoint}/etag"),
                    due_key: format!("{endpoint}/due"),
                    live,
                    key,
                    etag: None,
                    in_flight: None,
                    // A VM that starts (or restarts) on a snapshot others
                    // hold counts from their last proven answer, not from
                    // its own start.
                    proven_at: shared_ms(&format!("{endpoint}/proven")),
                    proven_key: format!("{endpoint}/proven"),
                    metrics: Metrics::define(),
                });
                self.set_tick_period(TICK);
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.adopt_shared();
        self.fetch_when_due();
        self.expire_when_stale();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            checking: self.checking.clone(),
            trust_source_address: self.trust_source_address,
            held: self.held.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
