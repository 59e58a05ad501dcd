//! How much of the machine's CPU went unused: whether letting more
//! requests in could get more of them done.
//!
//! Why: `--max-concurrent-requests auto` ([`super::adaptive_limit`]) raises
//! its limit while woken instances find a worker at once and requests wait
//! at the door. That says the host's own threads have room, not that the
//! machine has. In production the requests' time goes to Postgres and Redis
//! on the same cores: their replies wait to be noticed, so instances wait
//! little for a worker, and the limit climbed to 6 to 16 on a 2-core
//! machine that was already busy (1.98 of 2 cores), where a limit of 4
//! served as many requests with a p99 a fifth to two fifths shorter. More
//! requests in flight can only get more done when some CPU is left over.
//!
//! How: Linux counts every CPU's time by state in `/proc/stat`; its first
//! line sums them over the CPUs. The share that was idle (idle and
//! waiting on I/O) between two readings is the spare. Elsewhere there is no
//! such count, and [`SpareCpu::read`] answers `None`: the limit then moves
//! on the waits alone, as before. In a container held to a CPU quota the
//! count is still the whole machine's, so the spare can look larger than
//! the host's to use; the waits, which a throttled host does see, still
//! lower the limit then.
//!
//! The two counters are also read by the shop benchmark, to say how busy
//! the machine was during a run ([`machine_ticks`], [`own_ticks`]).
use std::fs;

/// Where Linux keeps the CPU time counters.
const PROC_STAT: &str = "/proc/stat";
/// This process's own counters.
const SELF_STAT: &str = "/proc/self/stat";

/// The CPU time counters at the last reading.
#[derive(Debug, Default)]
pub struct SpareCpu {
    last: Option<(MachineTicks, u64)>,
}

/// The machine's CPU time, summed over its CPUs (the first line of
/// `/proc/stat`), in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineTicks {
    /// Idle or waiting on I/O.
    pub idle: u64,
    /// In every state.
    pub total: u64,
}

/// Shares of the machine's CPU time over a period, each 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuShares {
    /// Unused.
    pub spare: f64,
    /// Used by this process.
    pub own: f64,
}

impl SpareCpu {
    /// The shares of the machine's CPU time that went unused and that this
    /// process used since the last call; `None` on the first call, where
    /// there is no count, and when no tick passed (the counters move in
    /// hundredths of a second).
    pub fn read(&mut self) -> Option<CpuShares> {
        let now = (machine_ticks()?, own_ticks()?);
        let (machine, own) = self.last.replace(now)?;
        let total = now.0.total.checked_sub(machine.total)?;
        let idle = now.0.idle.checked_sub(machine.idle)?;
        let own = now.1.checked_sub(own)?;
        (total > 0).then(|| CpuShares {
            spare: (idle as f64 / total as f64).min(1.0),
            own: (own as f64 / total as f64).min(1.0),
        })
    }
}

/// The machine's CPU time now; `None` where `/proc/stat` cannot be read.
pub fn machine_ticks() -> Option<MachineTicks> {
    fs::read_to_string(PROC_STAT).ok().and_then(|text| parse(&text))
}

/// This process's user and system time now, in clock ticks; `None` where
/// `/proc/self/stat` cannot be read.
pub fn own_ticks() -> Option<u64> {
    fs::read_to_string(SELF_STAT).ok().and_then(|text| parse_own(&text))
}

/// The summed `cpu` line: user nice system idle iowait irq softirq steal
/// (guest time is counted in user already, so it is left out).
fn parse(text: &str) -> Option<MachineTicks> {
    let line = text.lines().next()?;
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    Some(MachineTicks { idle: idle + iowait, total: user + nice + system + idle + iowait + irq + softirq + steal })
}

/// utime plus stime from `/proc/self/stat`: the 14th and 15th fields, the
/// 12th and 13th after the command name's closing parenthesis (the name
/// itself may hold spaces and parentheses).
fn parse_own(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summed_line_gives_idle_and_iowait_against_every_state_but_guest() {
        let text = "cpu  100 5 20 300 10 1 2 3 40 0\ncpu0 50 2 10 150 5 0 1 1 20 0\n";
        assert_eq!(parse(text), Some(MachineTicks { idle: 310, total: 441 }));
    }

    #[test]
    fn the_process_time_is_user_plus_system_whatever_its_name_holds() {
        let text = "4242 (bazaar (x) y) S 1 4242 4242 0 -1 4194560 900 0 3 0 170 35 0 0 20 0 7 0 123 456 789\n";
        assert_eq!(parse_own(text), Some(205));
        assert_eq!(parse_own("4242 (bazaar) S 1 2"), None, "cut short");
    }

    #[test]
    fn an_older_kernel_or_another_file_gives_nothing() {
        assert_eq!(parse("cpu  100 5 20 300\n"), None, "fewer than eight counters");
        assert_eq!(parse("intr 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn on_linux_two_readings_apart_give_a_share_of_the_machine() {
        let mut spare = SpareCpu::default();
        assert_eq!(spare.read(), None, "the first reading has nothing to compare with");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let shares = spare.read().expect("ticks passed in 50 ms");
        assert!((0.0..=1.0).contains(&shares.spare), "{shares:?}");
        assert!((0.0..=1.0).contains(&shares.own), "{shares:?}");
    }
}
