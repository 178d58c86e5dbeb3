//! The worker sizes itself from the limits of its own cgroup, not the mount root's (issue 15,
//! item 3). It is started in a child group without limits below a parent with 512 MiB and one
//! CPU, nothing bind-mounted, and its start-up log must show the parent's limits.
//!
//! Needs root and a writable cgroup tree: v1 `memory` and `cpu` controllers (the groups go
//! below this test's own, so the worker stays inside whatever holds the test), or v2 mounted
//! at `/sys/fs/cgroup` (below the root there: v2 allows no child groups with controllers
//! under a group that holds processes, as this test's own does). Otherwise it says why it
//! skips and passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const LIMIT: u64 = 512 << 20;
const MOUNT: &str = "/sys/fs/cgroup";

/// Groups this test made, removed (deepest first) on drop.
struct Groups(Vec<PathBuf>);

impl Groups {
    fn make(&mut self, dir: PathBuf) -> std::io::Result<PathBuf> {
        std::fs::create_dir(&dir)?;
        self.0.push(dir.clone());
        Ok(dir)
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            // A group empties once its processes are reaped; give the kernel a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The child groups the worker joins (their `cgroup.procs`), and the limit files expected in
/// its log.
struct Setup {
    procs: Vec<PathBuf>,
    memory_file: PathBuf,
    cpu_file: PathBuf,
}

/// This test's own group in the v1 hierarchy of `controller`, if mounted at its usual place
/// with the host's root (a container's bind mount shows another root: skipped).
fn own_v1_group(controller: &str) -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let controllers = fields.nth(1)?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| fields.next())?
    })?;
    let dir = Path::new(MOUNT)
        .join(controller)
        .join(path.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

fn write(file: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(file, contents).map_err(|e| format!("writing {}: {e}", file.display()))
}

fn setup_v1(groups: &mut Groups, name: &str) -> Result<Setup, String> {
    let (Some(memory), Some(cpu)) = (own_v1_group("memory"), own_v1_group("cpu")) else {
        return Err(
            "no cgroup v1 memory and cpu hierarchies at /sys/fs/cgroup/{memory,cpu}".into(),
        );
    };
    let mut chain = |base: PathBuf| -> Result<(PathBuf, PathBuf), String> {
        let test = groups
            .make(base.join(name))
            .map_err(|e| format!("creating a group in {}: {e}", base.display()))?;
        let parent = groups
            .make(test.join("parent"))
            .map_err(|e| e.to_string())?;
        let child = groups
            .make(parent.join("child"))
            .map_err(|e| e.to_string())?;
        Ok((parent, child))
    };
    let (memory_parent, memory_child) = chain(memory)?;
    let (cpu_parent, cpu_child) = chain(cpu)?;
    let memory_file = memory_parent.join("memory.limit_in_bytes");
    write(&memory_file, &LIMIT.to_string())?;
    write(&cpu_parent.join("cpu.cfs_period_us"), "100000")?;
    let cpu_file = cpu_parent.join("cpu.cfs_quota_us");
    write(&cpu_file, "100000")?;
    Ok(Setup {
        procs: vec![
            memory_child.join("cgroup.procs"),
            cpu_child.join("cgroup.procs"),
        ],
        memory_file,
        cpu_file,
    })
}

fn setup_v2(groups: &mut Groups, name: &str) -> Result<Setup, String> {
    let root = Path::new(MOUNT);
    if !root.join("cgroup.subtree_control").exists() {
        return Err("no cgroup v2 hierarchy at /sys/fs/cgroup".into());
    }
    write(&root.join("cgroup.subtree_control"), "+memory +cpu")?;
    let test = groups
        .make(root.join(name))
        .map_err(|e| format!("creating a group in {MOUNT}: {e}"))?;
    write(&test.join("cgroup.subtree_control"), "+memory +cpu")?;
    let parent = groups
        .make(test.join("parent"))
        .map_err(|e| e.to_string())?;
    write(&parent.join("cgroup.subtree_control"), "+memory +cpu")?;
    let child = groups
        .make(parent.join("child"))
        .map_err(|e| e.to_string())?;
    let memory_file = parent.join("memory.max");
    write(&memory_file, &LIMIT.to_string())?;
    let cpu_file = parent.join("cpu.max");
    write(&cpu_file, "100000 100000")?;
    Ok(Setup {
        procs: vec![child.join("cgroup.procs")],
        memory_file,
        cpu_file,
    })
}

/// The path the worker finds through mountinfo (`/sys/fs/cgroup/cpu` is often a symlink to
/// `cpu,cpuacct`).
fn canonical(file: &Path) -> String {
    std::fs::canonicalize(file).unwrap().display().to_string()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_worker_budgets_from_the_limit_above_its_own_group() {
    let name = format!("thumbd-test-{}", std::process::id());
    let mut groups = Groups(Vec::new());
    let setup = setup_v1(&mut groups, &name).or_else(|v1| {
        // Undo a partial v1 setup before trying v2.
        drop(std::mem::replace(&mut groups, Groups(Vec::new())));
        setup_v2(&mut groups, &name).map_err(|v2| format!("v1: {v1}; v2: {v2}"))
    });
    let setup = match setup {
        Ok(setup) => setup,
        Err(why) => {
            eprintln!("SKIPPED: needs root and a writable cgroup tree ({why})");
            return;
        }
    };

    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    // The shell joins the child groups, then becomes the worker: it starts inside them.
    let join = "for procs; do [ \"$procs\" = -- ] && break; echo $$ > \"$procs\" || exit 97; \
                shift; done; shift; exec \"$@\"";
    let child = Command::new("sh")
        .args(["-c", join, "sh"])
        .args(&setup.procs)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_thumbd"))
        .args(["worker", "--watch"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env_remove("THUMBD_THREADS")
        .env_remove("THUMBD_MEMORY_BUDGET")
        .env_remove("THUMBD_QUEUE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let derived = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("no 'derived settings' log line in 30 s: {seen:#?}");
        };
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            seen.push(line);
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("derived settings"))
        {
            break fields.clone();
        }
        seen.push(line);
    };
    println!("{derived}");

    assert_eq!(derived["memory_limit"], LIMIT, "{derived}");
    assert_eq!(derived["memory_budget"], LIMIT / 10 * 7, "{derived}");
    assert_eq!(
        derived["memory_limit_source"],
        canonical(&setup.memory_file),
        "{derived}"
    );
    assert_eq!(derived["cpus"], 1, "{derived}");
    assert_eq!(derived["threads"], 1, "{derived}");
    assert_eq!(
        derived["cpus_source"],
        canonical(&setup.cpu_file),
        "{derived}"
    );

    // SIGTERM: a clean exit, so the groups empty and can be removed.
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
