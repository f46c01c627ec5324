//! `/metrics`, in the Prometheus text format: checks by decision and code,
//! a latency histogram, reloads, policy errors, and policy instances.

use std::time::Duration;

use crate::policy::InstanceGauges;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    // Static names: a label made of `String`s cost two allocations a check.
    decision: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    /// `served`, or `refused` past the connection cap.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    what: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    state: String,
}

pub struct Metrics {
    registry: Registry,
    checks: Family<CheckLabels, Counter>,
    latency: Histogram,
    reloads: Family<ReloadLabels, Counter>,
    policy_errors: Counter,
    connections: Family<ConnectionLabels, Counter>,
    open_connections: Gauge,
    instances: Family<InstanceLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keyhost");
        let checks = Family::<CheckLabels, Counter>::default();
        // 50 µs to about 400 ms.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        let reloads = Family::<ReloadLabels, Counter>::default();
        let policy_errors = Counter::default();
        registry.register("checks", "Key checks by decision and code", checks.clone());
        registry.register(
            "check_latency_seconds",
            "Time to check a key",
            latency.clone(),
        );
        registry.register(
            "reloads",
            "Registry and policy reloads by result",
            reloads.clone(),
        );
        registry.register(
            "policy_errors",
            "Checks failed closed by a policy fault",
            policy_errors.clone(),
        );
        let connections = Family::<ConnectionLabels, Counter>::default();
        let open_connections = Gauge::default();
        registry.register(
            "connections",
            "Accepted connections, served or refused past the cap",
            connections.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now",
            open_connections.clone(),
        );
        let instances = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "policy_instances",
            "Instances of the live policy, by state (idle or busy)",
            instances.clone(),
        );
        Metrics {
            registry,
            checks,
            latency,
            reloads,
            policy_errors,
            connections,
            open_connections,
            instances,
        }
    }

    pub fn check(&self, code: Option<&'static str>, took: Duration) {
        let labels = CheckLabels {
            decision: if code.is_none() { "allow" } else { "deny" },
            code: code.unwrap_or(""),
        };
        self.checks.get_or_create(&labels).inc();
        self.latency.observe(took.as_secs_f64());
        if code == Some("policy_error") {
            self.policy_errors.inc();
        }
    }

    /// Counts the shared state's failed calls (`--state`).
    pub fn count_state_errors(&mut self, errors: Counter) {
        self.registry.register(
            "state_errors",
            "Calls to the shared state (Redis) that failed or timed out",
            errors,
        );
    }

    /// Counts the decision log's lines dropped under overload.
    pub fn count_dropped_decisions(&mut self, dropped: Counter) {
        self.registry.register(
            "decision_log_dropped",
            "Decision log lines dropped because its writer was behind",
            dropped,
        );
    }

    /// A connection accepted: served, or refused past the cap.
    pub fn connection(&self, served: bool) {
        let outcome = if served { "served" } else { "refused" };
        self.connections
            .get_or_create(&ConnectionLabels { outcome })
            .inc();
    }

    /// The number of connections open changed by `delta`.
    pub fn open_connections(&self, delta: i64) {
        self.open_connections.inc_by(delta);
    }

    /// The gauges the policy pool keeps up to date.
    pub fn instance_gauges(&self) -> InstanceGauges {
        let gauge = |state: &str| {
            self.instances
                .get_or_create(&InstanceLabels {
                    state: state.to_string(),
                })
                .clone()
        };
        InstanceGauges {
            idle: gauge("idle"),
            busy: gauge("busy"),
        }
    }

    pub fn reload(&self, what: &str, ok: bool) {
        let labels = ReloadLabels {
            what: what.to_string(),
            result: if ok { "ok" } else { "error" }.to_string(),
        };
        self.reloads.get_or_create(&labels).inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
