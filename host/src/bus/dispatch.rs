//! Delivers a subscription's messages to its handler, with retries, backoff
//! and dead-lettering: the part of the bus's promise that is the same
//! whatever the backend. One message at a time by default, so in order;
//! up to `[message_bus.in_flight]` at once for a subscriber that asks.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{Bus, Delivery, Subscription};

/// How long one `next` call waits before checking for shutdown again.
const POLL: Duration = Duration::from_millis(500);

/// Which delivery of a message this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery; more is a retry after a failure (or after
    /// a crash between delivery and acknowledgement).
    pub number: u32,
    /// `max_attempts`: when attempt `max` fails, the message is dead-lettered.
    pub max: u32,
}

impl Attempt {
    pub fn is_retry(&self) -> bool {
        self.number > 1
    }

    /// Whether failing this attempt moves the message to the dead letters.
    pub fn is_last(&self) -> bool {
        self.number >= self.max
    }
}

/// What a delivered message is handed to (the Redis trigger: a component).
#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// `Err` carries the reason the message failed, for logs and dead letters.
    async fn handle(&self, sub: &Subscription, payload: &[u8], attempt: Attempt) -> Result<(), String>;
}

/// Consumes `sub` until `shutdown` turns true. Each message taken holds one
/// of the subscriber's `in_flight` slots until it is settled (acknowledged
/// or dead-lettered); with one slot, the next message is taken only then,
/// which is what keeps the order. Messages being handled when shutdown
/// comes are finished first; one waiting for a retry is left
/// unacknowledged, so it is delivered again after restart.
pub async fn run(bus: Arc<Bus>, sub: Subscription, handler: Arc<dyn MessageHandler>, mut shutdown: watch::Receiver<bool>) {
    if let Err(e) = subscribe_until_ok(&bus, &sub, &mut shutdown).await {
        tracing::debug!(channel = %sub.channel, subscriber = %sub.subscriber, "stopped before subscribing: {e}");
        return;
    }
    let slots = Arc::new(Semaphore::new(bus.config.in_flight_of(&sub.subscriber)));
    let mut deliveries = JoinSet::new();
    while !*shutdown.borrow() {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        while deliveries.try_join_next().is_some() {}
        let delivery = match bus.backend().next(&sub, POLL).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(channel = %sub.channel, subscriber = %sub.subscriber, "bus unavailable, retrying: {e:#}");
                if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        let (bus, sub, handler, mut shutdown) = (bus.clone(), sub.clone(), handler.clone(), shutdown.clone());
        deliveries.spawn(async move {
            let id = delivery.id.clone();
            if !deliver(&bus, &sub, &*handler, delivery, &mut shutdown).await {
                tracing::info!(channel = %sub.channel, subscriber = %sub.subscriber, %id, "shutting down: left unacknowledged, delivered again after restart");
            }
            drop(slot);
        });
    }
    while deliveries.join_next().await.is_some() {}
}

async fn subscribe_until_ok(bus: &Bus, sub: &Subscription, shutdown: &mut watch::Receiver<bool>) -> Result<(), &'static str> {
    loop {
        match bus.backend().subscribe(sub).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(channel = %sub.channel, subscriber = %sub.subscriber, "cannot subscribe yet: {e:#}");
                if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
                    return Err("shutdown");
                }
            }
        }
    }
}

/// Hands one message to the handler until it succeeds or runs out of
/// attempts. Returns false if shutdown interrupted it (the message is
/// left unacknowledged).
async fn deliver(
    bus: &Bus,
    sub: &Subscription,
    handler: &dyn MessageHandler,
    delivery: Delivery,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let config = &bus.config;
    let mut attempts = delivery.previous_attempts;
    loop {
        attempts += 1;
        let attempt = Attempt { number: attempts, max: config.max_attempts };
        let error = match handler.handle(sub, &delivery.payload, attempt).await {
            Ok(()) => return settle(shutdown, || bus.backend().ack(sub, &delivery.id)).await,
            Err(error) => error,
        };
        if attempts >= config.max_attempts {
            tracing::error!(
                channel = %sub.channel, subscriber = %sub.subscriber, id = %delivery.id,
                "message failed {attempts} times, moved to the dead letters: {error}"
            );
            return settle(shutdown, || bus.backend().dead_letter(sub, &delivery, attempts, &error)).await;
        }
        let delay = config.backoff(attempts);
        tracing::warn!(
            channel = %sub.channel, subscriber = %sub.subscriber, id = %delivery.id,
            "attempt {attempts} of {} failed, retrying in {delay:?}: {error}", config.max_attempts
        );
        if sleep_or_shutdown(delay, shutdown).await {
            return false;
        }
    }
}

