//! Message bus throughput: publishes per second, and deliveries (next + ack)
//! per second, through each backend, without components in the way; then
//! the dispatcher with a handler that waits 2 ms (as a component waits on
//! its database), one message at a time and 8 at once
//! (`[message_bus.in_flight]`).
//!
//! `cargo bench -p bazaar --bench bus` (needs Redis on 127.0.0.1:6379 for
//! the Redis Streams figures; `BUS_BENCH_MESSAGES` sets the count).
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bazaar::bus::dispatch::{self, Attempt, MessageHandler};
use bazaar::bus::{Bus, BusConfig, BusKind, Subscription};

/// The handler's wait per message in the dispatch figures.
const HANDLER_WAIT: Duration = Duration::from_millis(2);
/// Messages per dispatch figure.
const DISPATCHED: usize = 1000;

/// Waits [`HANDLER_WAIT`], then succeeds.
struct Waits;

#[async_trait]
impl MessageHandler for Waits {
    async fn handle(&self, _: &Subscription, _: &[u8], _: Attempt) -> Result<(), String> {
        tokio::time::sleep(HANDLER_WAIT).await;
        Ok(())
    }
}

/// Messages per second `dispatch::run` gets through with `in_flight` slots.
async fn dispatched(config: &BusConfig, dir: &std::path::Path, in_flight: u32) -> anyhow::Result<f64> {
    let subscriber = format!("dispatch-{in_flight}");
    let config = BusConfig { in_flight: [(subscriber.clone(), in_flight)].into(), ..config.clone() };
    let bus = Bus::open(&config, dir, vec![]).await?;
    let channel = format!("dispatch-bench-{in_flight}");
    let sub = Subscription { channel: channel.clone(), subscriber };
    bus.backend().subscribe(&sub).await?;
    for _ in 0..DISPATCHED {
        bus.backend().publish(&channel, b"m").await?;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(dispatch::run(bus.clone(), sub.clone(), Arc::new(Waits), stopped));
    while bus.backend().lag(&sub).await? > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = DISPATCHED as f64 / started.elapsed().as_secs_f64();
    stop.send(true)?;
    task.await?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BUS_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir()?;
    let prefix = format!("bazaar-bench-{}:", std::process::id());
    let backends = [
        ("embedded", BusConfig::default()),
        (
            "redis-streams",
            BusConfig {
                kind: BusKind::Redis,
                url: Some("redis://127.0.0.1:6379".into()),
                key_prefix: prefix.clone(),
                ..Default::default()
            },
        ),
    ];
    println!("| backend | messages | publish msg/s | deliver+ack msg/s | dispatched, 2 ms handler, 1 at a time | 8 at once |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, config) in backends {
        let bus = match Bus::open(&config, dir.path(), vec![]).await {
            Ok(bus) => bus,
            Err(e) => {
                println!("| {name} | - | unavailable: {e:#} | |");
                continue;
            }
        };
        let sub = Subscription { channel: "bench".into(), subscriber: "consumer".into() };
        bus.backend().subscribe(&sub).await?;
        let payload = vec![b'x'; 256];
        let started = Instant::now();
        for _ in 0..n {
            bus.backend().publish("bench", &payload).await?;
        }
        let publish = n as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for _ in 0..n {
            let delivery = bus.backend().next(&sub, Duration::from_secs(5)).await?.expect("a message");
            bus.backend().ack(&sub, &delivery.id).await?;
        }
        let deliver = n as f64 / started.elapsed().as_secs_f64();
        let one = dispatched(&config, dir.path(), 1).await?;
        let eight = dispatched(&config, dir.path(), 8).await?;
        println!("| {name} | {n} | {publish:.0} | {deliver:.0} | {one:.0} | {eight:.0} |");
    }
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("redis-cli --scan --pattern '{prefix}*' | xargs -r redis-cli del >/dev/null"))
        .status();
    Ok(())
}
