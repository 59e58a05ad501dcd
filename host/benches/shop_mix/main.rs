//! The shop under a realistic mix of logged-in customers: browse the catalog
//! 60%, view a product 15%, search 10%, add to cart 10%, check out 5%, for a
//! fixed time at each number of concurrent customers, in embedded and
//! production modes. Prints per request kind: count, req/s, p50, p99 and
//! errors (see `mix::Kind::outcome` for what counts as one), and from the
//! host's own metrics each component's requests and mean time
//! ([`host_clock`]); then checks the shop's data for consistency
//! (tests/support/consistency.rs).
//!
//! ```sh
//! make wasm && cargo bench -p bazaar --bench shop_mix -- --duration 30s --clients 16,64 --modes embedded,production
//! ```
//!
//! Each (mode, clients, `--max-concurrent-requests`) run gets a shop of its
//! own (by default without an admission limit, with 2 and 4 per core, and
//! `auto`: see host/src/trigger/admission.rs), started from the
//! release host with the repo's spin.toml: fresh SQLite files, or a fresh
//! Postgres database per service (dropped afterwards) and Redis database 15
//! (flushed). The gateway's rate limits are lifted (a benchmark is not an
//! abuse) and every product gets a million units, so checkouts succeed.
//! Customers register and log in through the gateway, the mix warms up,
//! then it is measured. The two modes of one (clients, limit) run back to
//! back, in turn first ([`schedule`]). `--url` drives a shop that is
//! already running instead (no consistency check: its data is not the
//! driver's to read).
//!
//! The driver shares the machine with the shop: the summary says how much
//! CPU it took.
#[path = "../../../tests/support/mod.rs"]
mod support;

mod client;
mod cpu;
mod host_clock;
mod load;
mod mix;
mod report;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use serde_json::{Value, json};

use support::consistency::{self, Snapshot};
use support::shop::{Mode, Shop};
use support::{Up, raw_call};

/// The Redis database production-mode runs use (tests use 11 to 14).
const REDIS_DB: u8 = 15;
/// The units every product gets before the run.
const STOCK: i64 = 1_000_000;
const PASSWORD: &str = "correct horse battery";

#[derive(Parser, Debug)]
#[command(name = "shop_mix", about = "The shop under a realistic mix of logged-in customers")]
struct Args {
    /// How long each measured run lasts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the mix runs, unmeasured, before each measured run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Concurrent customers, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    clients: Vec<usize>,
    /// The shop's configurations to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "embedded,production")]
    modes: Vec<ModeArg>,
    /// The shop's `bazaar up --max-concurrent-requests`, a run each
    /// (comma-separated numbers, `off` or `auto`; `coresN` is N per core).
    /// 2 per core holds production's p99 down at a cost in throughput, 4
    /// per core costs it nothing (scripts/bench/where-we-stand.md).
    #[arg(long, value_delimiter = ',', default_value = "off,cores2,cores4,auto")]
    max_concurrent_requests: Vec<String>,
    /// Drive the shop already serving at this URL instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Write every measured request (when it was sent, its latency, its
    /// kind, and from the host's `--server-timing` how long it lay unread,
    /// its wait at the door and its time after) to a file per run in this
    /// directory, for looking at how the latency moves over the run
    /// (scripts/bench/latency_spread.py).
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Embedded,
    Production,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(!args.clients.is_empty() && args.clients.iter().all(|c| *c > 0), "--clients: give at least one number above 0");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_core = |l: &str| l.strip_prefix("cores").and_then(|n| n.parse::<usize>().ok()).map(|n| (n * cores).to_string());
    let limits: Vec<String> = args.max_concurrent_requests.iter().map(|l| per_core(l).unwrap_or_else(|| l.clone())).collect();
    println!(
        "## The shop under the mix ({} measured after {} warm-up; every request with the customer's token)\n",
        humantime::format_duration(args.duration),
        humantime::format_duration(args.warmup),
    );
    let mut runs = Vec::new();
    match &args.url {
        Some(url) => {
            for &clients in &args.clients {
                runs.push(run(&args, url, "external", clients, "as started", None).await);
            }
        }
        None => {
            for (clients, limit, mode) in schedule(&args.clients, &limits, &args.modes) {
                let mode = match mode {
                    ModeArg::Embedded => Mode::Embedded,
                    ModeArg::Production => Mode::Production { redis_db: REDIS_DB },
                };
                let mut up = limits_lifted().arg("--max-concurrent-requests").arg(limit);
                if args.trace.is_some() {
                    // The trace splits each latency into the wait to be
                    // read, the wait at the door and the time after it.
                    up = up.arg("--server-timing");
                }
                let shop = Shop::start(mode, up).await;
                let base = shop.bazaar.base.clone();
                runs.push(run(&args, &base, mode.name(), clients, limit, Some(&shop)).await);
                if std::env::var_os("SHOP_BENCH_LOGS").is_some() {
                    eprintln!("{}", shop.bazaar.logs());
                }
            }
        }
    }
    println!("### Summary\n\n{}", report::summary(&runs));
    println!(
        "Goals: embedded ≥ 3,000 req/s with p99 < 25 ms and no error; production within 2x of embedded \
         (req/s and p99). The load generator runs on the same machine (its CPU is in the table)."
    );
}

