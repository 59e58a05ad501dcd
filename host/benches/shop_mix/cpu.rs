//! CPU time, to say how much of the 2-core machine the load generator took
//! from the shop it measures (and how busy the machine was at all: other
//! work on it skews the figures).
use std::time::Instant;

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

/// utime + stime of this process (fields 14 and 15 of /proc/self/stat,
/// counted after the parenthesised command name).
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    fields.iter().sum()
}

/// Every CPU's non-idle time (the `cpu` line of /proc/stat, less idle and
/// iowait).
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    // guest time is already counted in user time.
    ticks.iter().take(8).sum::<u64>().saturating_sub(idle)
}
