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
//! on the waits alone, as before.
//!
//! In a container held to a CPU quota (a Kubernetes pod's `limits.cpu`),
//! `/proc/stat` still counts the whole machine, where a host held to one
//! core of two saw half of it idle while the kernel throttled it. There
//! the quota's own count decides too ([`super::cpu_quota`]): the spare is
//! the smaller of the machine's and the quota's, and the host's share is
//! taken of the quota.
//!
//! The two counters are also read by the shop benchmark, to say how busy
//! the machine was during a run ([`machine_ticks`], [`own_ticks`]).
use std::fs;
use std::time::{Duration, Instant};

use super::cpu_quota::CpuQuota;

/// Where Linux keeps the CPU time counters.
const PROC_STAT: &str = "/proc/stat";
/// This process's own counters.
const SELF_STAT: &str = "/proc/self/stat";

/// How often the quota is looked for again: a pod's CPU limit can be
/// resized in place, and a process moved to another group.
const QUOTA_REFRESH: Duration = Duration::from_secs(1);

/// The CPU time counters at the last reading.
#[derive(Debug)]
pub struct SpareCpu {
    quota: Option<Quota>,
    /// When the quota was last looked for.
    quota_found: Instant,
    last: Option<Counts>,
}

impl Default for SpareCpu {
    fn default() -> Self {
        Self { quota: Quota::find(), quota_found: Instant::now(), last: None }
    }
}

/// A quota, with the machine's CPU count to weigh it against; both looked
/// up with the quota, not at every reading.
#[derive(Debug, PartialEq)]
struct Quota {
    limit: CpuQuota,
    cpus: f64,
}

impl Quota {
    fn find() -> Option<Self> {
        let limit = CpuQuota::find()?;
        let cpus = fs::read_to_string(PROC_STAT).ok().map(|text| parse_cpus(&text))?;
        Some(Self { limit, cpus: f64::from(cpus) })
    }
}

/// One reading of the counters.
#[derive(Clone, Copy, Debug)]
struct Counts {
    machine: MachineTicks,
    /// This process's CPU time, in clock ticks.
    own: u64,
    /// When, and the CPU time used under the quota then.
    quota: Option<(Instant, Duration)>,
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

/// Shares of the CPU time this process could use over a period: the
/// machine's, or the quota's where one holds it to less. Each is 0 to 1,
/// except that under a quota one short period can read a spare below 0 (or
/// an own share above 1): a container may run on every core for part of
/// the quota's period and be held still for the rest, and the moving
/// average over several periods comes back to the quota's true share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuShares {
    /// Unused.
    pub spare: f64,
    /// Used by this process.
    pub own: f64,
}

impl SpareCpu {
    /// The shares of the CPU time this process could use (the machine's,
    /// or its quota's) that went unused and that it used since the last
    /// call; `None` on the first call, where
    /// there is no count, and when no tick passed (the counters move in
    /// hundredths of a second).
    pub fn read(&mut self) -> Option<CpuShares> {
        if self.quota_found.elapsed() >= QUOTA_REFRESH {
            self.quota_found = Instant::now();
            let quota = Quota::find();
            if quota != self.quota {
                self.quota = quota;
                // The counts before the change are not comparable.
                self.last = None;
            }
        }
        let quota = self.quota.as_ref().and_then(|q| Some((Instant::now(), q.limit.used()?)));
        let now = Counts { machine: machine_ticks()?, own: own_ticks()?, quota };
        let then = self.last.replace(now)?;
        shares(&then, &now, self.quota.as_ref().map(|q| (q.limit.cores, q.cpus)))
    }
}

