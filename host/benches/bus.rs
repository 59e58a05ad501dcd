//! Message bus throughput: publishes per second, and deliveries (next + ack)
//! per second, through each backend, without components in the way.
//!
//! `cargo bench -p bazaar --bench bus` (needs Redis on 127.0.0.1:6379 for
//! the Redis Streams figures; `BUS_BENCH_MESSAGES` sets the count).
use std::time::{Duration, Instant};

use bazaar::bus::{Bus, BusConfig, BusKind, Subscription};

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
    println!("| backend | messages | publish msg/s | deliver+ack msg/s |");
    println!("| --- | --- | --- | --- |");
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
        println!("| {name} | {n} | {publish:.0} | {deliver:.0} |");
    }
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("redis-cli --scan --pattern '{prefix}*' | xargs -r redis-cli del >/dev/null"))
        .status();
    Ok(())
}
