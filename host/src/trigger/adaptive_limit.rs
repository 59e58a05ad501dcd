//! `--max-concurrent-requests auto`: a limit that finds itself, raised
//! while the machine has CPU to spare and lowered when ready work queues or
//! the machine has none left.
//!
//! Why: a fixed limit suits one kind of load. The shop in embedded mode
//! keeps the CPU busy, and 2 per core served it best; in production its
//! requests mostly wait on Postgres, and the same 4 held a 2-core machine
//! to about half the throughput it had without a limit in one run (978
//! against 1,847 req/s at 64 customers); a route that waits 50 ms served
//! 77 req/s with 4 at once against 1,223 without (see
//! scripts/bench/where-we-stand.md). Latency-based limiters (TCP Vegas,
//! Netflix's concurrency-limits) compare response times with the fastest
//! seen, which a mix of 1 ms reads and 30 ms checkouts makes noisy. What a
//! limit protects against here is simpler to see: an instance that could
//! run waiting for a worker thread ([`super::ready_wait`] measures it), and
//! requests let in when no CPU is left to run them ([`super::spare_cpu`]).
//!
//! How: every [`PERIOD`], a thread of its own reads the mean of those waits
//! and the machine's CPU shares, keeps a moving average of each, and
//! decides:
//!
//! - waits above [`Thresholds::high`]: the limit falls by an eighth (at
//!   least one), at most once per [`COOL_DOWN`], never below one per core;
//! - waits below [`Thresholds::low`], with requests waiting at the door and
//!   every permit in use: the limit rises by one, up to [`MAX`], if the
//!   machine has at least [`Thresholds::spare`] of its CPU unused, or if
//!   the host uses less than [`MAIN_USER`] of it (so others' work on a
//!   shared machine never holds back a host whose requests wait on I/O);
//! - less than [`Thresholds::spare_low`] unused, requests at the door and
//!   the host the machine's main user: the limit falls by one, at most once
//!   per [`SPARE_COOL_DOWN`], never below one per core;
//! - otherwise it holds.
//!
//! Rises are small and falls multiplicative, as TCP's congestion window,
//! so the limit settles just under the point where ready work starts to
//! queue. The CPU rules matter where the requests' time goes to servers on
//! the same machine: in production the waits for Postgres and Redis are
//! not waits for a worker, so the waits alone let the limit climb to 6 to
//! 9 on a 2-core machine already at 1.98 of its 2 cores, with the tail of
//! no limit; with them it stays mostly at 3 to 5 and the p99 at 16
//! customers fell by 18% on average for the same throughput. It starts at
//! 2 per core, the fixed limit the shop measured best with.
//!
//! An idle host costs nothing: once a period finds no request admitted,
//! none at the door and no instance woken, the thread parks until the next
//! request comes to the door ([`AdaptiveLimit::wake`], one atomic load per
//! request while it runs), instead of waking a hundred times a second.
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ready_wait::ReadyWait;
use super::spare_cpu::{CpuShares, SpareCpu};

/// How often the waits are read.
pub const PERIOD: Duration = Duration::from_millis(10);
/// The least time between two falls: a fall shows in the waits only after
/// the requests admitted before it finish.
pub const COOL_DOWN: Duration = Duration::from_millis(50);
/// The highest the limit goes.
pub const MAX: usize = 1024;
/// Weight of each period in the moving average.
const WEIGHT: f64 = 0.3;
/// Weight of each period in the CPU shares' average: the counters move in
/// hundredths of a second, so a 10 ms period sees a tick or two per core.
const SPARE_WEIGHT: f64 = 0.1;
/// The least time between two falls for want of spare CPU: a tenth of a
/// second of readings makes the average.
pub const SPARE_COOL_DOWN: Duration = Duration::from_millis(200);
/// The share of the machine's CPU above which the host is its main user,
/// and the spare CPU (or its want) is the host's to act on.
pub const MAIN_USER: f64 = 0.5;

/// The waits at which the limit moves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Below this, the host has room for more.
    pub low: Duration,
    /// Above this, ready work is queueing.
    pub high: Duration,
    /// The least share of the machine's CPU left unused for a raise.
    pub spare: f64,
    /// Below this share unused, the limit falls.
    pub spare_low: f64,
}

