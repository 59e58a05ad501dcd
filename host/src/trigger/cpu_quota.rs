//! The CPU a container may use, when a cgroup quota holds it to less than
//! the machine has, and how much of it its processes have used.
//!
//! Why: `--max-concurrent-requests auto` lets more requests in only while
//! some CPU is left over ([`super::spare_cpu`]). `/proc/stat` counts the
//! whole machine, so a host held to one core of a 2-core machine (a
//! Kubernetes pod's `limits.cpu: 1`, `docker run --cpus 1`) saw half the
//! machine idle while the kernel was already throttling it: a spare that
//! allowed raises the host could not use. (The waits for a worker, which a
//! throttled host does see, held the limit down most of the time anyway:
//! in the shop under a one-core quota the limit sat at 2 with this count
//! and at 2 in 40 of 48 samples without it, with the same throughput and
//! p99; scripts/bench/where-we-stand.md.)
//!
//! How: the kernel keeps a process's control groups in `/proc/self/cgroup`
//! and where each hierarchy is mounted in `/proc/self/mountinfo`. From the
//! process's own group up to the mount's root, every level may hold a
//! quota; the tightest one binds, and the CPU time used is read at that
//! level, since every process under it shares its quota:
//!
//! - cgroup v2: `cpu.max` ("max 100000", or "150000 100000": 1.5 cores) and
//!   `usage_usec` in `cpu.stat`;
//! - cgroup v1: `cpu.cfs_quota_us` (-1 for none) over `cpu.cfs_period_us`,
//!   and `cpuacct.usage` (nanoseconds) in the cpuacct hierarchy, mounted
//!   with cpu or apart.
//!
//! A hierarchy whose files cannot be read counts as no quota: the host then
//! goes by the machine's counters alone, as without a container.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A quota that holds this process, and where its use is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuQuota {
    /// The CPUs' worth of time the quota allows per second of wall time.
    pub cores: f64,
    usage: Usage,
}

/// The file that counts the CPU time used under the quota.
#[derive(Clone, Debug, PartialEq)]
enum Usage {
    /// v2's `cpu.stat`, its `usage_usec` line.
    CpuStat(PathBuf),
    /// v1's `cpuacct.usage`, in nanoseconds.
    CpuacctUsage(PathBuf),
}

impl CpuQuota {
    /// The quota that binds this process, if one does.
    pub fn find() -> Option<Self> {
        Self::find_under(Path::new("/"))
    }

    /// As [`CpuQuota::find`], with `/proc` and the mount points read under
    /// `root` (tests lay out a machine's files in a folder).
    fn find_under(root: &Path) -> Option<Self> {
        let groups = fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
        let mounts = fs::read_to_string(root.join("proc/self/mountinfo")).ok()?;
        let groups = parse_groups(&groups);
        let mounts = parse_mounts(&mounts);
        let under = |mount_point: &str| root.join(mount_point.trim_start_matches('/'));
        // v2 first: on a hybrid machine the unified hierarchy is mounted
        // without the cpu controller, and its folders have no cpu.max.
        if let (Some(path), Some(mount)) = (groups.iter().find(|g| g.v2).map(|g| &g.path), mounts.iter().find(|m| m.v2)) {
            let own = group_dir(&under(&mount.point), &mount.root, path);
            if let Some((cores, level)) = tightest(&under(&mount.point), &own, read_v2_limit) {
                return Some(Self { cores, usage: Usage::CpuStat(level.join("cpu.stat")) });
            }
        }
        let v1 = |controller: &str| {
            let group = groups.iter().find(|g| g.controllers.iter().any(|c| c == controller))?;
            let mount = mounts.iter().find(|m| m.controllers.iter().any(|c| c == controller))?;
            Some((under(&mount.point), group_dir(&under(&mount.point), &mount.root, &group.path)))
        };
        let (cpu_mount, cpu_dir) = v1("cpu")?;
        let (cores, level) = tightest(&cpu_mount, &cpu_dir, read_v1_limit)?;
        // The cpuacct folder as many levels up from the process's group.
        let up = cpu_dir.components().count() - level.components().count();
        let (_, cpuacct_dir) = v1("cpuacct")?;
        let cpuacct_level = cpuacct_dir.ancestors().nth(up)?;
        Some(Self { cores, usage: Usage::CpuacctUsage(cpuacct_level.join("cpuacct.usage")) })
    }

