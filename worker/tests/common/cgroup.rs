//! A test "pod": cgroups with a memory limit and a CPU quota, joined the way a container
//! runtime does it, so the worker finds its limits where it would in a container.
//!
//! cgroup v2 where the machine has the memory and cpu controllers on the unified hierarchy;
//! v1 (memory, cpu, cpuacct) otherwise. The groups are made under the test's own groups (so
//! any limit above the test still applies), or under the hierarchy's root when v2 cannot
//! delegate controllers below a group that holds processes.
//!
//! A pod's process first joins its groups, while it is still a small shell: cgroup v1 leaves a
//! page charged where it was first touched, so joining after the worker started would leave
//! its memory outside the limit. Then it enters a private mount and cgroup namespace, in which
//! each group's directory is bind-mounted over `/sys/fs/cgroup/<controller>` (v1) or
//! `/sys/fs/cgroup` (v2) and `/proc/self/cgroup` reads `/`: what a process in a container
//! sees, whether it reads the mount point or walks `/proc/self/cgroup`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";
const CFS_PERIOD_US: u64 = 100_000;

/// One pod's groups.
pub struct PodCgroup {
    pub name: String,
    layout: Layout,
}

enum Layout {
    /// Directory per controller, and where it is mounted inside the pod. Co-mounted
    /// controllers (`cpu,cpuacct`) share one directory.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        cpuacct: PathBuf,
        binds: Vec<(PathBuf, PathBuf)>,
    },
    V2 {
        dir: PathBuf,
    },
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    fs::write(path, value)
}

/// A `key value` line of a flat-keyed cgroup file (`memory.events`, `cpu.stat`, ...).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path).lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The test process's own group in the hierarchy whose controllers include `controller`
/// (`""` for v2), from `/proc/self/cgroup`.
fn own_group(controller: &str) -> String {
    read(Path::new("/proc/self/cgroup"))
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if controller.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == controller)
            };
            hit.then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// `mount` joined with `group` when that directory is visible, else `mount` itself (the test
/// may itself run in a container whose group is mounted at the root).
fn under(mount: &Path, group: &str) -> PathBuf {
    let dir = mount.join(group.trim_start_matches('/'));
    if dir.is_dir() {
        dir
    } else {
        mount.to_path_buf()
    }
}

/// Why groups cannot be made here (the caller skips), or a panic for anything unexpected.
fn unavailable(what: &Path, e: std::io::Error) -> String {
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem | ErrorKind::NotFound => {
            format!("cannot create cgroup {}: {e}", what.display())
        }
        _ => panic!("creating cgroup {}: {e}", what.display()),
    }
}

fn v2_available() -> bool {
    fs::read_to_string(Path::new(ROOT).join("cgroup.controllers")).is_ok_and(|c| {
        let c: Vec<&str> = c.split_whitespace().collect();
        c.contains(&"memory") && c.contains(&"cpu")
    })
}

impl PodCgroup {
    /// Makes the groups of pod `label` with its limits (`None`: unlimited, measured only).
    /// `Err(reason)` when this machine does not let the test make groups (not root, read-only
    /// or missing cgroup controllers): the caller skips with that reason.
    pub fn create(
        label: &str,
        memory_limit: Option<u64>,
        cpu_millis: Option<u64>,
    ) -> Result<PodCgroup, String> {
        let name = format!("thumbd-binpack-{}-{label}", std::process::id());
        let layout = if v2_available() {
            Self::create_v2(&name)?
        } else {
            Self::create_v1(&name)?
        };
        let pod = PodCgroup { name, layout };
        pod.set_limits(memory_limit, cpu_millis);
        Ok(pod)
    }

    fn create_v1(name: &str) -> Result<Layout, String> {
        // (hierarchy's real mount point, group directory, where the pod sees it)
        let mut made: Vec<(PathBuf, PathBuf, PathBuf)> = Vec::new();
        let mut dir_of = |controller: &str| -> Result<PathBuf, String> {
            let mount = Path::new(ROOT).join(controller);
            let real = fs::canonicalize(&mount).map_err(|e| unavailable(&mount, e))?;
            if let Some((_, dir, _)) = made.iter().find(|(r, _, _)| *r == real) {
                return Ok(dir.clone()); // co-mounted with a controller already made
            }
            let dir = under(&real, &own_group(controller)).join(name);
            fs::create_dir(&dir).map_err(|e| unavailable(&dir, e))?;
            made.push((real, dir.clone(), mount));
            Ok(dir)
        };
        let memory = dir_of("memory")?;
        let cpu = dir_of("cpu")?;
        let cpuacct = dir_of("cpuacct")?;
        let binds = made.into_iter().map(|(_, dir, at)| (dir, at)).collect();
        Ok(Layout::V1 {
            memory,
            cpu,
            cpuacct,
            binds,
        })
    }

    fn create_v2(name: &str) -> Result<Layout, String> {
        // Controllers are handed down through cgroup.subtree_control, which a group holding
        // processes (the test's own, unless it is the root) cannot set: then use the root.
        let own = under(Path::new(ROOT), &own_group(""));
        let parent = [own, PathBuf::from(ROOT)]
            .into_iter()
            .find(|p| {
                let control = p.join("cgroup.subtree_control");
                fs::read_to_string(&control)
                    .is_ok_and(|c| c.contains("memory") && c.contains("cpu"))
                    || write(&control, "+memory +cpu").is_ok()
            })
            .ok_or_else(|| {
                "cgroup v2: cannot enable the memory and cpu controllers for child groups"
                    .to_string()
            })?;
        let dir = parent.join(name);
        fs::create_dir(&dir).map_err(|e| unavailable(&dir, e))?;
        Ok(Layout::V2 { dir })
    }

