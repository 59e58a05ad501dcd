//! The Redis Streams bus backend, for production and for more than one host.
//!
//! A channel is a stream (`<prefix><channel>`); a subscriber is a consumer
//! group on it, created at the stream's start so nothing published before
//! the group existed is missed. This host reads as consumer
//! `bazaar@<hostname>`, a stable name, so on subscribing (after a crash) it
//! first re-reads its own pending entries (delivered, never acknowledged),
//! once. Entries a consumer (another host) took and has not acknowledged
//! for `claim_idle_ms` are claimed with XAUTOCLAIM, looked for at most once
//! a second: that host died. After that, taking a message costs one
//! XREADGROUP and settling it one XACK. An entry is
//! XACKed only after the handler succeeded. Dead letters go to one stream,
//! `<prefix>dead-letters`. A replay is re-added to its channel's stream
//! with a `target` field, which every other group acknowledges unseen.
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply};
use redis::{AsyncCommands, Value};

use super::{BusBackend, BusConfig, DeadLetter, Delivery, Subscription, now_ms};

/// Approximate cap on a channel's stream length (XADD MAXLEN ~).
const MAX_STREAM_LEN: usize = 1_000_000;
/// How often `next` polls while waiting for a message.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often `next` looks for entries dead consumers left pending (they
/// have been idle `claim_idle_ms` already; a second more does not matter).
const CLAIM_EVERY: Duration = Duration::from_secs(1);

pub struct RedisStreamsBus {
    redis: ConnectionManager,
    prefix: String,
    consumer: String,
    claim_idle_ms: u64,
    consuming: Mutex<HashMap<Subscription, Consuming>>,
}

/// Where this host is in consuming one subscription.
struct Consuming {
    /// While set: re-reading this consumer's own pending entries (handed
    /// out before a restart, never acknowledged) after this id.
    recovering_after: Option<String>,
    /// Entries handed out and not yet settled. XAUTOCLAIM may find one of
    /// them idle (a slow handler, a long retry); it is not handed out twice.
    held: HashSet<String>,
    /// When XAUTOCLAIM last found nothing to hand out; `None`: look now.
    claimed_nothing_at: Option<Instant>,
    /// XAUTOCLAIM's cursor through the pending entries.
    claim_cursor: String,
}

impl Consuming {
    fn new() -> Self {
        Self { recovering_after: Some("0".into()), held: HashSet::new(), claimed_nothing_at: None, claim_cursor: "0-0".into() }
    }

    fn claim_due(&self) -> bool {
        self.claimed_nothing_at.is_none_or(|at| at.elapsed() >= CLAIM_EVERY)
    }
}

