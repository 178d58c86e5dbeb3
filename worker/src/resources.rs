//! What the container really has: CPUs from cgroup v2 `cpu.max` (v1 `cfs_quota` as fallback)
//! and memory from `memory.max`, falling back to the host. Thread pools and admission budgets
//! are sized from these, never from the host's core count alone (a pod limited to 2 CPUs on a
//! 64-core node must not start 64 threads).

use std::path::Path;

/// CPUs and memory available to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Whole CPUs the process may use (quota rounded up, at least 1).
    pub cpus: usize,
    /// Memory limit in bytes, if the cgroup or the host reports one.
    pub memory_bytes: Option<u64>,
}

impl Resources {
    /// Reads the limits of the current cgroup (v2 first, then v1), capped by the host.
    pub fn detect() -> Self {
        Self::detect_under(Path::new("/sys/fs/cgroup"))
    }

    /// [`Resources::detect`] with a different cgroup mount, for tests.
    pub fn detect_under(cgroup_root: &Path) -> Self {
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let read = |name: &str| std::fs::read_to_string(cgroup_root.join(name)).ok();
        let quota_cpus = read("cpu.max").and_then(|s| parse_cpu_max(&s)).or_else(|| {
            let quota = read("cpu/cpu.cfs_quota_us")?;
            let period = read("cpu/cpu.cfs_period_us")?;
            parse_cfs(&quota, &period)
        });
        let cpus = quota_cpus.map_or(host_cpus, |q| q.min(host_cpus)).max(1);
        let cgroup_memory = read("memory.max")
            .and_then(|s| parse_memory_max(&s))
            .or_else(|| read("memory/memory.limit_in_bytes").and_then(|s| parse_memory_max(&s)));
        let host_memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| parse_meminfo_total(&s));
        let memory_bytes = match (cgroup_memory, host_memory) {
            (Some(c), Some(h)) => Some(c.min(h)),
            (c, h) => c.or(h),
        };
        Resources { cpus, memory_bytes }
    }
}

/// `cpu.max` is `"<quota> <period>"` or `"max <period>"` (unlimited).
pub fn parse_cpu_max(contents: &str) -> Option<usize> {
    let mut fields = contents.split_whitespace();
    let quota = fields.next()?;
    let period: u64 = fields.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some(quota.div_ceil(period).max(1) as usize)
}

fn parse_cfs(quota: &str, period: &str) -> Option<usize> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    if quota <= 0 || period <= 0 {
        return None;
    }
    Some(((quota + period - 1) / period).max(1) as usize)
}

/// `memory.max` is a byte count or `"max"`. cgroup v1 reports "unlimited" as a huge number.
pub fn parse_memory_max(contents: &str) -> Option<u64> {
    let value: u64 = contents.trim().parse().ok()?;
    (value < (1 << 60)).then_some(value)
}

fn parse_meminfo_total(contents: &str) -> Option<u64> {
    let line = contents.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), if the system reports it.
pub fn current_rss() -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn parse_status_kib(contents: &str, field: &str) -> Option<u64> {
    let line = contents.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_quota_rounds_up() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn memory_max_parses_bytes_and_max() {
        assert_eq!(parse_memory_max("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("9223372036854771712"), None);
    }

    #[test]
    fn detect_reads_a_cgroup_tree() {
        let dir = std::env::temp_dir().join(format!("thumbd-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.max"), "100000 100000\n").unwrap();
        std::fs::write(dir.join("memory.max"), "268435456\n").unwrap();
        let r = Resources::detect_under(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.cpus, 1);
        assert_eq!(r.memory_bytes, Some(256 << 20));
    }
}