    fn set_limits(&self, memory_limit: Option<u64>, cpu_millis: Option<u64>) {
        let set = |path: PathBuf, value: String| {
            write(&path, &value).unwrap_or_else(|e| panic!("{} = {value}: {e}", path.display()))
        };
        match &self.layout {
            Layout::V1 { memory, cpu, .. } => {
                if let Some(bytes) = memory_limit {
                    set(memory.join("memory.limit_in_bytes"), bytes.to_string());
                    // No swap, as the kubelet sets it (memory+swap = memory); absent without
                    // swap accounting.
                    let _ = write(
                        &memory.join("memory.memsw.limit_in_bytes"),
                        &bytes.to_string(),
                    );
                }
                if let Some(millis) = cpu_millis {
                    set(cpu.join("cpu.cfs_period_us"), CFS_PERIOD_US.to_string());
                    set(
                        cpu.join("cpu.cfs_quota_us"),
                        (millis * CFS_PERIOD_US / 1000).to_string(),
                    );
                }
            }
            Layout::V2 { dir } => {
                if let Some(bytes) = memory_limit {
                    set(dir.join("memory.max"), bytes.to_string());
                    let _ = write(&dir.join("memory.swap.max"), "0");
                }
                if let Some(millis) = cpu_millis {
                    set(
                        dir.join("cpu.max"),
                        format!("{} {CFS_PERIOD_US}", millis * CFS_PERIOD_US / 1000),
                    );
                }
            }
        }
    }

    pub fn version(&self) -> &'static str {
        match self.layout {
            Layout::V1 { .. } => "v1",
            Layout::V2 { .. } => "v2",
        }
    }

    /// Every distinct group directory, and where it is mounted inside the pod.
    fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        match &self.layout {
            Layout::V1 { binds, .. } => binds.clone(),
            Layout::V2 { dir } => vec![(dir.clone(), PathBuf::from(ROOT))],
        }
    }

    /// `sh` that joins the groups, enters the namespaces, mounts the groups and execs
    /// `program`; add its arguments and environment (which needs a PATH for `unshare` and
    /// `mount`). The spawned process becomes `program` itself (every step execs).
    pub fn command(&self, program: &Path) -> Command {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let path = |p: &Path| quote(&p.display().to_string());
        let binds = self.binds();
        let join: Vec<String> = binds
            .iter()
            .map(|(dir, _)| format!("echo $$ > {}", path(&dir.join("cgroup.procs"))))
            .collect();
        let mounts: Vec<String> = binds
            .iter()
            .map(|(dir, at)| format!("mount --bind {} {}", path(dir), path(at)))
            .collect();
        let inner = format!("{} && exec \"$@\"", mounts.join(" && "));
        let script = format!(
            "{} && exec unshare --mount --cgroup -- sh -c {} sh \"$@\"",
            join.join(" && "),
            quote(&inner)
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("sh").arg(program);
        cmd
    }

    /// CPU time of every process that ran in the pod, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        match &self.layout {
            Layout::V1 { cpuacct, .. } => {
                let ns: u64 = read(&cpuacct.join("cpuacct.usage")).trim().parse().unwrap();
                ns as f64 / 1e9
            }
            Layout::V2 { dir } => {
                keyed(&dir.join("cpu.stat"), "usage_usec").expect("cpu.stat usage_usec") as f64
                    / 1e6
            }
        }
    }

    /// The pod's peak memory charge (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`): all
    /// its processes' anonymous memory, page cache and kernel memory, as the limit counts it.
    pub fn peak_memory(&self) -> u64 {
        let path = match &self.layout {
            Layout::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
            Layout::V2 { dir } => dir.join("memory.peak"),
        };
        read(&path).trim().parse().unwrap()
    }

    /// Processes the kernel OOM-killed in the pod.
    pub fn oom_kills(&self) -> u64 {
        match &self.layout {
            Layout::V1 { memory, .. } => keyed(&memory.join("memory.oom_control"), "oom_kill"),
            Layout::V2 { dir } => keyed(&dir.join("memory.events"), "oom_kill"),
        }
        .expect("an oom_kill counter (kernel 4.13 or later)")
    }

    /// Times the pod's memory reached its limit (v1 `memory.failcnt`, v2 `max` events): the
    /// kernel reclaimed or refused a charge.
    pub fn limit_hits(&self) -> u64 {
        match &self.layout {
            Layout::V1 { memory, .. } => read(&memory.join("memory.failcnt")).trim().parse().ok(),
            Layout::V2 { dir } => keyed(&dir.join("memory.events"), "max"),
        }
        .unwrap_or(0)
    }
}

impl Drop for PodCgroup {
    /// Kills what is left in the groups and removes them.
    fn drop(&mut self) {
        for (dir, _) in self.binds() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill")
                        .args(["-KILL", pid])
                        .stderr(std::process::Stdio::null())
                        .status();
                }
                if fs::remove_dir(&dir).is_ok() || !dir.exists() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
