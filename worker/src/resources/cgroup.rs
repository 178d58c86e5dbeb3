//! This process's own cgroup, and the smallest CPU and memory limits on the way up from it.
//!
//! The limit that binds is not at the cgroup mount's root. Without a cgroup namespace (a
//! systemd unit with `MemoryMax=`, `--cgroupns=host`, any v1 host) the mount root is the host's
//! root group, which has no limit, and the process sits further down. A limit set on any
//! ancestor binds as well (a unit in a slice with `MemoryMax=`). So, as the JVM and Go's
//! automemlimit do:
//!
//! 1. `/proc/self/cgroup` names the process's group per hierarchy: `ID:CONTROLLERS:PATH` for v1,
//!    `0::PATH` for v2. A controller listed on a v1 line lives there, even when a v2 hierarchy
//!    is mounted too (hybrid); otherwise it is v2's.
//! 2. `/proc/self/mountinfo` says where that hierarchy is mounted and which of its groups the
//!    mount shows as its root (a container's bind mount shows its own group, a cgroup namespace
//!    shows `/`). The group's directory is the mount point plus the path below that root.
//! 3. Every directory from the group up to the mount point is read; the smallest limit wins.
//!    Ancestors above the mount root are invisible, except in v1's `memory.stat`, whose
//!    `hierarchical_memory_limit` is the kernel's own minimum over all of them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// A limit and the file it was read from (for the start-up log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub file: PathBuf,
}

/// The smallest limits of this process's cgroups; `None` where no group on the way sets one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// Whole CPUs (quota / period, rounded up).
    pub cpus: Option<Found<usize>>,
    /// Bytes.
    pub memory: Option<Found<u64>>,
}

