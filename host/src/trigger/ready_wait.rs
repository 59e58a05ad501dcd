//! How long a woken instance waits for a worker thread: the wait that
//! grows when more requests are let in than the cores can run.
//!
//! An instance waits for two kinds of thing: for what it asked (Postgres,
//! Redis, another component, a timer), and, once that has come, for a
//! worker thread to run it again. Only the second says the host is
//! overloaded, and it is invisible from outside the task: tokio does not
//! say how long its queues are (not in its stable API), and a task sent
//! into the runtime from outside is run within about 200 µs however long
//! the workers' own queues are (a worker takes from the shared queue every
//! so many tasks, a number tokio tunes to about every 200 µs).
//! So the instance's future is wrapped ([`Watched`]): the waker it is given
//! notes when it is woken, and the next poll, when it runs, adds the time
//! between to a running total ([`ReadyWait::take`] reads and resets it).
//! That time includes the cores being taken by other processes (Postgres,
//! Redis, the load generator) as well as by other tasks.
//!
//! Used by `--max-concurrent-requests auto` only (see
//! [`super::adaptive_limit`]); without it nothing is wrapped.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

/// The waits measured since the last [`ReadyWait::take`].
pub struct ReadyWait {
    /// Timestamps are nanoseconds since this, plus one (0 is "not woken").
    epoch: Instant,
    total_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for ReadyWait {
    fn default() -> Self {
        Self { epoch: Instant::now(), total_ns: AtomicU64::new(0), count: AtomicU64::new(0) }
    }
}

impl ReadyWait {
    /// `inner`, measured whenever it is woken and run again.
    pub fn watch<F: Future + Unpin>(self: &Arc<Self>, inner: F) -> Watched<F> {
        let signal = Arc::new(Signal { meter: self.clone(), woken_at: AtomicU64::new(0), task: AtomicWaker::new() });
        Watched { inner, waker: Waker::from(signal.clone()), signal }
    }

    /// The mean wait since the last call, and how many waits it is of;
    /// `None` when nothing was woken meanwhile.
    pub fn take(&self) -> Option<(Duration, u64)> {
        let count = self.count.swap(0, Ordering::AcqRel);
        let total = self.total_ns.swap(0, Ordering::AcqRel);
        (count > 0).then(|| (Duration::from_nanos(total / count), count))
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn record(&self, woken_at: u64) {
        self.total_ns.fetch_add(self.now().saturating_sub(woken_at), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The waker an instance is polled with: notes the first wake since its
/// last poll, then wakes the request's task.
struct Signal {
    meter: Arc<ReadyWait>,
    woken_at: AtomicU64,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.woken_at.compare_exchange(0, self.meter.now(), Ordering::AcqRel, Ordering::Relaxed);
        self.task.wake();
    }
}

/// A future whose wake-to-run waits are measured.
pub struct Watched<F> {
    inner: F,
    signal: Arc<Signal>,
    waker: Waker,
}

impl<F: Future + Unpin> Future for Watched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let woken_at = this.signal.woken_at.swap(0, Ordering::AcqRel);
        if woken_at != 0 {
            this.signal.meter.record(woken_at);
        }
        this.signal.task.register(cx.waker());
        let poll = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
        // Woken while it ran (it yielded, or what it waited on came at
        // once): ready from now, not from the wake, which it was running
        // through.
        if poll.is_pending() && this.signal.woken_at.load(Ordering::Acquire) != 0 {
            this.signal.woken_at.store(this.signal.meter.now(), Ordering::Release);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_time_from_a_wake_to_the_next_poll_is_measured() {
        let meter = Arc::new(ReadyWait::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watched = tokio::spawn(meter.watch(rx));
        // Let it be polled once and wait on the channel.
        tokio::task::yield_now().await;
        assert!(meter.take().is_none(), "nothing woken yet");
        tx.send(()).unwrap();
        // Woken, but this (single-threaded) runtime is busy here for 20 ms.
        std::thread::sleep(Duration::from_millis(20));
        watched.await.unwrap().unwrap();
        let (mean, count) = meter.take().expect("one wake measured");
        assert_eq!(count, 1);
        assert!(mean >= Duration::from_millis(20), "{mean:?}");
        assert!(meter.take().is_none(), "taking resets");
    }
}