    /// The CPU time used under the quota so far, by every process under it;
    /// `None` when its file cannot be read (the group went away).
    pub fn used(&self) -> Option<Duration> {
        match &self.usage {
            Usage::CpuStat(file) => fs::read_to_string(file).ok().as_deref().and_then(parse_usage_usec).map(Duration::from_micros),
            Usage::CpuacctUsage(file) => fs::read_to_string(file).ok()?.trim().parse().ok().map(Duration::from_nanos),
        }
    }
}

/// One line of `/proc/self/cgroup`: `id:controllers:path`.
#[derive(Debug, PartialEq)]
struct Group {
    /// The v2 line (`0::/path`).
    v2: bool,
    controllers: Vec<String>,
    path: String,
}

fn parse_groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Group {
                v2: id == "0" && controllers.is_empty(),
                controllers: controllers.split(',').filter(|c| !c.is_empty()).map(String::from).collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    /// The group at the mount's root (`/` inside a cgroup namespace, the
    /// container's group when a container runs without one).
    root: String,
    point: String,
    v2: bool,
    /// v1's controllers, from the super options (`rw,cpu,cpuacct`).
    controllers: Vec<String>,
}

/// `id parent major:minor root mount-point options [optional...] - type source super-options`
fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (kind, _source, options) = (right.next()?, right.next()?, right.next().unwrap_or(""));
            if kind != "cgroup" && kind != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: unescape(left.get(3)?),
                point: unescape(left.get(4)?),
                v2: kind == "cgroup2",
                controllers: if kind == "cgroup" { options.split(',').map(String::from).collect() } else { Vec::new() },
            })
        })
        .collect()
}

/// mountinfo writes a space, tab, newline and backslash in a path as an
/// octal escape (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 4).and_then(|digits| u8::from_str_radix(digits, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The process's group folder: its path in the hierarchy, less the part
/// above the mount's root. A path outside the mount's root (a namespace's
/// view that does not line up) gives the mount point itself.
fn group_dir(mount_point: &Path, mount_root: &str, path: &str) -> PathBuf {
    let relative = Path::new(path).strip_prefix(mount_root).unwrap_or(Path::new(""));
    mount_point.join(relative)
}

/// The tightest quota from `dir` up to `mount_point`, with the folder that
/// sets it.
fn tightest(mount_point: &Path, dir: &Path, limit: fn(&Path) -> Option<f64>) -> Option<(f64, PathBuf)> {
    dir.ancestors()
        .take_while(|level| level.starts_with(mount_point))
        .filter_map(|level| limit(level).map(|cores| (cores, level.to_path_buf())))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// v2's `cpu.max`: "max 100000" (none) or "quota period".
fn read_v2_limit(dir: &Path) -> Option<f64> {
    parse_cpu_max(&fs::read_to_string(dir.join("cpu.max")).ok()?)
}

fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_ascii_whitespace();
    cores(fields.next()?.parse().ok()?, fields.next()?.parse().ok()?)
}

/// v1's `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
fn read_v1_limit(dir: &Path) -> Option<f64> {
    let read = |file: &str| fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok();
    cores(read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)
}

