//! Admission control: at most so many requests from the network are served
//! at once; the others wait their turn at the door, first come first served.
//!
//! Why: tokio shares its worker threads among every task that is ready to
//! run, in turn. A request that waits on the network many times (a
//! checkout in production makes about thirty round trips to Postgres)
//! joins the back of that line after each wait, behind every request that
//! arrived meanwhile, so on a busy host it takes many times its own work.
//! With a limit it waits once, on arrival, and what is admitted finishes
//! sooner. Measured with the shop mix at 16 customers on two cores
//! (scripts/bench/where-we-stand.md has the figures): production's p99 fell
//! by about half, and its throughput by 17 to 29% (a core sits idle while
//! every admitted request waits on Postgres or Redis).
//!
//! What is counted: requests from the network only. A chained request
//! (`<id>.spin.internal`) or a delivery from the bus is part of work already
//! admitted or done in the background; counting it could deadlock (a
//! gateway holding a permit while it waits on a service that needs one).
//! The reserved endpoints (health, info) and unknown routes are answered
//! before admission, so a health check never queues. A permit is held until
//! the response head: a body streamed after it goes on outside the limit,
//! so a long download does not keep others out.
//!
//! A request that cannot get in within its deadline (the request timeout)
//! is shed with a 503 and `Retry-After` rather than waiting without end.
//!
//! Off unless `--max-concurrent-requests` is given, as in Spin: the right
//! limit depends on the app. A few per core suits an app whose requests
//! keep the CPU busy (the shop: 2 per core measured best); an app whose
//! requests mostly wait on slow services would be held to a trickle by it.
//! `auto` finds the limit while it serves (see [`super::adaptive_limit`]).
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::adaptive_limit::{AdaptiveLimit, Thresholds};
use super::ready_wait::ReadyWait;
use crate::metrics::Metrics;

/// How many requests may be served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Every request is served as soon as it arrives (Spin's behaviour).
    Off,
    At(NonZeroUsize),
    /// Raised and lowered as the host has CPU to spare or not.
    Auto,
}

impl std::str::FromStr for Limit {
    type Err = String;

    /// `off` (or `0`), `auto` or a number of requests.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" | "0" => Ok(Limit::Off),
            "auto" => Ok(Limit::Auto),
            n => n.parse::<NonZeroUsize>().map(Limit::At).map_err(|_| {
                format!("{s:?} is not a number of requests; give one above 0, `auto` for a limit that adapts, or `off` for no limit")
            }),
        }
    }
}

/// The door every request from the network passes.
pub struct Admission {
    permits: Option<Arc<Semaphore>>,
    /// With `auto`: what sizes `permits`.
    adaptive: Option<Arc<AdaptiveLimit>>,
    /// Longest a request waits to get in.
    max_wait: Duration,
    queued: Gauge<i64, AtomicI64>,
    shed: Counter,
    waits: Histogram,
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Shed {
    pub waited: Duration,
}

/// Lets one request in; dropping it lets the next in.
#[must_use = "the request counts as served only while its Admitted lives"]
pub struct Admitted {
    permit: Option<OwnedSemaphorePermit>,
    adaptive: Option<Arc<AdaptiveLimit>>,
    /// How long the request waited at the door (zero when a turn was free).
    pub waited: Duration,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let (Some(permit), Some(adaptive)) = (self.permit.take(), &self.adaptive) {
            adaptive.release(permit);
        }
    }
}

impl Admission {
    pub fn new(limit: Limit, max_wait: Duration, metrics: &Metrics) -> Self {
        let (permits, adaptive) = match limit {
            Limit::Off => (None, None),
            Limit::At(n) => {
                metrics.http_admission_limit.set(n.get() as i64);
                (Some(Arc::new(Semaphore::new(n.get()))), None)
            }
            Limit::Auto => {
                let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
                let gauge = metrics.http_admission_limit.clone();
                let adaptive = AdaptiveLimit::start(cores, Thresholds::default(), gauge, metrics.http_queued.clone());
                (Some(adaptive.semaphore().clone()), Some(adaptive))
            }
        };
        Self {
            permits,
            adaptive,
            max_wait,
            queued: metrics.http_queued.clone(),
            shed: metrics.http_shed.clone(),
            waits: metrics.http_admission_wait.clone(),
        }
    }