impl RedisStreamsBus {
    pub async fn open(url: &str, config: &BusConfig) -> Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("[message_bus] url {url:?} is not a Redis URL"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(3))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        let redis = ConnectionManager::new_with_config(client, manager_config)
            .await
            .with_context(|| format!("connecting to the message bus at {url}; is Redis running?"))?;
        let host = hostname();
        Ok(Self {
            redis,
            prefix: config.key_prefix.clone(),
            consumer: format!("bazaar@{host}"),
            claim_idle_ms: config.claim_idle_ms,
            consuming: Mutex::new(HashMap::new()),
        })
    }

    fn stream(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }

    fn dead_letter_stream(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }

    /// Turns a stream entry into a delivery for `sub`, or `None` (after
    /// acknowledging it) when it is meant for another subscriber or was
    /// trimmed away.
    async fn accept(&self, sub: &Subscription, entry: StreamId, times_delivered: u32) -> Result<Option<Delivery>> {
        let payload = entry.map.get("payload").and_then(bytes);
        let target = entry.map.get("target").and_then(bytes);
        let for_us = target.as_deref().is_none_or(|t| t == sub.subscriber.as_bytes());
        match payload {
            Some(payload) if for_us => Ok(Some(Delivery {
                id: entry.id,
                payload,
                previous_attempts: times_delivered.saturating_sub(1),
            })),
            _ => {
                self.ack(sub, &entry.id).await?;
                Ok(None)
            }
        }
    }

    async fn times_delivered(&self, sub: &Subscription, id: &str) -> Result<u32> {
        let mut redis = self.redis.clone();
        let reply: StreamPendingCountReply =
            redis.xpending_count(self.stream(&sub.channel), &sub.subscriber, id, id, 1).await?;
        Ok(reply.ids.first().map_or(1, |p| p.times_delivered as u32))
    }

    /// Runs `f` on `sub`'s consuming state (created on first use).
    fn consuming<T>(&self, sub: &Subscription, f: impl FnOnce(&mut Consuming) -> T) -> T {
        let mut all = self.consuming.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(all.entry(sub.clone()).or_insert_with(Consuming::new))
    }

    /// One non-blocking look: own pending entries first (after subscribing),
    /// then entries of dead consumers (at most once a second), then new ones.
    async fn try_next(&self, sub: &Subscription) -> Result<Option<Delivery>> {
        let delivery = match self.take(sub).await? {
            Some((entry, times_delivered)) => self.accept(sub, entry, times_delivered).await?,
            None => None,
        };
        if let Some(delivery) = &delivery {
            self.consuming(sub, |c| c.held.insert(delivery.id.clone()));
        }
        Ok(delivery)
    }

    /// The next entry for `sub` and how many times it has been delivered.
    async fn take(&self, sub: &Subscription) -> Result<Option<(StreamId, u32)>> {
        let mut redis = self.redis.clone();
        let stream = self.stream(&sub.channel);

        if let Some(after) = self.consuming(sub, |c| c.recovering_after.clone()) {
            let own: StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP").arg(&sub.subscriber).arg(&self.consumer)
                .arg("COUNT").arg(1).arg("STREAMS").arg(&stream).arg(&after)
                .query_async(&mut redis)
                .await?;
            match first(own) {
                Some(entry) => {
                    // Moved past only once its count is read: an error here
                    // leaves it to be read again, not skipped.
                    let delivered = self.times_delivered(sub, &entry.id).await?;
                    self.consuming(sub, |c| c.recovering_after = Some(entry.id.clone()));
                    return Ok(Some((entry, delivered.max(2))));
                }
                None => self.consuming(sub, |c| c.recovering_after = None),
            }
        }

        if self.consuming(sub, |c| c.claim_due()) {
            let cursor = self.consuming(sub, |c| c.claim_cursor.clone());
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream).arg(&sub.subscriber).arg(&self.consumer)
                .arg(self.claim_idle_ms).arg(&cursor).arg("COUNT").arg(1)
                .query_async(&mut redis)
                .await?;
            let entry = self.consuming(sub, |c| {
                c.claim_cursor = claimed.next_stream_id.clone();
                let entry = claimed.claimed.into_iter().next().filter(|e| !c.held.contains(&e.id));
                if entry.is_none() && c.claim_cursor == "0-0" {
                    c.claimed_nothing_at = Some(Instant::now());
                }
                entry
            });
            if let Some(entry) = entry {
                let delivered = self.times_delivered(sub, &entry.id).await?;
                return Ok(Some((entry, delivered)));
            }
        }

        let new: StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP").arg(&sub.subscriber).arg(&self.consumer)
            .arg("COUNT").arg(1).arg("STREAMS").arg(&stream).arg(">")
            .query_async(&mut redis)
            .await?;
        Ok(first(new).map(|entry| (entry, 1)))
    }
}

fn first(reply: StreamReadReply) -> Option<StreamId> {
    reply.keys.into_iter().next().and_then(|k| k.ids.into_iter().next())
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    redis::from_redis_value::<Vec<u8>>(v).ok()
}