/// The order of the runs: the modes of one (clients, limit) back to back,
/// so that "production within 2x of embedded" compares runs a minute
/// apart, not the ends of the whole bench (these machines' speed moves by a
/// fifth from one minute to the next); and the modes' order reversed from
/// one pair to the next, so that a machine slowing down or speeding up
/// across the bench favours neither mode.
fn schedule<'a>(clients: &[usize], limits: &'a [String], modes: &[ModeArg]) -> Vec<(usize, &'a str, ModeArg)> {
    let mut runs = Vec::new();
    let mut order = modes.to_vec();
    for &clients in clients {
        for limit in limits {
            runs.extend(order.iter().map(|&mode| (clients, limit.as_str(), mode)));
            order.reverse();
        }
    }
    runs
}

/// The gateway's limits, lifted: they would turn the load into 429s.
fn limits_lifted() -> Up {
    Up::default()
        .env("SPIN_VARIABLE_RATE_LIMIT_WRITES", "1000000000")
        .env("SPIN_VARIABLE_RATE_LIMIT_READS", "1000000000")
        .env("SPIN_VARIABLE_RATE_LIMIT_AUTH", "1000000000")
}

/// One measured run of the mix with `clients` customers.
/// `admitted`: the shop's `--max-concurrent-requests`.
async fn run(args: &Args, base: &str, mode: &str, clients: usize, admitted: &str, shop: Option<&Shop>) -> report::Run {
    eprintln!("shop_mix: {mode}, {clients} clients: preparing");
    let admin = login(base, "admin@bazaar.example", "Bench admin").await;
    let catalog = Arc::new(stock_up(base, &admin).await);
    let customers = customers(base, clients).await;
    let start = match shop {
        Some(shop) => Some(Snapshot::starting(&shop.source).await),
        None => None,
    };

    eprintln!("shop_mix: {mode}, {clients} clients: warming up for {}", humantime::format_duration(args.warmup));
    let (customers, _) = load::run(base, customers, catalog.clone(), args.warmup, false).await;
    eprintln!("shop_mix: {mode}, {clients} clients: measuring for {}", humantime::format_duration(args.duration));
    let metrics_before = match shop {
        Some(shop) => Some(shop.bazaar.metrics().await),
        None => None,
    };
    let cpu = cpu::Reading::now();
    let (_, mut stats) = load::run(base, customers, catalog, args.duration, args.trace.is_some()).await;
    let (driver_cores, machine_cores) = cpu.cores_since();
    let host_clock = match (shop, metrics_before) {
        (Some(shop), Some(before)) => Some(host_clock::Account::between(&before, &shop.bazaar.metrics().await, stats.elapsed)),
        _ => None,
    };
    if let (Some(dir), Some(trace)) = (&args.trace, stats.trace.take()) {
        write_trace(dir, &format!("{mode}-{clients}-{admitted}.tsv"), trace);
    }

    let admitted = admitted.to_string();
    let mut run = report::Run { mode: mode.to_string(), clients, admitted, stats, violations: None, driver_cores, machine_cores };
    println!(
        "### {mode}, {clients} concurrent customers, `--max-concurrent-requests {}`\n\n{}",
        run.admitted,
        report::run_table(&run)
    );
    println!(
        "Checkouts: {} confirmed, {} sold out (409). Load generator: {:.2} cores; whole machine: {:.2} of 2 cores.",
        run.stats.confirmed, run.stats.sold_out, driver_cores, machine_cores
    );
    if let Some(account) = &host_clock {
        println!(
            "\nThe host's own clock over the measured run (its admin /metrics; a component's time includes its calls to \
             other components, the gateway's every service's):\n\n{}",
            account.table()
        );
    }
    if !run.stats.error_detail.is_empty() {
        println!("\nErrors:");
        for (detail, n) in &run.stats.error_detail {
            println!("- {n} × {detail}");
        }
    }
    if let (Some(shop), Some(start)) = (shop, start) {
        // The bus delivers the last events after their requests were answered.
        let now = consistency::settle(&shop.source, Duration::from_secs(120)).await;
        let violations = consistency::check(&start, &now);
        let confirmed = now.orders.iter().filter(|o| o.status == "CONFIRMED").count();
        println!(
            "\nConsistency ({} orders, {confirmed} confirmed; {} payments; {} order events): {}",
            now.orders.len(),
            now.payments.len(),
            now.events.len(),
            if violations.is_empty() { "no violation".to_string() } else { format!("**{} violations**", violations.len()) }
        );
        for v in violations.iter().take(20) {
            println!("- {v}");
        }
        if violations.len() > 20 {
            println!("- ... and {} more", violations.len() - 20);
        }
        run.violations = Some(violations.len());
    }
    println!();
    run
}