/// The shares between two readings, under a quota of `cores` on a machine
/// of `cpus` if one holds the process to fewer CPUs than the machine has.
fn shares(then: &Counts, now: &Counts, quota: Option<(f64, f64)>) -> Option<CpuShares> {
    let total = now.machine.total.checked_sub(then.machine.total)?;
    let idle = now.machine.idle.checked_sub(then.machine.idle)?;
    if total == 0 {
        return None;
    }
    let own = now.own.checked_sub(then.own)? as f64 / total as f64;
    let machine = CpuShares { spare: (idle as f64 / total as f64).min(1.0), own: own.min(1.0) };
    match (quota, then.quota, now.quota) {
        (Some((cores, cpus)), Some((t0, used0)), Some((t1, used1))) if cores < cpus => {
            let allowed = cores * t1.duration_since(t0).as_secs_f64();
            if allowed <= 0.0 {
                return Some(machine);
            }
            let used = used1.saturating_sub(used0).as_secs_f64() / allowed;
            Some(CpuShares { spare: machine.spare.min(1.0 - used), own: own * cpus / cores })
        }
        _ => Some(machine),
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

/// How many CPUs `/proc/stat` counts (its `cpuN` lines).
fn parse_cpus(text: &str) -> u32 {
    let per_cpu = |line: &&str| line.strip_prefix("cpu").is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
    text.lines().filter(per_cpu).count().try_into().unwrap_or(u32::MAX)
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
        assert_eq!(parse_cpus(text), 1);
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

    fn counts(idle: u64, total: u64, own: u64, at: Instant, used_ms: u64) -> Counts {
        Counts { machine: MachineTicks { idle, total }, own, quota: Some((at, Duration::from_millis(used_ms))) }
    }

    #[test]
    fn under_a_quota_of_one_core_in_two_a_half_idle_machine_has_nothing_spare() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(100);
        // 100 ms on 2 CPUs: 20 ticks, 10 of them idle; the host used 10
        // (one core) and so did its group, all that one core allows.
        let (then, now) = (counts(0, 0, 0, t0, 0), counts(10, 20, 10, t1, 100));
        let machine = shares(&then, &now, None).unwrap();
        assert_eq!(machine, CpuShares { spare: 0.5, own: 0.5 }, "the machine alone");
        let held = shares(&then, &now, Some((1.0, 2.0))).unwrap();
        assert!(held.spare.abs() < 1e-9 && (held.own - 1.0).abs() < 1e-9, "{held:?}");
        // The group used a quarter of a core: three quarters of its quota spare.
        let light = shares(&then, &counts(15, 20, 2, t1, 25), Some((1.0, 2.0))).unwrap();
        assert!((light.spare - 0.75).abs() < 1e-9 && (light.own - 0.2).abs() < 1e-9, "{light:?}");
        // A busy machine is still busy under a quota the group has not used.
        let crowded = shares(&then, &counts(1, 20, 2, t1, 25), Some((1.0, 2.0))).unwrap();
        assert!((crowded.spare - 0.05).abs() < 1e-9, "{crowded:?}");
    }

    #[test]
    fn a_burst_past_the_quota_reads_below_zero_so_the_average_stays_true() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        // 10 ms on both CPUs under a 1-core quota: twice what it allows.
        let burst = shares(&counts(0, 0, 0, t0, 0), &counts(0, 2, 2, t1, 20), Some((1.0, 2.0))).unwrap();
        assert!((burst.spare + 1.0).abs() < 1e-9 && (burst.own - 2.0).abs() < 1e-9, "{burst:?}");
    }

    #[test]
    fn a_quota_as_large_as_the_machine_changes_nothing() {
        let t0 = Instant::now();
        let (then, now) = (counts(0, 0, 0, t0, 0), counts(10, 20, 10, t0 + Duration::from_millis(100), 100));
        assert_eq!(shares(&then, &now, Some((2.0, 2.0))), shares(&then, &now, None));
        assert_eq!(shares(&then, &Counts { quota: None, ..now }, Some((1.0, 2.0))), shares(&then, &now, None), "the group's count unread");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn on_linux_two_readings_apart_give_a_share_of_the_machine() {
        // The machine's count: under a quota one short period may read
        // outside 0 to 1 (see CpuShares).
        let mut spare = SpareCpu { quota: None, quota_found: Instant::now(), last: None };
        assert_eq!(spare.read(), None, "the first reading has nothing to compare with");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let shares = spare.read().expect("ticks passed in 50 ms");
        assert!((0.0..=1.0).contains(&shares.spare), "{shares:?}");
        assert!((0.0..=1.0).contains(&shares.own), "{shares:?}");
    }
}