/// Reads the limits from the contents of `/proc/self/cgroup` and `/proc/self/mountinfo`;
/// mount points are looked up under `fs_root` (`/`, or a fixture tree in tests).
pub fn limits(proc_self_cgroup: &str, mountinfo: &str, fs_root: &Path) -> Limits {
    let memberships = parse_proc_cgroup(proc_self_cgroup);
    let mounts = parse_mountinfo(mountinfo);
    let group = |controller| Group::find(controller, &memberships, &mounts, fs_root);
    Limits {
        cpus: group("cpu").and_then(|g| g.cpu_limit()),
        memory: group("memory").and_then(|g| g.memory_limit()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A line of `/proc/self/cgroup`.
#[derive(Debug, PartialEq, Eq)]
struct Membership {
    /// Empty for the v2 hierarchy (`0::PATH`).
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(contents: &str) -> Vec<Membership> {
    contents
        .lines()
        .filter_map(|line| {
            // The path is everything after the second colon: it may contain colons itself.
            let mut fields = line.splitn(3, ':');
            let _hierarchy_id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// A cgroup line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    version: Version,
    /// The group the mount shows at its mount point (`/` unless bind-mounted or namespaced).
    root: PathBuf,
    point: PathBuf,
    /// v1: the controllers of the hierarchy (super options such as `rw,cpu,cpuacct`).
    options: Vec<String>,
}

/// Keeps the cgroup mounts. A line is `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] -
/// FSTYPE SOURCE SUPER_OPTIONS`; the optional fields vary in number, so the line is split at
/// the ` - ` separator (paths cannot contain it: their spaces are escaped as `\040`).
fn parse_mountinfo(contents: &str) -> Vec<Mount> {
    contents
        .lines()
        .filter_map(|line| {
            let (mount, filesystem) = line.split_once(" - ")?;
            let mut mount = mount.split(' ');
            let root = mount.nth(3)?;
            let point = mount.next()?;
            let mut filesystem = filesystem.split(' ');
            let version = match filesystem.next()? {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => return None,
            };
            let options = filesystem.nth(1).unwrap_or("");
            Some(Mount {
                version,
                root: unescape(root),
                point: unescape(point),
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3' // at most \377
        });
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The process's group of one controller: its directory and the mount point above it.
#[derive(Debug, PartialEq, Eq)]
struct Group {
    version: Version,
    dir: PathBuf,
    mount_point: PathBuf,
}

impl Group {
    fn find(
        controller: &str,
        memberships: &[Membership],
        mounts: &[Mount],
        fs_root: &Path,
    ) -> Option<Group> {
        let v1 = memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller));
        let (version, membership) = match v1 {
            Some(m) => (Version::V1, m),
            None => (
                Version::V2,
                memberships.iter().find(|m| m.controllers.is_empty())?,
            ),
        };
        let candidates: Vec<&Mount> = mounts
            .iter()
            .filter(|m| m.version == version)
            .filter(|m| version == Version::V2 || m.options.iter().any(|o| o == controller))
            .collect();
        let on_disk = |point: &Path| fs_root.join(point.strip_prefix("/").unwrap_or(point));
        // The mount whose root holds our group, the deepest such root if bind mounts overlap.
        let below_root = candidates
            .iter()
            .filter_map(|m| Some((on_disk(&m.point), m, below(&m.root, &membership.path)?)))
            .filter(|(point, _, relative)| point.join(relative).is_dir())
            .max_by_key(|(_, m, _)| m.root.components().count());
        let (mount_point, dir) = match below_root {
            Some((point, _, relative)) => (point.clone(), point.join(relative)),
            // The mount shows a group that is not an ancestor of ours as we see it (a cgroup
            // namespace entered after the mount, a path with `..`, a group not in this mount
            // namespace's view): the mount point itself is then the nearest group we can see.
            None => {
                let point = on_disk(&candidates.first()?.point);
                (point.clone(), point)
            }
        };
        Some(Group {
            version,
            dir,
            mount_point,
        })
    }

    /// The group's directory and each parent up to the mount point, nearest first.
    fn up(&self) -> impl Iterator<Item = &Path> {
        self.dir
            .ancestors()
            .take_while(|dir| dir.starts_with(&self.mount_point))
    }

    /// The smallest value of one limit file on the way up.
    fn smallest<T: Ord>(&self, file: &str, parse: impl Fn(&Path) -> Option<T>) -> Option<Found<T>> {
        self.up()
            .filter_map(|dir| {
                Some(Found {
                    value: parse(dir)?,
                    file: dir.join(file),
                })
            })
            .min_by(|a, b| a.value.cmp(&b.value))
    }

    fn memory_limit(&self) -> Option<Found<u64>> {
        match self.version {
            Version::V2 => self.smallest("memory.max", |dir| {
                parse_memory_max(&read(&dir.join("memory.max"))?)
            }),
            Version::V1 => {
                let seen = self.smallest("memory.limit_in_bytes", |dir| {
                    parse_memory_max(&read(&dir.join("memory.limit_in_bytes"))?)
                });
                // Also counts the ancestors above the mount root; the file that set it is
                // named only when no visible group has it.
                let stat = self.dir.join("memory.stat");
                let hierarchical = read(&stat).and_then(|s| parse_hierarchical_limit(&s));
                match (seen, hierarchical) {
                    (Some(seen), Some(h)) if h >= seen.value => Some(seen),
                    (_, Some(value)) => Some(Found { value, file: stat }),
                    (seen, None) => seen,
                }
            }
        }
    }

    fn cpu_limit(&self) -> Option<Found<usize>> {
        match self.version {
            Version::V2 => {
                self.smallest("cpu.max", |dir| parse_cpu_max(&read(&dir.join("cpu.max"))?))
            }
            Version::V1 => self.smallest("cpu.cfs_quota_us", |dir| {
                parse_cfs(
                    &read(&dir.join("cpu.cfs_quota_us"))?,
                    &read(&dir.join("cpu.cfs_period_us"))?,
                )
            }),
        }
    }
}

/// `path` relative to `root` if `root` is one of its ancestors (whole components, no `..`).
fn below(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path).strip_prefix(root).ok()?;
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| relative.to_owned())
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `cpu.max` is `"<quota> <period>"` or `"max <period>"` (unlimited); whole CPUs, rounded up.
fn parse_cpu_max(contents: &str) -> Option<usize> {
    let mut fields = contents.split_whitespace();
    let quota = fields.next()?;
    let period: u64 = fields.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some(quota.div_ceil(period).max(1) as usize)
}

/// v1 `cpu.cfs_quota_us` (`-1`: unlimited) over `cpu.cfs_period_us`; whole CPUs, rounded up.
fn parse_cfs(quota: &str, period: &str) -> Option<usize> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    if quota <= 0 || period <= 0 {
        return None;
    }
    Some(((quota + period - 1) / period).max(1) as usize)
}

/// `memory.max` is a byte count or `"max"`; v1 says "unlimited" with a huge number.
fn parse_memory_max(contents: &str) -> Option<u64> {
    let value: u64 = contents.trim().parse().ok()?;
    (value < (1 << 60)).then_some(value)
}

/// The `hierarchical_memory_limit` line of a v1 `memory.stat`.
fn parse_hierarchical_limit(memory_stat: &str) -> Option<u64> {
    let line = memory_stat
        .lines()
        .find(|l| l.starts_with("hierarchical_memory_limit "))?;
    parse_memory_max(line.split_whitespace().nth(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const UNLIMITED_V1: &str = "9223372036854771712\n";

    /// A fake file system: `files` are (path below the root, contents).
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        root
    }

    fn found<T>(value: T, root: &tempfile::TempDir, file: &str) -> Option<Found<T>> {
        Some(Found {
            value,
            file: root.path().join(file),
        })
    }

    /// A v1 host without a cgroup namespace (this project's test machines): the process is in
    /// `memory:/process_api/<id>`, whose parent has the limit; the mount roots are `/`.
    #[test]
    fn v1_host_without_namespace_reads_the_parent_of_the_group() {
        let proc_self_cgroup = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/1c96d0a086d01f717169f44d24852ddc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";
        let mountinfo = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let group = "sys/fs/cgroup/memory/process_api/1c96d0a086d01f717169f44d24852ddc";
        let root = tree(&[
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", UNLIMITED_V1),
            (
                "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "1073741824\n",
            ),
            (&format!("{group}/memory.limit_in_bytes"), UNLIMITED_V1),
            (
                &format!("{group}/memory.stat"),
                "cache 0\nhierarchical_memory_limit 1073741824\nhierarchical_memsw_limit 9223372036854771712\n",
            ),
            ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        let limits = limits(proc_self_cgroup, mountinfo, root.path());
        assert_eq!(
            limits.memory,
            found(
                1024 * MIB,
                &root,
                "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes"
            )
        );
        assert_eq!(limits.cpus, None);
    }

    /// Hybrid (Ubuntu 20.04 with systemd): v1 controllers, `cpu,cpuacct` mounted together, and
    /// a v2 hierarchy without controllers at `unified`. The unit's limit comes from v1, the CPU
    /// quota from its slice.
    #[test]
    fn hybrid_reads_the_v1_controllers() {
        let proc_self_cgroup = "\
12:pids:/system.slice/thumbd.service
11:memory:/system.slice/thumbd.service
4:cpu,cpuacct:/system.slice/thumbd.service
1:name=systemd:/system.slice/thumbd.service
0::/system.slice/thumbd.service
";
        let mountinfo = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
39 33 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
42 33 0:37 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,memory
";
        let cpu = "sys/fs/cgroup/cpu,cpuacct";
        let memory = "sys/fs/cgroup/memory";
        let root = tree(&[
            (
                "sys/fs/cgroup/unified/system.slice/thumbd.service/cgroup.procs",
                "",
            ),
            (&format!("{memory}/memory.limit_in_bytes"), UNLIMITED_V1),
            (
                &format!("{memory}/system.slice/memory.limit_in_bytes"),
                UNLIMITED_V1,
            ),
            (
                &format!("{memory}/system.slice/thumbd.service/memory.limit_in_bytes"),
                "805306368\n",
            ),
            (&format!("{cpu}/cpu.cfs_quota_us"), "-1\n"),
            (&format!("{cpu}/cpu.cfs_period_us"), "100000\n"),
            (&format!("{cpu}/system.slice/cpu.cfs_quota_us"), "150000\n"),
            (&format!("{cpu}/system.slice/cpu.cfs_period_us"), "100000\n"),
            (
                &format!("{cpu}/system.slice/thumbd.service/cpu.cfs_quota_us"),
                "-1\n",
            ),
            (
                &format!("{cpu}/system.slice/thumbd.service/cpu.cfs_period_us"),
                "100000\n",
            ),
        ]);
        let limits = limits(proc_self_cgroup, mountinfo, root.path());
        assert_eq!(
            limits.memory,
            found(
                768 * MIB,
                &root,
                &format!("{memory}/system.slice/thumbd.service/memory.limit_in_bytes")
            )
        );
        assert_eq!(
            limits.cpus,
            found(2, &root, &format!("{cpu}/system.slice/cpu.cfs_quota_us"))
        );
    }

    /// v2 on a systemd host (Debian 12): a templated unit in a nested slice, `MemoryMax=` on the
    /// inner slice, a tighter one further up for CPU only. Mountinfo has optional fields and an
    /// escaped mount point.
    #[test]
    fn v2_systemd_unit_in_a_nested_slice_takes_the_smallest_on_the_way_up() {
        let proc_self_cgroup = "0::/thumbd.slice/thumbd-workers.slice/thumbd-worker@1.service\n";
        let mountinfo = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
55 30 8:17 / /media/usb\\040disk rw,relatime shared:30 master:2 - vfat /dev/sdb1 rw
";
        let slice = "sys/fs/cgroup/thumbd.slice";
        let inner = format!("{slice}/thumbd-workers.slice");
        let unit = format!("{inner}/thumbd-worker@1.service");
        let root = tree(&[
            ("sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n"),
            (&format!("{slice}/memory.max"), "1073741824\n"),
            (&format!("{slice}/cpu.max"), "150000 100000\n"),
            (&format!("{inner}/memory.max"), "805306368\n"),
            (&format!("{inner}/cpu.max"), "max 100000\n"),
            (&format!("{unit}/memory.max"), "max\n"),
            (&format!("{unit}/cpu.max"), "max 100000\n"),
        ]);
        let limits = limits(proc_self_cgroup, mountinfo, root.path());
        assert_eq!(
            limits.memory,
            found(768 * MIB, &root, &format!("{inner}/memory.max"))
        );
        assert_eq!(limits.cpus, found(2, &root, &format!("{slice}/cpu.max")));
    }

    /// v2 in a container with its own cgroup namespace (GKE, containerd): the group is `/`, and
    /// so is the mount's root; the limits are at the mount point.
    #[test]
    fn v2_with_a_namespace_reads_the_mount_point() {
        let mountinfo = "\
1532 1515 0:311 / / rw,relatime master:453 - overlay overlay rw,lowerdir=/var/lib/containerd/l1
1540 1532 0:315 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1541 1540 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro,nsdelegate,memory_recursiveprot
";
        let root = tree(&[
            ("sys/fs/cgroup/memory.max", "268435456\n"),
            ("sys/fs/cgroup/cpu.max", "200000 100000\n"),
        ]);
        let limits = limits("0::/\n", mountinfo, root.path());
        assert_eq!(
            limits.memory,
            found(256 * MIB, &root, "sys/fs/cgroup/memory.max")
        );
        assert_eq!(limits.cpus, found(2, &root, "sys/fs/cgroup/cpu.max"));

        // A mount whose root is the group itself while /proc/self/cgroup shows `/` (or a path
        // out of the namespace, `/..`): nothing maps, the mount point is the nearest group.
        let pod_root = "/kubepods.slice/kubepods-burstable.slice/cri-containerd-5f1e.scope";
        let mountinfo = mountinfo.replace("0:28 / ", &format!("0:28 {pod_root} "));
        for path in ["/", "/../other.scope"] {
            let namespaced = super::limits(&format!("0::{path}\n"), &mountinfo, root.path());
            assert_eq!(
                namespaced.memory,
                found(256 * MIB, &root, "sys/fs/cgroup/memory.max"),
                "{path}"
            );
        }
    }

    /// v1 in a container without a namespace (Docker on a v1 host): the mount shows the
    /// container's own group (1 GiB), and a tighter limit is on its parent, above the mount
    /// root, seen only through `memory.stat`.
    #[test]
    fn v1_bind_mounted_group_uses_the_hierarchical_limit() {
        let id = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let proc_self_cgroup = format!("11:memory:/docker/{id}\n4:cpu,cpuacct:/docker/{id}\n");
        let mountinfo = format!(
            "\
900 899 0:40 /docker/{id} /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:19 - cgroup cgroup rw,memory
901 899 0:41 /docker/{id} /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
"
        );
        let root = tree(&[
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n"),
            (
                "sys/fs/cgroup/memory/memory.stat",
                "rss 1\nhierarchical_memory_limit 536870912\n",
            ),
            ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let limits = limits(&proc_self_cgroup, &mountinfo, root.path());
        assert_eq!(
            limits.memory,
            found(512 * MIB, &root, "sys/fs/cgroup/memory/memory.stat")
        );
        assert_eq!(
            limits.cpus,
            found(1, &root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us")
        );
    }

    #[test]
    fn no_cgroup_mount_or_limit_finds_nothing() {
        let root = tree(&[("sys/fs/cgroup/memory.max", "max\n")]);
        let v2 = "26 24 0:23 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(limits("0::/\n", v2, root.path()), Limits::default());
        assert_eq!(limits("0::/\n", "", root.path()), Limits::default());
        assert_eq!(limits("", v2, root.path()), Limits::default());
    }

    #[test]
    fn mountinfo_fields_are_unescaped_and_optional_fields_skipped() {
        let line = "36 35 98:0 /my\\040group\\134x /run/cg\\040root rw,noatime master:1 shared:2 - cgroup2 none rw\n";
        assert_eq!(
            parse_mountinfo(line),
            vec![Mount {
                version: Version::V2,
                root: PathBuf::from("/my group\\x"),
                point: PathBuf::from("/run/cg root"),
                options: vec!["rw".to_owned()],
            }]
        );
        // Not an escape: kept as it is.
        assert_eq!(unescape("a\\9b\\04"), PathBuf::from("a\\9b\\04"));
        let root = tree(&[("run/cg root/a b/memory.max", "1048576\n")]);
        let mountinfo = "36 35 98:0 / /run/cg\\040root rw - cgroup2 none rw\n";
        assert_eq!(
            limits("0::/a b\n", mountinfo, root.path()).memory,
            found(MIB, &root, "run/cg root/a b/memory.max")
        );
    }

    #[test]
    fn proc_cgroup_paths_may_contain_colons() {
        assert_eq!(
            parse_proc_cgroup("3:cpu,cpuacct:/a:b\n0::/\n"),
            vec![
                Membership {
                    controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
                    path: "/a:b".to_owned(),
                },
                Membership {
                    controllers: vec![],
                    path: "/".to_owned(),
                },
            ]
        );
    }

    #[test]
    fn limit_files_parse() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cfs("150000\n", "100000\n"), Some(2));
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_memory_max("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max(UNLIMITED_V1), None);
    }
}