/// Writes a run's requests to `dir/name`, in the order they were sent: one
/// line each, tab-separated, under a header.
fn write_trace(dir: &std::path::Path, name: &str, mut trace: Vec<load::Traced>) {
    trace.sort_by_key(|t| t.sent);
    let mut text = String::from("sent_ms\tlatency_ms\tkind\tread_ms\tqueue_ms\tapp_ms\n");
    for t in &trace {
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        let (read, queue, app) = (ms(t.read_ms), ms(t.timing.map(|t| t.queue_ms)), ms(t.timing.map(|t| t.app_ms)));
        text.push_str(&format!("{:.3}\t{:.3}\t{}\t{read}\t{queue}\t{app}\n", t.sent.as_secs_f64() * 1e3, t.micros as f64 / 1e3, t.kind.name()));
    }
    let path = dir.join(name);
    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("shop_mix: every request of the run is in {}", path.display());
}

/// Registers `email` (or finds it registered) and logs in: the token.
async fn login(base: &str, email: &str, name: &str) -> String {
    let (s, v) = raw_call(base, "POST", "/api/auth/register", None, Some(json!({"email": email, "password": PASSWORD, "name": name}))).await;
    assert!(s == 201 || s == 409, "registering {email}: {s} {v}");
    let (s, v) = raw_call(base, "POST", "/api/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(s, 200, "logging in {email}: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// The catalog, each product with [`STOCK`] units.
async fn stock_up(base: &str, admin: &str) -> mix::Catalog {
    let (s, v) = raw_call(base, "GET", "/api/products?per_page=100", Some(admin), None).await;
    assert_eq!(s, 200, "listing the catalog: {v}");
    let items: Vec<Value> = v["items"].as_array().cloned().unwrap_or_default();
    for product in &items {
        let id = product["id"].as_str().unwrap();
        // PUT replaces the product: its fields as listed, the stock raised.
        let body = json!({
            "sku": product["sku"], "name": product["name"], "description": product["description"],
            "category": product["category"], "price_cents": product["price_cents"], "stock": STOCK,
        });
        let (s, v) = raw_call(base, "PUT", &format!("/api/products/{id}"), Some(admin), Some(body)).await;
        assert_eq!(s, 200, "stocking {id} up: {v}");
    }
    mix::Catalog::from_listing(&items)
}

/// `n` new customers, registered and logged in through the gateway.
async fn customers(base: &str, n: usize) -> Vec<load::Customer> {
    let run = format!("{}-{}", std::process::id(), support::free_port());
    futures::stream::iter(0..n)
        .map(|i| {
            let run = run.clone();
            async move {
                let token = login(base, &format!("bench-{run}-{i}@example.com"), "Bench customer").await;
                load::Customer::new(token, i as u64 + 1)
            }
        })
        .buffered(8)
        .collect()
        .await
}