/// Records an outcome, retrying while the backend is unreachable: giving up
/// would redeliver a message that was handled (allowed, but avoidable).
async fn settle<F, Fut>(shutdown: &mut watch::Receiver<bool>, mut record: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        match record().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!("cannot record a delivery outcome yet, retrying: {e:#}");
                if sleep_or_shutdown(Duration::from_millis(500), shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps; true if shutdown came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    };
    !slept || *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::bus::{BusConfig, BusKind};

    /// Fails every payload listed in `fail_times` that many times, records the rest.
    struct Recorder {
        seen: Mutex<Vec<String>>,
        failures_left: Mutex<std::collections::HashMap<String, u32>>,
    }

    #[async_trait]
    impl MessageHandler for Recorder {
        async fn handle(&self, _: &Subscription, payload: &[u8], _: Attempt) -> Result<(), String> {
            let text = String::from_utf8_lossy(payload).to_string();
            self.seen.lock().unwrap().push(text.clone());
            let mut left = self.failures_left.lock().unwrap();
            match left.get_mut(&text) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Err(format!("{text} failed"))
                }
                _ => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn retries_in_order_then_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let config = BusConfig { kind: BusKind::Embedded, max_attempts: 3, retry_backoff_ms: 1, ..Default::default() };
        let bus = Bus::open(&config, dir.path(), vec![]).await.unwrap();
        let sub = Subscription { channel: "c".into(), subscriber: "s".into() };
        bus.backend().subscribe(&sub).await.unwrap();
        for m in ["a", "flaky", "b", "poison", "c"] {
            bus.backend().publish("c", m.as_bytes()).await.unwrap();
        }
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(vec![]),
            failures_left: Mutex::new([("flaky".to_string(), 2), ("poison".to_string(), 99)].into()),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(bus.clone(), sub.clone(), recorder.clone(), stopped));
        while bus.backend().lag(&sub).await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(seen, ["a", "flaky", "flaky", "flaky", "b", "poison", "poison", "poison", "c"]);
        let dead = bus.backend().dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].payload.as_slice(), dead[0].attempts), (&b"poison"[..], 3));
        assert_eq!(dead[0].error, "poison failed");
    }

    /// Holds `wait` until `open` has been handled; fails `flaky` once.
    struct Gate {
        opened: tokio::sync::Notify,
        done: Mutex<Vec<String>>,
        flaky_failed: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MessageHandler for Gate {
        async fn handle(&self, _: &Subscription, payload: &[u8], _: Attempt) -> Result<(), String> {
            let text = String::from_utf8_lossy(payload).to_string();
            match text.as_str() {
                "wait" => self.opened.notified().await,
                "open" => self.opened.notify_one(),
                "flaky" if !self.flaky_failed.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                    return Err("flaky failed".into());
                }
                _ => {}
            }
            self.done.lock().unwrap().push(text);
            Ok(())
        }
    }

    #[tokio::test]
    async fn with_more_in_flight_a_held_message_does_not_hold_up_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let sub = Subscription { channel: "c".into(), subscriber: "s".into() };
        let config = BusConfig {
            retry_backoff_ms: 1,
            in_flight: [("s".to_string(), 3)].into(),
            ..Default::default()
        };
        let bus = Bus::open(&config, dir.path(), vec![]).await.unwrap();
        bus.backend().subscribe(&sub).await.unwrap();
        for m in ["wait", "flaky", "a", "open", "b"] {
            bus.backend().publish("c", m.as_bytes()).await.unwrap();
        }
        let gate = Arc::new(Gate {
            opened: tokio::sync::Notify::new(),
            done: Mutex::new(vec![]),
            flaky_failed: Default::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(bus.clone(), sub.clone(), gate.clone(), stopped));
        // With one at a time this never ends: `wait` needs `open`, behind it.
        tokio::time::timeout(Duration::from_secs(30), async {
            while bus.backend().lag(&sub).await.unwrap() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("not all handled: {:?}", gate.done.lock().unwrap()));
        stop.send(true).unwrap();
        task.await.unwrap();
        let done = gate.done.lock().unwrap().clone();
        let position = |m: &str| done.iter().position(|d| d == m).unwrap_or_else(|| panic!("{m} not handled: {done:?}"));
        assert_eq!(done.len(), 5, "each handled once: {done:?}");
        assert!(position("open") < position("wait"), "{done:?}");
        assert!(bus.backend().dead_letters().await.unwrap().is_empty());
    }
}
