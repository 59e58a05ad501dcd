//! The Redis trigger: `[[trigger.redis]]` components run once per message on
//! their channel, fed by the durable bus ([`crate::bus`]).
//!
//! Spin subscribes to Redis pub/sub at the trigger's address; bazaar treats
//! that address as the name of the app's bus. Publishing with the Redis
//! outbound API to the same address puts a message on the bus, and this
//! trigger delivers it to every subscribing component, each a fresh
//! instance, with the bus's retries and dead letters when a handler fails.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, bail};
use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::bus::dispatch::{self, Attempt, MessageHandler};
use crate::bus::{Bus, Subscription};
use crate::capabilities::redis::PublishInterceptor;
use crate::metrics::{ChannelLabels, Metrics, SubscriptionLabels};

pub struct RedisTrigger {
    app: Arc<App>,
    subscriptions: Vec<Subscription>,
}

/// The bus addresses of an app: each Redis trigger's address, with
/// `{{ variable }}` templates expanded.
pub fn bus_addresses(app: &App) -> Result<Vec<String>> {
    let mut addresses = Vec::new();
    for trigger in &app.manifest.redis_triggers {
        let address = app.capabilities.variables.expand(&trigger.address).map_err(|var| {
            anyhow::anyhow!(
                "{}: [[trigger.redis]] address {:?} uses variable {var:?}, which has no value",
                app.manifest.file.display(),
                trigger.address
            )
        })?;
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

impl RedisTrigger {
    pub fn new(app: Arc<App>) -> Result<Self> {
        let mut subscriptions = Vec::new();
        for trigger in &app.manifest.redis_triggers {
            let exports = app.component(&trigger.component).is_some_and(|c| c.redis.is_some());
            if !exports {
                bail!(
                    "{}: component {:?} is used by [[trigger.redis]] but does not export fermyon:spin/inbound-redis; build it with spin-sdk's #[redis_component]",
                    app.manifest.file.display(),
                    trigger.component
                );
            }
            subscriptions.push(Subscription { channel: trigger.channel.clone(), subscriber: trigger.component.clone() });
        }
        let subscribers = subscriptions.iter().map(|s| s.subscriber.as_str());
        if let Err(e) = app.runtime_config.message_bus.check_in_flight(subscribers) {
            let file = app.runtime_config.file.as_deref().map_or("the runtime config".into(), |f| f.display().to_string());
            bail!("{file}: {e}");
        }
        Ok(Self { app, subscriptions })
    }

    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Starts one delivery loop per subscription; they stop when `shutdown`
    /// turns true.
    pub fn start(&self, bus: Arc<Bus>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let handler: Arc<dyn MessageHandler> = Arc::new(ComponentHandler { app: self.app.clone() });
        self.subscriptions
            .iter()
            .map(|sub| tokio::spawn(dispatch::run(bus.clone(), sub.clone(), handler.clone(), shutdown.clone())))
            .collect()
    }
}

/// Counts what components publish to the bus, then hands it to the bus.
pub struct MeteredPublisher {
    pub bus: Arc<Bus>,
    pub metrics: Arc<Metrics>,
}

impl PublishInterceptor for MeteredPublisher {
    fn publish(&self, address: &str, channel: &str, payload: Vec<u8>) -> BoxFuture<'_, Option<Result<()>>> {
        let published = self.bus.publish(address, channel, payload);
        let counter = self.metrics.bus_published.get_or_create(&ChannelLabels { channel: channel.into() }).clone();
        Box::pin(async move {
            let result = published.await;
            if matches!(result, Some(Ok(()))) {
                counter.inc();
            }
            result
        })
    }
}

/// Runs the subscribing component on each message, in a fresh instance.
struct ComponentHandler {
    app: Arc<App>,
}

#[async_trait]
impl MessageHandler for ComponentHandler {
    async fn handle(&self, sub: &Subscription, payload: &[u8], attempt: Attempt) -> Result<(), String> {
        let labels = SubscriptionLabels { channel: sub.channel.clone(), subscriber: sub.subscriber.clone() };
        let metrics = &self.app.metrics;
        if attempt.is_retry() {
            metrics.bus_retried.get_or_create(&labels).inc();
        }
        let result = self.run_component(sub, payload).await;
        let counter = if result.is_ok() { &metrics.bus_delivered } else { &metrics.bus_failed };
        counter.get_or_create(&labels).inc();
        if result.is_err() && attempt.is_last() {
            metrics.bus_dead_lettered.get_or_create(&labels).inc();
        }
        result
    }
}

impl ComponentHandler {
    async fn run_component(&self, sub: &Subscription, payload: &[u8]) -> Result<(), String> {
        // The version current now handles the whole message, whatever swaps
        // happen meanwhile.
        let component = self.app.component(&sub.subscriber).ok_or("component is not loaded")?;
        component.requests.fetch_add(1, Ordering::Relaxed);
        let pre = component.redis.clone().ok_or("component does not export inbound-redis")?;
        let mut store = self.app.new_store(&component).map_err(|e| format!("{e:#}"))?;
        let payload = payload.to_vec();
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.fermyon_spin_inbound_redis().call_handle_message(&mut store, &payload).await
        };
        // The epoch deadline stops a component spinning; this one stops one
        // waiting forever on the host.
        let limit = self.app.request_timeout + Duration::from_millis(100);
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("component {} returned an error ({e:?})", sub.subscriber)),
            Ok(Err(trap)) => Err(format!("component {} failed: {trap:?}", sub.subscriber)),
            Err(_) => Err(format!("component {} exceeded its {:?} deadline", sub.subscriber, self.app.request_timeout)),
        }
    }
}
