//! What the host counts, exposed in Prometheus text format at `/metrics` on
//! the admin listener.
//!
//! One [`Metrics`] per app, shared by the triggers (which record as requests
//! and messages flow) and the admin endpoint (which encodes it). Labels are
//! bounded: routes are the manifest's patterns, never request paths, so a
//! client cannot grow the series without end.
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub component: String,
    /// The matched route as the manifest writes it (`/products/...`).
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub component: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub component: String,
    /// `trap`, `timeout` or `busy` (no instance slot free).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwapLabels {
    pub component: String,
    /// `swapped`, `refused` or `rolled_back`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub channel: String,
    pub subscriber: String,
}

/// Latency buckets from 0.5 ms to about 16 s: a cached read and a slow
/// checkout both land in a bucket of their own.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Instantiation takes tens of microseconds with the pooling allocator.
fn instantiation() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub instantiation: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Family<ComponentLabels, Gauge>,
    pub failures: Family<FailureLabels, Counter>,
    pub swaps: Family<SwapLabels, Counter>,
    pub bus_published: Family<ChannelLabels, Counter>,
    pub bus_delivered: Family<SubscriptionLabels, Counter>,
    /// Failed deliveries; each is retried until `max_attempts`, then dead-lettered.
    pub bus_failed: Family<SubscriptionLabels, Counter>,
    /// Set when scraped, from the backend: what is still waiting.
    pub bus_lag: Family<SubscriptionLabels, Gauge>,
    /// Set when scraped: the dead letters waiting for a replay.
    pub bus_dead_letters: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bazaar");
        let requests = Family::default();
        registry.register("http_requests", "HTTP requests by component, route and status", requests.clone());
        let request_duration = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register("http_request_duration_seconds", "Time to the response head", request_duration.clone());
        let instantiation = Family::new_with_constructor(instantiation as fn() -> Histogram);
        registry.register("instantiation_seconds", "Time to instantiate a component", instantiation.clone());
        let in_flight = Family::default();
        registry.register("http_requests_in_flight", "Requests being handled now", in_flight.clone());
        let failures = Family::default();
        registry.register("component_failures", "Requests a component did not answer: trap, timeout or busy", failures.clone());
        let swaps = Family::default();
        registry.register("component_swaps", "Hot swaps and rollbacks, and refused swaps", swaps.clone());
        let bus_published = Family::default();
        registry.register("bus_published", "Messages published to the bus", bus_published.clone());
        let bus_delivered = Family::default();
        registry.register("bus_delivered", "Messages a subscriber handled", bus_delivered.clone());
        let bus_failed = Family::default();
        registry.register(
            "bus_failed_deliveries",
            "Deliveries a subscriber failed; retried until max_attempts, then dead-lettered",
            bus_failed.clone(),
        );
        let bus_lag = Family::default();
        registry.register("bus_consumer_lag", "Messages a subscriber has not acknowledged yet", bus_lag.clone());
        let bus_dead_letters = Gauge::<i64, AtomicI64>::default();
        registry.register("bus_dead_letters", "Dead letters waiting for a replay", bus_dead_letters.clone());
        Self {
            registry,
            requests,
            request_duration,
            instantiation,
            in_flight,
            failures,
            swaps,
            bus_published,
            bus_delivered,
            bus_failed,
            bus_lag,
            bus_dead_letters,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counts a request as in flight until dropped, so a request cut short by a
/// disconnect is still taken off.
pub struct InFlight(Gauge);

impl InFlight {
    pub fn start(metrics: &Metrics, component: &str) -> Self {
        let gauge = metrics.in_flight.get_or_create(&ComponentLabels { component: component.into() }).clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_recorded_requests() {
        let m = Metrics::new();
        let labels = RequestLabels { component: "hello".into(), route: "/hello".into(), status: 200 };
        m.requests.get_or_create(&labels).inc();
        drop(InFlight::start(&m, "hello"));
        let text = m.encode();
        assert!(text.contains(r#"bazaar_http_requests_total{component="hello",route="/hello",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"bazaar_http_requests_in_flight{component="hello"} 0"#), "{text}");
    }
}