fn text(map: &HashMap<String, Value>, field: &str) -> String {
    map.get(field).and_then(|v| redis::from_redis_value::<String>(v).ok()).unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[async_trait]
impl BusBackend for RedisStreamsBus {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<String> {
        let mut redis = self.redis.clone();
        let id: String = redis::cmd("XADD")
            .arg(self.stream(channel))
            .arg("MAXLEN").arg("~").arg(MAX_STREAM_LEN)
            .arg("*").arg("payload").arg(payload)
            .query_async(&mut redis)
            .await
            .context("publishing to the message bus")?;
        Ok(id)
    }

    async fn subscribe(&self, sub: &Subscription) -> Result<()> {
        self.consuming(sub, |c| *c = Consuming::new());
        let mut redis = self.redis.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE").arg(self.stream(&sub.channel)).arg(&sub.subscriber).arg("0").arg("MKSTREAM")
            .query_async(&mut redis)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    async fn next(&self, sub: &Subscription, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(delivery) = self.try_next(sub).await? {
                return Ok(Some(delivery));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn ack(&self, sub: &Subscription, id: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        let _: i64 = redis.xack(self.stream(&sub.channel), &sub.subscriber, &[id]).await?;
        self.consuming(sub, |c| c.held.remove(id));
        Ok(())
    }

    async fn dead_letter(&self, sub: &Subscription, delivery: &Delivery, attempts: u32, error: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        // Both in one MULTI: a dead letter is never lost and never doubled.
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD").arg(self.dead_letter_stream()).arg("*")
            .arg("channel").arg(&sub.channel)
            .arg("subscriber").arg(&sub.subscriber)
            .arg("payload").arg(&delivery.payload)
            .arg("attempts").arg(attempts)
            .arg("error").arg(error)
            .arg("failed_ms").arg(now_ms())
            .ignore()
            .cmd("XACK").arg(self.stream(&sub.channel)).arg(&sub.subscriber).arg(&delivery.id)
            .ignore()
            .query_async(&mut redis)
            .await?;
        self.consuming(sub, |c| c.held.remove(&delivery.id));
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut redis = self.redis.clone();
        let range: StreamRangeReply = redis.xrange_all(self.dead_letter_stream()).await?;
        Ok(range
            .ids
            .into_iter()
            .map(|entry| DeadLetter {
                channel: text(&entry.map, "channel"),
                subscriber: text(&entry.map, "subscriber"),
                payload: entry.map.get("payload").and_then(bytes).unwrap_or_default(),
                attempts: text(&entry.map, "attempts").parse().unwrap_or(0),
                error: text(&entry.map, "error"),
                failed_at_ms: text(&entry.map, "failed_ms").parse().unwrap_or(0),
                id: entry.id,
            })
            .collect())
    }

    async fn replay(&self, id: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        let dead_letters = self.dead_letter_stream();
        let range: StreamRangeReply = redis.xrange(&dead_letters, id, id).await?;
        let entry = range
            .ids
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("there is no dead letter {id}; `bazaar bus dead-letters` lists them"))?;
        let channel = text(&entry.map, "channel");
        let payload = entry.map.get("payload").and_then(bytes).unwrap_or_default();
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD").arg(self.stream(&channel)).arg("*")
            .arg("payload").arg(payload)
            .arg("target").arg(text(&entry.map, "subscriber"))
            .ignore()
            .cmd("XDEL").arg(&dead_letters).arg(id)
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(())
    }

    async fn lag(&self, sub: &Subscription) -> Result<u64> {
        let mut redis = self.redis.clone();
        let groups: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("GROUPS").arg(self.stream(&sub.channel))
            .query_async(&mut redis)
            .await?;
        let group = groups
            .iter()
            .find(|g| text(g, "name") == sub.subscriber)
            .ok_or_else(|| anyhow!("no consumer group {} on channel {}", sub.subscriber, sub.channel))?;
        let number = |field: &str| group.get(field).and_then(|v| redis::from_redis_value::<u64>(v).ok()).unwrap_or(0);
        Ok(number("lag") + number("pending"))
    }
}
