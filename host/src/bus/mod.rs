//! The message bus: durable, at-least-once delivery between components.
//!
//! Components publish with Spin's Redis outbound `publish(address, channel,
//! payload)` and subscribe with Spin's Redis trigger (`[[trigger.redis]]`),
//! so their code is the same under Spin and under bazaar. Under Spin that is
//! Redis pub/sub: a message published while a subscriber is down or failing
//! is gone. Under bazaar, a publish to the address of the app's Redis
//! trigger goes into this bus instead, which adds:
//! - **durability**: a publish returns once the message is stored;
//! - **at-least-once delivery**: a message is acknowledged only after the
//!   subscriber's handler returned `Ok`; one delivered but not acknowledged
//!   when the host died is delivered again after restart;
//! - **retries with backoff**, in order: a failing message is retried
//!   (doubling the delay from `retry_backoff_ms` up to `max_backoff_ms`)
//!   before the next message on its channel is delivered to that subscriber;
//! - **dead letters**: after `max_attempts` failures the message moves to a
//!   dead-letter list that `bazaar bus dead-letters` shows and `bazaar bus
//!   replay` sends again (to the one subscriber that failed it);
//! - **opt-in concurrency**: `[message_bus.in_flight]` lets a subscriber
//!   whose handler does not depend on order (idempotent, or versioned like
//!   notifications) handle up to N messages at once, each retried on its
//!   own; one slow delivery then no longer holds up the rest.
//!
//! Two backends, chosen by `[message_bus]` in the runtime config:
//! [`embedded`] (a SQLite file in the state directory; the default) and
//! [`redis_streams`] (a stream per channel, a consumer group per subscriber).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde::Deserialize;

pub mod dispatch;
pub mod embedded;
pub mod redis_streams;

/// `[message_bus]` in the runtime config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(rename = "type", default)]
    pub kind: BusKind,
    /// The Redis server of the `redis` backend.
    pub url: Option<String>,
    /// Prefix of every Redis key the bus uses (one bus per prefix).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Deliveries of one message before it is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles on each further failure.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Redis backend: a message another consumer took but has not
    /// acknowledged for this long is claimed (its consumer died).
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
    /// `[message_bus.in_flight]`: subscriber (component id) → how many of
    /// its messages may be handled at once. Absent, 1: one at a time, in
    /// order, a failing message retried before the next.
    #[serde(default)]
    pub in_flight: BTreeMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    #[default]
    Embedded,
    Redis,
}

fn default_key_prefix() -> String {
    "bazaar:bus:".into()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}
fn default_claim_idle_ms() -> u64 {
    30_000
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            url: None,
            key_prefix: default_key_prefix(),
            max_attempts: default_max_attempts(),
            retry_backoff_ms: default_retry_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            claim_idle_ms: default_claim_idle_ms(),
            in_flight: BTreeMap::new(),
        }
    }
}

impl BusConfig {
    /// The delay before retry number `attempt` (1 = the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(factor).min(self.max_backoff_ms))
    }

    /// How many of `subscriber`'s messages may be in its handler at once.
    pub fn in_flight_of(&self, subscriber: &str) -> usize {
        self.in_flight.get(subscriber).map_or(1, |&n| n.max(1) as usize)
    }

    /// Checks `[message_bus.in_flight]` against the app's subscribers (the
    /// components of its `[[trigger.redis]]`): a typo there would otherwise
    /// silently leave a subscriber at one message at a time. An app without
    /// subscribers consumes nothing, so one runtime config can serve it too.
    pub fn check_in_flight<'a>(&self, subscribers: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut known: Vec<&str> = subscribers.into_iter().collect();
        known.sort_unstable();
        known.dedup();
        for (subscriber, &n) in &self.in_flight {
            if n == 0 {
                bail!("[message_bus.in_flight] {subscriber} = 0: give at least 1 (1 is the default, in order)");
            }
            if !known.is_empty() && !known.contains(&subscriber.as_str()) {
                bail!(
                    "[message_bus.in_flight] names {subscriber:?}, which no [[trigger.redis]] of the app subscribes with; the subscribers are: {}",
                    known.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// One subscriber's view of one channel: a component of a `[[trigger.redis]]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub channel: String,
    /// The component id.
    pub subscriber: String,
}

/// A message handed to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Backend-specific, stable across redeliveries.
    pub id: String,
    pub payload: Vec<u8>,
    /// Deliveries of this message to this subscriber before this one, as far
    /// as the backend knows (a crash between delivery and ack counts).
    pub previous_attempts: u32,
}

/// A message a subscriber failed `attempts` times.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub channel: String,
    pub subscriber: String,
    #[serde(with = "payload_text")]
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub error: String,
    /// Unix milliseconds.
    pub failed_at_ms: u64,
}

/// Payloads shown as UTF-8 where they are (lossy otherwise).
mod payload_text {
    pub fn serialize<S: serde::Serializer>(payload: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(payload))
    }
}

/// What a bus backend stores and hands out. Every method is safe to call
/// concurrently; a subscription is consumed by one dispatcher at a time.
#[async_trait]
pub trait BusBackend: Send + Sync {
    /// Stores a message on `channel`; it is durable when this returns.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<String>;

