//! What the container really has. Thread pools and admission budgets are sized from these,
//! never from the host alone: a pod limited to 2 CPUs on a 64-core node must not start 64
//! threads, and a unit with `MemoryMax=512M` on a 24 GiB host must not budget 17 GiB.
//!
//! CPUs and memory come from the smallest limit between this process's own cgroup and the
//! cgroup mount's root, found through `/proc/self/cgroup` and `/proc/self/mountinfo`, for v1,
//! v2 and hybrids ([`cgroup`]); both are capped by the host (CPUs the scheduler gives the
//! process, `MemTotal`).

mod cgroup;

use std::path::{Path, PathBuf};

/// CPUs and memory available to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Whole CPUs the process may use (quota rounded up, at least 1).
    pub cpus: usize,
    /// Memory limit in bytes, if the cgroup or the host reports one.
    pub memory_bytes: Option<u64>,
}

impl Resources {
    /// Reads the limits of this process's cgroups, capped by the host.
    pub fn detect() -> Self {
        Detection::current().resources
    }
}

/// [`Resources`] and where each figure came from, for the start-up log (a wrong limit is
/// found faster when the log names the file it was read from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub resources: Resources,
    pub cpus_source: Source,
    pub memory_source: Source,
}

/// Where a figure of [`Resources`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A cgroup limit file.
    Cgroup(PathBuf),
    /// The host: `std::thread::available_parallelism` for CPUs, `/proc/meminfo` for memory.
    Host,
    /// Nothing reported one.
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Cgroup(file) => write!(f, "{}", file.display()),
            Source::Host => f.write_str("host"),
            Source::Unknown => f.write_str("none"),
        }
    }
}

/// What the host offers, whatever the cgroups say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Host {
    cpus: usize,
    memory_bytes: Option<u64>,
}

impl Detection {
    /// Reads this process's cgroups and the host.
    pub fn current() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let host = Host {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: parse_meminfo_total(&read("/proc/meminfo")),
        };
        Self::detect_from(
            &read("/proc/self/cgroup"),
            &read("/proc/self/mountinfo"),
            Path::new("/"),
            host,
        )
    }

    /// [`Detection::current`] from the contents of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`, with the cgroup files under `fs_root` (for tests).
    fn detect_from(proc_self_cgroup: &str, mountinfo: &str, fs_root: &Path, host: Host) -> Self {
        let limits = cgroup::limits(proc_self_cgroup, mountinfo, fs_root);
        // The cgroup is named when it binds, also when it equals the host's figure.
        let (cpus, cpus_source) = match limits.cpus {
            Some(c) if c.value <= host.cpus => (c.value, Source::Cgroup(c.file)),
            _ => (host.cpus, Source::Host),
        };
        let (memory_bytes, memory_source) = match (limits.memory, host.memory_bytes) {
            (Some(c), Some(h)) if c.value > h => (Some(h), Source::Host),
            (Some(c), _) => (Some(c.value), Source::Cgroup(c.file)),
            (None, Some(h)) => (Some(h), Source::Host),
            (None, None) => (None, Source::Unknown),
        };
        Detection {
            resources: Resources {
                cpus: cpus.max(1),
                memory_bytes,
            },
            cpus_source,
            memory_source,
        }
    }
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

    const CGROUP: &str = "0::/thumbd.service\n";
    const MOUNTINFO: &str = "26 24 0:23 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n";

    fn tree(cpu_max: &str, memory_max: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("sys/fs/cgroup/thumbd.service");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("cpu.max"), cpu_max).unwrap();
        std::fs::write(group.join("memory.max"), memory_max).unwrap();
        root
    }

    #[test]
    fn the_cgroup_limits_bind_below_the_host() {
        let root = tree("100000 100000\n", "268435456\n");
        let host = Host {
            cpus: 8,
            memory_bytes: Some(16 << 30),
        };
        let d = Detection::detect_from(CGROUP, MOUNTINFO, root.path(), host);
        assert_eq!(
            d.resources,
            Resources {
                cpus: 1,
                memory_bytes: Some(256 << 20)
            }
        );
        let group = root.path().join("sys/fs/cgroup/thumbd.service");
        assert_eq!(d.cpus_source, Source::Cgroup(group.join("cpu.max")));
        assert_eq!(d.memory_source, Source::Cgroup(group.join("memory.max")));
        assert_eq!(
            d.memory_source.to_string(),
            group.join("memory.max").display().to_string()
        );
    }

    #[test]
    fn the_host_caps_the_cgroup_limits() {
        let root = tree("400000 100000\n", "68719476736\n");
        let host = Host {
            cpus: 2,
            memory_bytes: Some(16 << 30),
        };
        let d = Detection::detect_from(CGROUP, MOUNTINFO, root.path(), host);
        assert_eq!(
            d.resources,
            Resources {
                cpus: 2,
                memory_bytes: Some(16 << 30)
            }
        );
        assert_eq!(
            (d.cpus_source, d.memory_source),
            (Source::Host, Source::Host)
        );

        let unlimited = tree("max 100000\n", "max\n");
        let none = Host {
            cpus: 2,
            memory_bytes: None,
        };
        let d = Detection::detect_from(CGROUP, MOUNTINFO, unlimited.path(), none);
        assert_eq!(d.resources.memory_bytes, None);
        assert_eq!(d.memory_source.to_string(), "none");
        assert_eq!(d.cpus_source.to_string(), "host");
    }
}