/// A quota over its period, in CPUs; `None` for no quota (v1's -1).
fn cores(quota: f64, period: f64) -> Option<f64> {
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `usage_usec N` in v2's `cpu.stat`.
fn parse_usage_usec(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("usage_usec ")).and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine's files under a temporary folder.
    struct Machine(tempfile::TempDir);

    impl Machine {
        fn new(groups: &str, mounts: &str) -> Self {
            let machine = Self(tempfile::tempdir().unwrap());
            machine.write("proc/self/cgroup", groups);
            machine.write("proc/self/mountinfo", mounts);
            machine
        }

        fn write(&self, path: &str, text: &str) {
            let file = self.0.path().join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }

        /// v1's two files in the cpu hierarchy's folder `dir`.
        fn v1_limit(&self, dir: &str, quota: &str, period: &str) {
            self.write(&format!("{dir}/cpu.cfs_quota_us"), quota);
            self.write(&format!("{dir}/cpu.cfs_period_us"), period);
        }

        fn find(&self) -> Option<CpuQuota> {
            CpuQuota::find_under(self.0.path())
        }

        /// The quota found allows `cores` and has counted `used`.
        fn assert_quota(&self, cores: f64, used: Duration) {
            let quota = self.find().expect("a quota");
            assert_eq!((quota.cores, quota.used()), (cores, Some(used)));
        }
    }

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn a_container_in_its_own_cgroup_namespace_reads_its_quota_and_use_at_the_root() {
        let machine = Machine::new("0::/\n", V2_MOUNT);
        machine.write("sys/fs/cgroup/cpu.max", "150000 100000\n");
        machine.write("sys/fs/cgroup/cpu.stat", "usage_usec 12345\nuser_usec 10000\nsystem_usec 2345\nnr_throttled 3\n");
        machine.assert_quota(1.5, Duration::from_micros(12345));
    }

    #[test]
    fn the_tightest_level_binds_and_counts_the_use_of_everything_under_it() {
        // A pod's limit over its container's group, which has none.
        let machine = Machine::new("0::/kubepods/pod1/ctr\n", V2_MOUNT);
        machine.write("sys/fs/cgroup/cpu.max", "max 100000\n");
        machine.write("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
        machine.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "50000 100000\n");
        machine.write("sys/fs/cgroup/kubepods/pod1/cpu.stat", "usage_usec 900\n");
        machine.write("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
        machine.write("sys/fs/cgroup/kubepods/pod1/ctr/cpu.stat", "usage_usec 400\n");
        // The pod's use (900), not its container's (400).
        machine.assert_quota(0.5, Duration::from_micros(900));
    }

    #[test]
    fn no_quota_at_any_level_is_none() {
        let machine = Machine::new("0::/app\n", V2_MOUNT);
        machine.write("sys/fs/cgroup/cpu.max", "max 100000\n");
        machine.write("sys/fs/cgroup/app/cpu.max", "max 100000\n");
        assert_eq!(machine.find(), None);
        assert_eq!(Machine::new("", "").find(), None, "no cgroups at all");
    }

    #[test]
    fn v1_with_cpu_and_cpuacct_mounted_apart_and_the_container_at_the_mounts_root() {
        // Docker without a cgroup namespace: the path names the container's
        // group, which is the mount's root inside the container.
        let machine = Machine::new(
            "12:cpuacct:/docker/abc\n11:cpu:/docker/abc\n0::/docker/abc\n",
            "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu ro,relatime - cgroup cgroup rw,cpu\n\
             33 31 0:30 /docker/abc /sys/fs/cgroup/cpuacct ro,relatime - cgroup cgroup rw,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        );
        machine.write("sys/fs/cgroup/unified/cgroup.controllers", "");
        machine.v1_limit("sys/fs/cgroup/cpu", "100000\n", "100000\n");
        machine.write("sys/fs/cgroup/cpuacct/cpuacct.usage", "2500000\n");
        machine.assert_quota(1.0, Duration::from_micros(2500));
    }

    #[test]
    fn v1_with_cpu_and_cpuacct_mounted_together_reads_the_level_that_binds() {
        let machine = Machine::new(
            "4:cpu,cpuacct:/batch/job\n",
            "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n",
        );
        machine.v1_limit("sys/fs/cgroup/cpu,cpuacct", "-1\n", "100000\n");
        machine.v1_limit("sys/fs/cgroup/cpu,cpuacct/batch", "25000\n", "50000\n");
        machine.write("sys/fs/cgroup/cpu,cpuacct/batch/cpuacct.usage", "7000\n");
        machine.v1_limit("sys/fs/cgroup/cpu,cpuacct/batch/job", "-1\n", "100000\n");
        machine.assert_quota(0.5, Duration::from_nanos(7000));
    }

    #[test]
    fn mount_points_with_escaped_spaces_and_optional_fields_parse() {
        let mounts = parse_mounts("40 31 0:38 / /mnt/my\\040groups rw shared:5 master:1 - cgroup cgroup rw,cpu,cpuacct\n");
        assert_eq!(
            mounts,
            vec![Mount { root: "/".into(), point: "/mnt/my groups".into(), v2: false, controllers: vec!["rw".into(), "cpu".into(), "cpuacct".into()] }]
        );
        assert!(parse_mounts("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n").is_empty(), "not a cgroup");
    }

    #[test]
    fn cpu_max_and_usage_lines() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_usage_usec("user_usec 1\nusage_usec 42\n"), Some(42));
        assert_eq!(parse_usage_usec("nr_periods 0\n"), None);
    }
}