    /// Makes sure `sub` exists, and starts consuming it afresh: it receives
    /// every message on its channel that is retained and that it has not
    /// acknowledged, those handed out before (and never acknowledged) first.
    async fn subscribe(&self, sub: &Subscription) -> Result<()>;

    /// The oldest message `sub` has neither acknowledged nor been handed
    /// since it subscribed, waiting up to `wait` for one to arrive. A
    /// dispatcher may hold several at once (`in_flight`) and settle them in
    /// any order.
    async fn next(&self, sub: &Subscription, wait: Duration) -> Result<Option<Delivery>>;

    /// `sub` handled `id`: never deliver it to `sub` again.
    async fn ack(&self, sub: &Subscription, id: &str) -> Result<()>;

    /// `sub` failed `delivery` for good: keep it as a dead letter and move on.
    async fn dead_letter(&self, sub: &Subscription, delivery: &Delivery, attempts: u32, error: &str) -> Result<()>;

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;

    /// Delivers dead letter `id` again to the subscriber that failed it, and
    /// removes it from the dead letters.
    async fn replay(&self, id: &str) -> Result<()>;

    /// Messages published to `sub`'s channel that it has not acknowledged.
    async fn lag(&self, sub: &Subscription) -> Result<u64>;
}

/// The bus of one app: its backend, and the addresses it answers for.
pub struct Bus {
    pub config: BusConfig,
    backend: Arc<dyn BusBackend>,
    /// Publishes to these addresses (the Redis trigger's) go to the bus.
    addresses: Vec<String>,
}

impl Bus {
    /// Opens the backend the config names.
    pub async fn open(config: &BusConfig, state_dir: &std::path::Path, addresses: Vec<String>) -> Result<Arc<Bus>> {
        let backend: Arc<dyn BusBackend> = match config.kind {
            BusKind::Embedded => Arc::new(embedded::EmbeddedBus::open(&state_dir.join(embedded::FILE_NAME))?),
            BusKind::Redis => {
                let url = config.url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("[message_bus] type = \"redis\" needs url = \"redis://host:port\"")
                })?;
                Arc::new(redis_streams::RedisStreamsBus::open(url, config).await?)
            }
        };
        let addresses = addresses.iter().map(|a| normalize_address(a)).collect();
        Ok(Arc::new(Bus { config: config.clone(), backend, addresses }))
    }

    pub fn backend(&self) -> &Arc<dyn BusBackend> {
        &self.backend
    }

    /// Whether a Redis publish to `address` belongs to the bus.
    pub fn owns(&self, address: &str) -> bool {
        let address = normalize_address(address);
        self.addresses.contains(&address)
    }
}

/// `redis://host:port` with the default port filled in and no trailing `/`,
/// so `redis://h` and `redis://h:6379/` name the same bus.
pub fn normalize_address(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port().unwrap_or(6379);
            let db = url.path().trim_matches('/');
            let db = if db.is_empty() || db == "0" { String::new() } else { format!("/{db}") };
            format!("{}://{host}:{port}{db}", url.scheme())
        }
        Err(_) => address.trim_end_matches('/').to_string(),
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Publishes from components to a bus address land here instead of Redis.
impl crate::capabilities::redis::PublishInterceptor for Bus {
    fn publish(&self, address: &str, channel: &str, payload: Vec<u8>) -> futures::future::BoxFuture<'_, Option<Result<()>>> {
        if !self.owns(address) {
            return Box::pin(async { None });
        }
        let channel = channel.to_string();
        Box::pin(async move { Some(self.backend.publish(&channel, &payload).await.map(drop)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalise() {
        assert_eq!(normalize_address("redis://127.0.0.1"), "redis://127.0.0.1:6379");
        assert_eq!(normalize_address("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379");
        assert_eq!(normalize_address("redis://h:7000/2"), "redis://h:7000/2");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = BusConfig { retry_backoff_ms: 100, max_backoff_ms: 500, ..Default::default() };
        let delays: Vec<u64> = (1..=5).map(|a| c.backoff(a).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn config_parses_with_defaults() {
        let c: BusConfig = toml::from_str("type = \"redis\"\nurl = \"redis://x\"\nmax_attempts = 3\n").unwrap();
        assert_eq!(c.kind, BusKind::Redis);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.retry_backoff_ms, 200);
        assert!(toml::from_str::<BusConfig>("type = \"kafka\"\n").is_err());
        assert!(toml::from_str::<BusConfig>("typo = 1\n").is_err());
        assert_eq!(c.in_flight_of("notifications"), 1, "one at a time unless asked");
    }

    #[test]
    fn in_flight_is_per_subscriber_and_checked_against_the_app() {
        let c: BusConfig = toml::from_str("[in_flight]\nnotifications = 8\n").unwrap();
        assert_eq!((c.in_flight_of("notifications"), c.in_flight_of("audit")), (8, 1));
        assert!(c.check_in_flight(["notifications", "audit"]).is_ok());
        let typo = c.check_in_flight(["notifcations"]).unwrap_err().to_string();
        assert!(typo.contains("\"notifications\"") && typo.contains("subscribers are: notifcations"), "{typo}");
        assert!(c.check_in_flight([]).is_ok(), "an app without subscribers consumes nothing");
        let zero: BusConfig = toml::from_str("[in_flight]\nnotifications = 0\n").unwrap();
        assert!(zero.check_in_flight(["notifications"]).unwrap_err().to_string().contains("at least 1"));
    }
}