impl Default for Thresholds {
    /// Chosen with the shop mix on a 2-core machine, where a woken
    /// instance waits 150 to 500 µs even at 2 per core (an instance's turn
    /// on a thread, its instantiation included, takes that long); with 200
    /// and 600 µs the limit settled at 3 or 4 in embedded mode and at 8 to
    /// 11 in production. The spare CPU's 10% and 3% keep the machine at
    /// about 1.9 of 2 cores in production; 5% and 2% left the tail halfway
    /// back to where the waits alone put it.
    fn default() -> Self {
        Self { low: Duration::from_micros(200), high: Duration::from_micros(600), spare: 0.10, spare_low: 0.03 }
    }
}

/// Where the limit goes next, given the waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Hold,
    Raise,
    /// Lower it by this many.
    Lower(usize),
}

/// What the controller knows when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub limit: usize,
    /// Moving average of the ready instances' waits.
    pub wait: Duration,
    /// Requests waiting at the door.
    pub queued: bool,
    /// Every permit is held by a request being served.
    pub full: bool,
    /// Moving averages of the machine's CPU shares; `None` where they
    /// cannot be read (not Linux), and the limit moves on the waits alone.
    pub cpu: Option<CpuShares>,
    pub since_last_fall: Duration,
}

/// The control law, kept apart from the clock and the semaphore so it can
/// be tested on its own.
pub fn step(r: Reading, floor: usize, t: Thresholds) -> Step {
    if r.wait > t.high && r.limit > floor && r.since_last_fall >= COOL_DOWN {
        Step::Lower((r.limit / 8).max(1).min(r.limit - floor))
    } else if r.wait < t.low && r.queued && r.full && r.cpu.is_none_or(|c| c.spare >= t.spare || c.own < MAIN_USER) && r.limit < MAX {
        Step::Raise
    } else if r.cpu.is_some_and(|c| c.spare < t.spare_low && c.own >= MAIN_USER)
        && r.queued
        && r.limit > floor
        && r.since_last_fall >= SPARE_COOL_DOWN
    {
        Step::Lower(1)
    } else {
        Step::Hold
    }
}

/// A semaphore whose size follows the waits.
pub struct AdaptiveLimit {
    permits: Arc<Semaphore>,
    /// Permits to forget as they come back: a fall takes the free ones at
    /// once and the rest from requests as they finish.
    debt: AtomicUsize,
    floor: usize,
    thresholds: Thresholds,
    meter: Arc<ReadyWait>,
    state: Mutex<State>,
    /// The limit now (`http_admission_limit`).
    gauge: Gauge,
    /// Requests waiting at the door (`http_requests_queued`).
    queued: Gauge<i64, AtomicI64>,
    /// The control thread, to unpark it.
    thread: OnceLock<Thread>,
    /// Whether the control thread is parked (or about to), the host idle.
    resting: AtomicBool,
}

struct State {
    limit: usize,
    wait_secs: f64,
    cpu: Option<CpuShares>,
    /// `None` until the first fall.
    last_fall: Option<Instant>,
}

impl AdaptiveLimit {
    /// Starts at 2 per core, never below 1 per core, moved by a thread that
    /// ends with the limit.
    pub fn start(cores: usize, thresholds: Thresholds, gauge: Gauge, queued: Gauge<i64, AtomicI64>) -> Arc<Self> {
        let limit = Arc::new(Self::new(cores, thresholds, gauge, queued));
        let weak = Arc::downgrade(&limit);
        let spawned = std::thread::Builder::new().name("bazaar-admission".into()).spawn(move || control(weak));
        if let Err(e) = spawned {
            // Without its thread the limit stays where it starts: still a limit.
            tracing::error!("the adaptive admission limit cannot start its thread ({e}); it stays at {}", 2 * cores.max(1));
        }
        limit
    }

