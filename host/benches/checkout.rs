//! Checkout latency through the whole shop: gateway → orders → products and
//! payments (and the outbox to the bus), at 1 and 16 concurrent customers,
//! on the embedded configuration. Prints p50/p99 per concurrency level.
//!
//! `make wasm && cargo bench -p bazaar --bench checkout`
//! (`CHECKOUT_BENCH_PER_CLIENT` sets how many checkouts each customer makes).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Bazaar, Up, call, raw_call, register_and_login};

#[tokio::main]
async fn main() {
    let per_client: usize = std::env::var("CHECKOUT_BENCH_PER_CLIENT").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    support::require_components(&["gateway", "auth", "users", "products", "orders", "payments", "notifications"]);
    let state = tempfile::tempdir().unwrap();
    let rc = state.path().join("embedded.toml");
    let text = std::fs::read_to_string(support::root().join("runtime-config/embedded.toml")).unwrap();
    std::fs::write(&rc, text.replace("path = \".bazaar/", &format!("path = \"{}/", state.path().display()))).unwrap();
    let b = Bazaar::start(
        &support::root().join("spin.toml"),
        Up::default()
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            // A benchmark is not an abuse: lift the gateway's limits.
            .env("SPIN_VARIABLE_RATE_LIMIT_WRITES", "1000000")
            .env("SPIN_VARIABLE_RATE_LIMIT_READS", "1000000")
            .env("SPIN_VARIABLE_RATE_LIMIT_AUTH", "1000000"),
    );

    let admin = register_and_login(&b, "admin@bazaar.example", "Bench").await;
    let (s, product) = call(
        &b,
        "POST",
        "/api/products",
        Some(&admin),
        Some(json!({"sku": "BENCH-1", "name": "Bench widget", "description": "Plenty of stock",
                    "category": "bench", "price_cents": 500, "stock": 1_000_000})),
    )
    .await;
    assert_eq!(s, 201, "{product}");

    println!("| concurrent customers | checkouts | p50 ms | p99 ms | max ms | checkouts/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for clients in [1usize, 16] {
        let mut tokens = Vec::new();
        for i in 0..clients {
            tokens.push(register_and_login(&b, &format!("bench-{clients}-{i}@example.com"), "Bench").await);
        }
        let started = Instant::now();
        let tasks: Vec<_> = tokens
            .into_iter()
            .map(|token| {
                let base = b.base.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for _ in 0..per_client {
                        let (s, v) = raw_call(&base, "POST", "/api/cart/items", Some(&token), Some(json!({"sku": "BENCH-1", "quantity": 1}))).await;
                        assert!(s == 200 || s == 201, "{v}");
                        let t = Instant::now();
                        let card = json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"});
                        let (s, v) = raw_call(&base, "POST", "/api/orders/checkout", Some(&token), Some(json!({"card": card}))).await;
                        latencies.push(t.elapsed());
                        assert_eq!(s, 201, "{v}");
                    }
                    latencies
                })
            })
            .collect();
        let mut all: Vec<Duration> = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).saturating_sub(1).min(all.len() - 1)];
        println!(
            "| {clients} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            all.len(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            all.last().unwrap().as_secs_f64() * 1e3,
            all.len() as f64 / elapsed.as_secs_f64()
        );
    }
}
