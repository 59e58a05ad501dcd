//! CPU time, to say how much of the 2-core machine the load generator took
//! from the shop it measures (and how busy the machine was at all: other
//! work on it skews the figures).
use std::time::Instant;

use bazaar::trigger::spare_cpu;

/// Linux's USER_HZ: /proc reports CPU time in these ticks.
const TICKS_PER_SECOND: f64 = 100.0;

/// A reading of this process's and the machine's CPU time.
pub struct Reading {
    at: Instant,
    own_ticks: u64,
    machine_busy_ticks: u64,
}

impl Reading {
    pub fn now() -> Reading {
        Reading { at: Instant::now(), own_ticks: own_ticks(), machine_busy_ticks: machine_busy_ticks() }
    }

    /// Cores used on average since `self`: `(this process, the machine)`.
    pub fn cores_since(&self) -> (f64, f64) {
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let own = own_ticks().saturating_sub(self.own_ticks) as f64 / TICKS_PER_SECOND;
        let machine = machine_busy_ticks().saturating_sub(self.machine_busy_ticks) as f64 / TICKS_PER_SECOND;
        (own / secs, machine / secs)
    }
}

/// utime + stime of this process (0 where /proc cannot be read).
fn own_ticks() -> u64 {
    spare_cpu::own_ticks().unwrap_or(0)
}

/// Every CPU's non-idle time (0 where /proc cannot be read).
fn machine_busy_ticks() -> u64 {
    spare_cpu::machine_ticks().map_or(0, |t| t.total - t.idle)
}