    fn new(cores: usize, thresholds: Thresholds, gauge: Gauge, queued: Gauge<i64, AtomicI64>) -> Self {
        let floor = cores.max(1);
        let limit = 2 * floor;
        gauge.set(limit as i64);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            debt: AtomicUsize::new(0),
            floor,
            thresholds,
            meter: Arc::new(ReadyWait::default()),
            state: Mutex::new(State { limit, wait_secs: 0.0, cpu: None, last_fall: None }),
            gauge,
            queued,
            thread: OnceLock::new(),
            resting: AtomicBool::new(false),
        }
    }

    /// A request is at the door: the control thread resumes if it rests.
    pub fn wake(&self) {
        if self.resting.load(Ordering::Relaxed) && self.resting.swap(false, Ordering::AcqRel) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Whether nothing is admitted, nothing queued and (`woken`) no
    /// instance ran in the last period.
    fn idle(&self, woken: bool) -> bool {
        !woken && self.queued.get() <= 0 && self.permits.available_permits() >= self.limit()
    }

    /// Before the thread parks: it rests unless a request came meanwhile.
    /// An idle host has no wait, so the average starts again from none.
    fn rest(&self) -> bool {
        self.resting.store(true, Ordering::Release);
        if !self.idle(false) {
            // Admitted between the look and the flag: stay awake (unless
            // `wake` took the flag already, which unparks at once).
            self.resting.store(false, Ordering::Release);
            return false;
        }
        let mut state = self.state.lock().unwrap();
        state.wait_secs = 0.0;
        state.cpu = None;
        true
    }

    /// Whether the control thread rests (for tests).
    #[cfg(test)]
    fn is_resting(&self) -> bool {
        self.resting.load(Ordering::Acquire)
    }

    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// What every instance is watched by.
    pub fn meter(&self) -> &Arc<ReadyWait> {
        &self.meter
    }

    pub fn limit(&self) -> usize {
        self.state.lock().unwrap().limit
    }

    /// A permit given back: forgotten if a fall is still owed one.
    pub fn release(&self, permit: OwnedSemaphorePermit) {
        let owed = self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok();
        if owed {
            permit.forget();
        }
    }

    /// Ready instances waited `wait` on average over the last period;
    /// moves the limit if it must.
    pub fn observe(&self, wait: Duration, cpu: Option<CpuShares>) {
        let mut state = self.state.lock().unwrap();
        state.wait_secs += WEIGHT * (wait.as_secs_f64() - state.wait_secs);
        if let Some(now) = cpu {
            let avg = |old: f64, new: f64| old + SPARE_WEIGHT * (new - old);
            state.cpu = Some(state.cpu.map_or(now, |c| CpuShares { spare: avg(c.spare, now.spare), own: avg(c.own, now.own) }));
        }
        let reading = Reading {
            limit: state.limit,
            wait: Duration::from_secs_f64(state.wait_secs),
            queued: self.queued.get() > 0,
            full: self.permits.available_permits() == 0,
            cpu: state.cpu,
            since_last_fall: state.last_fall.map_or(Duration::MAX, |at| at.elapsed()),
        };
        match step(reading, self.floor, self.thresholds) {
            Step::Hold => return,
            Step::Raise => {
                state.limit += 1;
                let paid = self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok();
                if !paid {
                    self.permits.add_permits(1);
                }
            }
            Step::Lower(by) => {
                state.limit -= by;
                state.last_fall = Some(Instant::now());
                let forgotten = self.permits.forget_permits(by);
                self.debt.fetch_add(by - forgotten, Ordering::AcqRel);
            }
        }
        self.gauge.set(state.limit as i64);
    }
}

/// The limit's thread: reads the waits every [`PERIOD`]. A period in which
/// no instance was woken counts as no wait: nothing was ready to run (every
/// request admitted is waiting on something slow, or none is). When the
/// host is idle it parks until [`AdaptiveLimit::wake`] (or the limit's
/// drop) unparks it.
fn control(limit: Weak<AdaptiveLimit>) {
    // Known before the thread can first park, so `wake` always finds it.
    match limit.upgrade() {
        Some(strong) => strong.thread.get_or_init(std::thread::current),
        None => return,
    };
    let mut cpu = SpareCpu::default();
    loop {
        std::thread::sleep(PERIOD);
        let Some(strong) = limit.upgrade() else { return };
        let taken = strong.meter.take();
        strong.observe(taken.map_or(Duration::ZERO, |(wait, _)| wait), cpu.read());
        let park = strong.idle(taken.is_some()) && strong.rest();
        drop(strong);
        if park {
            // Parks until unparked; a spurious return just runs a period.
            std::thread::park();
            // The spare CPU is counted again from the unpark, not over the rest.
            cpu = SpareCpu::default();
        }
    }
}

