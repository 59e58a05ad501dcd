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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    /// A server, without credentials: `postgres://host:port/db`,
    /// `redis://host:port/db`.
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisConnectionLabels {
    pub address: String,
    /// `shared` (the address's multiplexed connection, used by every
    /// instance) or `dedicated` (a guest's own, after SELECT, MULTI, ...).
    pub kind: &'static str,
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
    /// Requests from the network waiting for their turn (see
    /// [`crate::trigger::admission`]).
    pub http_queued: Gauge<i64, AtomicI64>,
    /// How many requests from the network may be served at once now: the
    /// fixed limit, or where `auto` has it (0: no limit).
    pub http_admission_limit: Gauge,
    /// Requests refused with a 503 after waiting their whole deadline.
    pub http_shed: Counter,
    /// How long each admitted request waited for its turn (0 when one was
    /// free): with a limit, the share of the latency spent at the door.
    pub http_admission_wait: Histogram,
    pub failures: Family<FailureLabels, Counter>,
    pub swaps: Family<SwapLabels, Counter>,
    pub bus_published: Family<ChannelLabels, Counter>,
    pub bus_delivered: Family<SubscriptionLabels, Counter>,
    /// Failed deliveries; each is retried until `max_attempts`, then dead-lettered.
    pub bus_failed: Family<SubscriptionLabels, Counter>,
    /// Deliveries after a failed one (or a crash before the acknowledgement).
    pub bus_retried: Family<SubscriptionLabels, Counter>,
    /// Messages that failed their last attempt and became dead letters.
    pub bus_dead_lettered: Family<SubscriptionLabels, Counter>,
    /// Set when scraped, from the backend: what is still waiting.
    pub bus_lag: Family<SubscriptionLabels, Gauge>,
    /// Set when scraped: the dead letters waiting for a replay.
    pub bus_dead_letters: Gauge<i64, AtomicI64>,
    /// Set when scraped, from the Postgres pools ([`Metrics::set_postgres_pools`]).
    pub postgres_pool_size: Family<AddressLabels, Gauge>,
    pub postgres_pool_available: Family<AddressLabels, Gauge>,
    pub postgres_pool_waiting: Family<AddressLabels, Gauge>,
    pub postgres_pool_max_size: Family<AddressLabels, Gauge>,
    /// Set when scraped, from the Redis capability's connections.
    pub redis_connections: Family<RedisConnectionLabels, Gauge>,
}

/// One Postgres pool as scraped (pools of one address added up).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub address: String,
    /// Connections open.
    pub size: usize,
    /// Of those, idle ones ready to hand out.
    pub available: usize,
    /// Instances waiting for a connection, all being in use.
    pub waiting: usize,
    pub max_size: usize,
}