    /// Waits for a turn: at once when one is free (the common case costs no
    /// timer), else in arrival order, up to `max_wait`.
    pub async fn admit(&self) -> Result<Admitted, Shed> {
        let Some(permits) = &self.permits else { return Ok(Admitted { permit: None, adaptive: None, waited: Duration::ZERO }) };
        if let Some(adaptive) = &self.adaptive {
            adaptive.wake();
        }
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            self.waits.observe(0.0);
            return Ok(self.admitted(permit, Duration::ZERO));
        }
        self.queued.inc();
        let started = Instant::now();
        let waited = tokio::time::timeout(self.max_wait, permits.clone().acquire_owned()).await;
        self.queued.dec();
        match waited {
            Ok(permit) => {
                let waited = started.elapsed();
                self.waits.observe(waited.as_secs_f64());
                Ok(self.admitted(permit.expect("the admission semaphore is never closed"), waited))
            }
            Err(_) => {
                self.shed.inc();
                Err(Shed { waited: self.max_wait })
            }
        }
    }

    /// With `auto`: what the instances' waits for a worker thread are
    /// reported to.
    pub fn ready_wait(&self) -> Option<&Arc<ReadyWait>> {
        self.adaptive.as_ref().map(|adaptive| adaptive.meter())
    }

    fn admitted(&self, permit: OwnedSemaphorePermit, waited: Duration) -> Admitted {
        Admitted { permit: Some(permit), adaptive: self.adaptive.clone(), waited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limit: usize, max_wait: Duration) -> (Admission, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        (Admission::new(Limit::At(NonZeroUsize::new(limit).unwrap()), max_wait, &metrics), metrics)
    }

    #[test]
    fn limits_parse_from_the_command_line() {
        assert_eq!("off".parse::<Limit>(), Ok(Limit::Off));
        assert_eq!("0".parse::<Limit>(), Ok(Limit::Off));
        assert_eq!("12".parse::<Limit>(), Ok(Limit::At(NonZeroUsize::new(12).unwrap())));
        let error = "many".parse::<Limit>().unwrap_err();
        assert!(error.contains("\"many\"") && error.contains("`off`"), "{error}");
    }

    #[tokio::test]
    async fn the_limit_holds_and_waiting_requests_get_in_first_come_first_served() {
        let (admission, metrics) = admission(2, Duration::from_secs(10));
        let admission = Arc::new(admission);
        let first = admission.admit().await.unwrap();
        let _second = admission.admit().await.unwrap();
        let (order, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for n in 0..3 {
            let (admission, order) = (admission.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let admitted = admission.admit().await.unwrap();
                order.send(n).unwrap();
                admitted
            }));
            // Each waiter queues before the next one is spawned.
            while metrics.http_queued.get() < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert!(order_rx.try_recv().is_err(), "nobody gets in while two are served");
        drop(first);
        assert_eq!(order_rx.recv().await, Some(0));
        let third = waiting.remove(0).await.unwrap();
        assert!(order_rx.try_recv().is_err(), "one left, one in: still two served");
        drop(third);
        assert_eq!(order_rx.recv().await, Some(1));
        assert_eq!(metrics.http_queued.get(), 1);
    }

    #[tokio::test]
    async fn how_long_each_admitted_request_waited_is_measured() {
        let (admission, metrics) = admission(1, Duration::from_secs(10));
        let admission = Arc::new(admission);
        let first = admission.admit().await.unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(drop) }
        });
        while metrics.http_queued.get() < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        waiter.await.unwrap().unwrap();
        let waits = &metrics.http_admission_wait;
        assert_eq!(waits.count(), 2, "both admitted requests are counted, the one that got in at once too");
        assert!(waits.sum() >= 0.05, "the second waited at least 50 ms: {}", waits.sum());
    }

    #[tokio::test]
    async fn a_request_that_cannot_get_in_is_shed_after_its_deadline() {
        let (admission, metrics) = admission(1, Duration::from_millis(50));
        let _served = admission.admit().await.unwrap();
        let started = std::time::Instant::now();
        let shed = admission.admit().await.err().expect("shed");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(shed.waited, Duration::from_millis(50));
        assert_eq!(metrics.http_shed.get(), 1);
        assert_eq!(metrics.http_queued.get(), 0);
    }

    #[tokio::test]
    async fn off_admits_everyone() {
        let metrics = Metrics::new();
        let admission = Admission::new(Limit::Off, Duration::from_millis(1), &metrics);
        let held: Vec<Admitted> = futures::future::join_all((0..100).map(|_| admission.admit())).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(held.len(), 100);
        assert_eq!(metrics.http_queued.get(), 0);
        assert_eq!(metrics.http_admission_wait.count(), 0, "no door, no wait measured");
    }
}