impl Drop for AdaptiveLimit {
    /// Unparks a resting thread, so it finds the limit gone and ends.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { low: Duration::from_micros(200), high: Duration::from_micros(600), spare: 0.1, spare_low: 0.03 };

    fn reading(limit: usize, wait_us: u64) -> Reading {
        Reading { limit, wait: Duration::from_micros(wait_us), queued: true, full: true, cpu: None, since_last_fall: COOL_DOWN }
    }

    #[test]
    fn a_queue_of_ready_work_lowers_the_limit_by_an_eighth_but_not_below_one_per_core() {
        assert_eq!(step(reading(64, 3_000), 2, T), Step::Lower(8));
        assert_eq!(step(reading(5, 3_000), 2, T), Step::Lower(1));
        assert_eq!(step(reading(3, 3_000), 2, T), Step::Lower(1));
        assert_eq!(step(reading(2, 3_000), 2, T), Step::Hold, "the floor");
        let just_fell = Reading { since_last_fall: COOL_DOWN / 2, ..reading(64, 3_000) };
        assert_eq!(step(just_fell, 2, T), Step::Hold, "one fall per cool-down");
    }

    #[test]
    fn the_limit_rises_only_when_it_is_what_keeps_requests_waiting() {
        assert_eq!(step(reading(4, 100), 2, T), Step::Raise);
        assert_eq!(step(Reading { queued: false, ..reading(4, 100) }, 2, T), Step::Hold, "nobody at the door");
        assert_eq!(step(Reading { full: false, ..reading(4, 100) }, 2, T), Step::Hold, "a permit is free");
        assert_eq!(step(reading(4, 400), 2, T), Step::Hold, "between the thresholds");
        assert_eq!(step(reading(MAX, 100), 2, T), Step::Hold, "the ceiling");
    }

    fn shares(spare: f64, own: f64) -> Option<CpuShares> {
        Some(CpuShares { spare, own })
    }

    #[test]
    fn a_raise_needs_spare_cpu_unless_the_host_uses_little_of_the_machine() {
        let busy = Reading { cpu: shares(0.05, 0.7), ..reading(4, 100) };
        assert_eq!(step(busy, 2, T), Step::Hold, "the host fills a machine with under a tenth spare");
        assert_eq!(step(Reading { cpu: shares(0.2, 0.7), ..busy }, 2, T), Step::Raise, "a fifth of the machine unused");
        assert_eq!(
            step(Reading { cpu: shares(0.0, 0.1), ..busy }, 2, T),
            Step::Raise,
            "others fill the machine; the host's requests wait on I/O"
        );
        assert_eq!(step(Reading { cpu: None, ..busy }, 2, T), Step::Raise, "no CPU counts: the waits alone decide");
    }

    #[test]
    fn a_machine_with_no_cpu_left_lowers_the_limit_by_one_at_a_time_down_to_one_per_core() {
        let full = Reading { cpu: shares(0.01, 0.8), since_last_fall: SPARE_COOL_DOWN, ..reading(6, 300) };
        assert_eq!(step(full, 2, T), Step::Lower(1));
        assert_eq!(step(Reading { since_last_fall: COOL_DOWN, ..full }, 2, T), Step::Hold, "one fall per spare cool-down");
        assert_eq!(step(Reading { limit: 2, ..full }, 2, T), Step::Hold, "the floor");
        assert_eq!(step(Reading { queued: false, ..full }, 2, T), Step::Hold, "nobody at the door");
        assert_eq!(step(Reading { cpu: shares(0.01, 0.3), ..full }, 2, T), Step::Hold, "others fill the machine");
        assert_eq!(step(Reading { cpu: shares(0.05, 0.8), ..full }, 2, T), Step::Hold, "between 3% and 10% spare");
    }

