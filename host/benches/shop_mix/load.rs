//! The load: one task per logged-in customer, each a closed loop (the next
//! request leaves when the answer to the last one is in, no think time) over
//! a keep-alive connection of its own, recording every request's latency in
//! an HDR histogram per kind. All customers run on one thread of the driver
//! (a current-thread runtime, as one of wrk's threads drives its
//! connections): the driver takes as little of the shop's machine as it can.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::Method;
use serde_json::json;

use crate::client::{Client, Target};
use crate::mix::{Catalog, Kind, Outcome};
use crate::support::ServerTiming;

/// A checkout's body: the simulated processor's card that always succeeds.
const CHECKOUT: &str = r#"{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2099,"cvc":"123"}}"#;

/// A logged-in customer and what the driver knows of their cart.
pub struct Customer {
    pub token: String,
    /// Units in the cart (a checkout drawn on an empty cart first adds one,
    /// as a person would).
    cart_units: u32,
    rng: fastrand::Rng,
}

impl Customer {
    pub fn new(token: String, seed: u64) -> Customer {
        Customer { token, cart_units: 0, rng: fastrand::Rng::with_seed(seed) }
    }
}

/// What one run measured.
pub struct Stats {
    /// Latency in microseconds, per [`Kind::index`].
    pub latency: Vec<Histogram<u64>>,
    pub errors: Vec<u64>,
    /// Answers the gateway's catalog cache gave (`Cache-Status: gateway; hit`).
    pub cache_hits: Vec<u64>,
    /// How the errors went: `"<kind> <status>"` (or `transport: ...`) → count.
    pub error_detail: BTreeMap<String, u64>,
    pub confirmed: u64,
    pub sold_out: u64,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// Every request, when `--trace` asks for them: when it was sent (from
    /// the run's start), its latency, its kind, and the host's timing.
    pub trace: Option<Vec<Traced>>,
}

/// One request of a traced run.
pub struct Traced {
    pub sent: Duration,
    pub micros: u64,
    pub kind: Kind,
    /// When the host read it, its wait at the host's door and its time
    /// after (none on an error, or from a host started without
    /// `--server-timing`).
    pub timing: Option<ServerTiming>,
    /// From its sending to the host's reading it (by the host's field and
    /// this machine's wall clock), in ms: how long it lay unread.
    pub read_ms: Option<f64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: Kind::ALL.iter().map(|_| Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()).collect(),
            errors: vec![0; Kind::ALL.len()],
            cache_hits: vec![0; Kind::ALL.len()],
            error_detail: BTreeMap::new(),
            confirmed: 0,
            sold_out: 0,
            elapsed: Duration::ZERO,
            trace: None,
        }
    }

    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).unwrap();
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.cache_hits.iter_mut().zip(&other.cache_hits) {
            *mine += theirs;
        }
        for (detail, n) in other.error_detail {
            *self.error_detail.entry(detail).or_default() += n;
        }
        self.confirmed += other.confirmed;
        self.sold_out += other.sold_out;
        if let Some(theirs) = other.trace {
            self.trace.get_or_insert_default().extend(theirs);
        }
    }

    pub fn count(&self, kind: Kind) -> u64 {
        self.latency[kind.index()].len()
    }

    pub fn total(&self) -> u64 {
        Kind::ALL.iter().map(|k| self.count(*k)).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// All kinds in one histogram.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 120_000_000, 3).unwrap();
        for h in &self.latency {
            all.add(h).unwrap();
        }
        all
    }
}

/// Runs the mix with every customer until `duration` has passed (each
/// finishes the request it is in), then hands the customers back, carts as
/// they are, with what was measured (and every request, if `trace`).
/// The customers run on a thread of their own, each on a connection opened
/// for this run.
pub async fn run(
    base: &str,
    customers: Vec<Customer>,
    catalog: Arc<Catalog>,
    duration: Duration,
    trace: bool,
) -> (Vec<Customer>, Stats) {
    let target = Target::parse(base);
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the driver's runtime");
        runtime.block_on(run_customers(target, customers, catalog, duration, trace))
    })
    .await
    .expect("the driver's thread panicked")
}

async fn run_customers(
    target: Target,
    customers: Vec<Customer>,
    catalog: Arc<Catalog>,
    duration: Duration,
    trace: bool,
) -> (Vec<Customer>, Stats) {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = customers
        .into_iter()
        .map(|mut customer| {
            let mut client = Client::new(target.clone(), &customer.token);
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let mut stats = Stats::new();
                if trace {
                    stats.trace = Some(Vec::new());
                }
                while Instant::now() < deadline {
                    let kind = Kind::draw(&mut customer.rng);
                    if kind == Kind::Checkout && customer.cart_units == 0 {
                        one(&mut client, &mut customer, &catalog, Kind::AddToCart, started, &mut stats).await;
                    }
                    one(&mut client, &mut customer, &catalog, kind, started, &mut stats).await;
                }
                (customer, stats)
            })
        })
        .collect();
    let mut total = Stats::new();
    let mut customers = Vec::new();
    for task in tasks {
        let (customer, stats) = task.await.expect("a customer's task panicked");
        total.merge(stats);
        customers.push(customer);
    }
    total.elapsed = started.elapsed();
    (customers, total)
}

/// Sends one request of `kind` and records it (`started`: the run's start).
async fn one(client: &mut Client, customer: &mut Customer, catalog: &Catalog, kind: Kind, started: Instant, stats: &mut Stats) {
    let rng = &mut customer.rng;
    let (method, path, body) = match kind {
        Kind::Browse => (Method::GET, catalog.browse_path(rng), None),
        Kind::View => (Method::GET, catalog.view_path(rng), None),
        Kind::Search => (Method::GET, catalog.search_path(rng), None),
        Kind::AddToCart => {
            let body = serde_json::to_vec(&json!({"sku": catalog.sku(rng), "quantity": 1})).expect("JSON of a string and a number");
            (Method::POST, "/api/cart/items".to_string(), Some(Bytes::from(body)))
        }
        Kind::Checkout => (Method::POST, "/api/orders/checkout".to_string(), Some(Bytes::from_static(CHECKOUT.as_bytes()))),
    };
    let (sent, sent_wall) = (Instant::now(), std::time::SystemTime::now());
    let answer = client.send(method, &path, body).await;
    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
    stats.latency[kind.index()].saturating_record(micros);
    if let Some(trace) = &mut stats.trace {
        let timing = answer.as_ref().ok().and_then(|a| a.timing);
        let read_ms = timing.map(|t| t.read_after(sent_wall));
        trace.push(Traced { sent: sent - started, micros, kind, timing, read_ms });
    }
    let failure = match answer {
        Ok(answer) => {
            stats.cache_hits[kind.index()] += u64::from(answer.cache_hit);
            let status = answer.status;
            match kind.outcome(status) {
                Outcome::Ok => {
                    if kind == Kind::AddToCart {
                        customer.cart_units += 1;
                    }
                    None
                }
                Outcome::Confirmed => {
                    customer.cart_units = 0;
                    stats.confirmed += 1;
                    None
                }
                Outcome::SoldOut => {
                    stats.sold_out += 1;
                    None
                }
                Outcome::Error => Some(format!("{} {status}", kind.name())),
            }
        }
        Err(e) => Some(format!("{} transport: {e}", kind.name())),
    };
    if let Some(detail) = failure {
        stats.errors[kind.index()] += 1;
        *stats.error_detail.entry(detail).or_default() += 1;
    }
}