/// One Redis address's connections as scraped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisUsage {
    pub address: String,
    /// 1 once the shared connection has connected.
    pub shared: usize,
    pub dedicated: usize,
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
        let http_queued = Gauge::<i64, AtomicI64>::default();
        registry.register("http_requests_queued", "Requests from the network waiting to be admitted", http_queued.clone());
        let http_admission_limit = Gauge::default();
        registry.register(
            "http_admission_limit",
            "Requests from the network served at once at most, now (--max-concurrent-requests; 0: no limit)",
            http_admission_limit.clone(),
        );
        let http_shed = Counter::default();
        registry.register("http_requests_shed", "Requests refused with a 503 after waiting their whole deadline to be admitted", http_shed.clone());
        let http_admission_wait = latency();
        registry.register(
            "http_admission_wait_seconds",
            "Time admitted requests waited for their turn (--max-concurrent-requests)",
            http_admission_wait.clone(),
        );
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
        let bus_retried = Family::default();
        registry.register("bus_retried", "Deliveries retried after a failure", bus_retried.clone());
        let bus_dead_lettered = Family::default();
        registry.register("bus_dead_lettered", "Messages moved to the dead letters after their last attempt failed", bus_dead_lettered.clone());
        let bus_dead_letters = Gauge::<i64, AtomicI64>::default();
        registry.register("bus_dead_letters", "Dead letters waiting for a replay", bus_dead_letters.clone());
        let postgres_pool_size = Family::default();
        registry.register("postgres_pool_size", "Connections open in a Postgres pool", postgres_pool_size.clone());
        let postgres_pool_available = Family::default();
        registry.register("postgres_pool_available", "Idle connections of a Postgres pool", postgres_pool_available.clone());
        let postgres_pool_waiting = Family::default();
        registry.register(
            "postgres_pool_waiting",
            "Instances waiting for a Postgres connection, every one being in use",
            postgres_pool_waiting.clone(),
        );
        let postgres_pool_max_size = Family::default();
        registry.register("postgres_pool_max_size", "Most connections a Postgres pool opens", postgres_pool_max_size.clone());
        let redis_connections = Family::default();
        registry.register("redis_connections", "Connections open to a Redis server, shared or dedicated", redis_connections.clone());
        Self {
            registry,
            requests,
            request_duration,
            instantiation,
            in_flight,
            http_queued,
            http_admission_limit,
            http_shed,
            http_admission_wait,
            failures,
            swaps,
            bus_published,
            bus_delivered,
            bus_failed,
            bus_retried,
            bus_dead_lettered,
            bus_lag,
            bus_dead_letters,
            postgres_pool_size,
            postgres_pool_available,
            postgres_pool_waiting,
            postgres_pool_max_size,
            redis_connections,
        }
    }

    /// Replaces the Postgres pool gauges with `pools` (a pool closed since
    /// the last scrape disappears).
    pub fn set_postgres_pools(&self, pools: &[PoolUsage]) {
        let families = [
            &self.postgres_pool_size,
            &self.postgres_pool_available,
            &self.postgres_pool_waiting,
            &self.postgres_pool_max_size,
        ];
        for family in families {
            family.clear();
        }
        for pool in pools {
            let labels = AddressLabels { address: pool.address.clone() };
            self.postgres_pool_size.get_or_create(&labels).set(pool.size as i64);
            self.postgres_pool_available.get_or_create(&labels).set(pool.available as i64);
            self.postgres_pool_waiting.get_or_create(&labels).set(pool.waiting as i64);
            self.postgres_pool_max_size.get_or_create(&labels).set(pool.max_size as i64);
        }
    }

    /// Replaces the Redis connection gauges with `servers`.
    pub fn set_redis_connections(&self, servers: &[RedisUsage]) {
        self.redis_connections.clear();
        for server in servers {
            for (kind, count) in [("shared", server.shared), ("dedicated", server.dedicated)] {
                let labels = RedisConnectionLabels { address: server.address.clone(), kind };
                self.redis_connections.get_or_create(&labels).set(count as i64);
            }
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

    #[test]
    fn pool_gauges_follow_the_last_scrape() {
        let m = Metrics::new();
        let pool = PoolUsage { address: "postgres://h:5432/a".into(), size: 3, available: 1, waiting: 2, max_size: 16 };
        m.set_postgres_pools(std::slice::from_ref(&pool));
        let text = m.encode();
        assert!(text.contains(r#"bazaar_postgres_pool_size{address="postgres://h:5432/a"} 3"#), "{text}");
        assert!(text.contains(r#"bazaar_postgres_pool_waiting{address="postgres://h:5432/a"} 2"#), "{text}");
        m.set_postgres_pools(&[]);
        assert!(!m.encode().contains("postgres://h:5432/a"), "a closed pool is not reported");
        m.set_redis_connections(&[RedisUsage { address: "redis://h:6379".into(), shared: 1, dedicated: 2 }]);
        let text = m.encode();
        assert!(text.contains(r#"bazaar_redis_connections{address="redis://h:6379",kind="dedicated"} 2"#), "{text}");
    }
}