    #[test]
    fn the_cpu_shares_are_averaged_over_periods_and_forgotten_when_the_host_rests() {
        let limit = limit(1);
        limit.observe(Duration::from_millis(1), shares(1.0, 0.0));
        limit.observe(Duration::from_millis(1), shares(0.0, 1.0));
        let cpu = limit.state.lock().unwrap().cpu.unwrap();
        assert!((cpu.spare - 0.9).abs() < 1e-9 && (cpu.own - 0.1).abs() < 1e-9, "{cpu:?}");
        limit.observe(Duration::from_millis(1), None);
        assert_eq!(limit.state.lock().unwrap().cpu, Some(cpu), "a period without a count keeps the average");
        assert!(limit.rest(), "nothing admitted");
        assert_eq!(limit.state.lock().unwrap().cpu, None);
    }

    fn limit(cores: usize) -> AdaptiveLimit {
        AdaptiveLimit::new(cores, T, Gauge::default(), Gauge::default())
    }

    #[tokio::test]
    async fn a_fall_takes_free_permits_at_once_and_held_ones_as_they_come_back() {
        let limit = limit(2);
        assert_eq!(limit.limit(), 4);
        let held: Vec<_> = (0..4).map(|_| limit.semaphore().clone().try_acquire_owned().unwrap()).collect();
        limit.queued.set(1);
        // Saturated runtime: the average climbs past `high` within a few periods.
        for _ in 0..20 {
            limit.state.lock().unwrap().last_fall = None;
            limit.observe(Duration::from_millis(10), None);
        }
        assert_eq!(limit.limit(), 2, "down to the floor, one per core");
        assert_eq!(limit.gauge.get(), 2);
        let mut held = held.into_iter();
        limit.release(held.next().unwrap());
        limit.release(held.next().unwrap());
        assert_eq!(limit.semaphore().available_permits(), 0, "the first two back pay the fall");
        limit.release(held.next().unwrap());
        assert_eq!(limit.semaphore().available_permits(), 1);
    }

    #[tokio::test]
    async fn idle_cores_with_requests_at_the_door_raise_the_limit() {
        let limit = limit(1);
        let _held: Vec<_> = (0..2).map(|_| limit.semaphore().clone().try_acquire_owned().unwrap()).collect();
        limit.queued.set(3);
        limit.observe(Duration::from_micros(50), None);
        limit.observe(Duration::from_micros(50), None);
        assert_eq!(limit.limit(), 3, "one more per period while it is the limit that holds them");
        assert_eq!(limit.semaphore().available_permits(), 1);
        assert_eq!(limit.gauge.get(), 3);
    }

    /// Polls `f` until it holds, for at most 5 s.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn an_idle_host_parks_the_thread_until_a_request_comes_to_the_door() {
        let limit = AdaptiveLimit::start(1, T, Gauge::default(), Gauge::default());
        assert!(eventually(|| limit.is_resting()), "nothing admitted: the thread rests");

        let held = limit.semaphore().clone().try_acquire_owned().unwrap();
        limit.wake();
        assert!(!limit.is_resting());
        std::thread::sleep(PERIOD * 5);
        assert!(!limit.is_resting(), "it keeps watching while a request is served");

        drop(held);
        assert!(eventually(|| limit.is_resting()), "idle again");
        limit.queued.set(1);
        limit.wake();
        std::thread::sleep(PERIOD * 5);
        assert!(!limit.is_resting(), "a request at the door keeps it awake");
    }

    #[test]
    fn a_raise_after_a_fall_cancels_what_is_still_owed_before_adding_permits() {
        let limit = limit(1);
        let held: Vec<_> = (0..2).map(|_| limit.semaphore().clone().try_acquire_owned().unwrap()).collect();
        limit.queued.set(1);
        limit.observe(Duration::from_millis(50), None);
        assert_eq!(limit.limit(), 1);
        assert_eq!(limit.debt.load(Ordering::Acquire), 1, "both permits are held: the fall is owed");
        limit.state.lock().unwrap().wait_secs = 0.0;
        limit.observe(Duration::ZERO, None);
        assert_eq!(limit.limit(), 2);
        assert_eq!(limit.debt.load(Ordering::Acquire), 0);
        assert_eq!(limit.semaphore().available_permits(), 0, "no permit added: the owed one stays");
        drop(held);
        assert_eq!(limit.semaphore().available_permits(), 2);
    }
}
