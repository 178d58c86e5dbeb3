//! One measured run: the engine over a list of files on a rayon pool of N threads.
//!
//! Each run is a child process of `thumbd-perf` itself (`thumbd-perf run …`), so its peak RSS
//! is its own: the parent reaps it with `wait4`, whose `ru_maxrss` covers exactly that child,
//! and the child also reports its RSS before any image work (the floor the images add to).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thumbd_engine::{Limits, Request};

/// What a child prints on stdout (one JSON document).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildOutput {
    /// Pool size.
    pub threads: usize,
    /// Wall time from the first task to the last, in seconds.
    pub wall_s: f64,
    /// RSS after start-up, before any image work (`VmRSS`).
    pub base_rss_bytes: u64,
    /// Peak RSS seen by the child itself (`VmHWM`), a cross-check of `wait4`.
    pub hwm_bytes: u64,
    /// One entry per input, in list order.
    pub images: Vec<ImageTiming>,
}

/// Engine time of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageTiming {
    /// Milliseconds inside `thumbnail()` (reading the file is not included).
    pub ms: f64,
    /// Error message when the engine refused the file.
    pub error: Option<String>,
}

/// The child side: reads each file inside its task (as the batch CLI does, so inputs are not
/// all resident at once), times `thumbnail()` and prints a [`ChildOutput`].
pub fn child(threads: usize, list: &Path, sizes: Vec<u32>) -> Result<()> {
    let files: Vec<PathBuf> = std::fs::read_to_string(list)
        .with_context(|| format!("reading {}", list.display()))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    let request = Request {
        sizes,
        ..Request::default()
    };
    let limits = Limits::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the pool")?;
    // Start the pool's threads before reading the floor, so their stacks count as base.
    pool.broadcast(|_| ());
    let base_rss_bytes = proc_status_bytes("VmRSS:").unwrap_or(0);
    let timings = Mutex::new(vec![None; files.len()]);
    let start = Instant::now();
    pool.install(|| {
        files
            .par_iter()
            .enumerate()
            .with_max_len(1)
            .for_each(|(i, path)| {
                let timing = match std::fs::read(path) {
                    Ok(data) => {
                        let t = Instant::now();
                        let result = thumbd_engine::thumbnail(&data, &request, &limits);
                        ImageTiming {
                            ms: t.elapsed().as_secs_f64() * 1000.0,
                            error: result.err().map(|e| e.to_string()),
                        }
                    }
                    Err(e) => ImageTiming {
                        ms: 0.0,
                        error: Some(format!("reading: {e}")),
                    },
                };
                timings.lock().expect("no panics while holding")[i] = Some(timing);
            })
    });
    let wall_s = start.elapsed().as_secs_f64();
    let images = timings
        .into_inner()
        .expect("no panics while holding")
        .into_iter()
        .map(|t| t.expect("every task ran"))
        .collect();
    let out = ChildOutput {
        threads,
        wall_s,
        base_rss_bytes,
        hwm_bytes: proc_status_bytes("VmHWM:").unwrap_or(0),
        images,
    };
    serde_json::to_writer(std::io::stdout().lock(), &out)?;
    Ok(())
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A finished run as the parent sees it.
#[derive(Debug)]
pub struct Run {
    /// What the child reported.
    pub output: ChildOutput,
    /// Peak RSS of the child, bytes: its own `VmHWM` (exact: a fresh address space after
    /// exec), or `wait4`'s `ru_maxrss` if it could not read it. `ru_maxrss` alone would be
    /// at least the parent's peak, which Linux carries into the child across exec.
    pub peak_rss_bytes: u64,
}

/// Runs `files` in a child `thumbd-perf run` with `threads` threads and waits for it.
pub fn spawn(threads: usize, files: &[PathBuf], sizes: &[u32], work: &Path) -> Result<Run> {
    let list = work.join(format!("list-{}-{threads}.txt", std::process::id()));
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let exe = std::env::current_exe().context("locating thumbd-perf")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--list")
        .arg(&list);
    for size in sizes {
        cmd.arg("--size").arg(size.to_string());
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a measurement child")?;
    let pid = child.id() as libc::pid_t;
    // Read stdout to the end first (the child may fill the pipe), then reap it ourselves:
    // std's wait() does not return the rusage.
    let mut stdout = child.stdout.expect("piped");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    let (status, maxrss_kib) = wait4(pid)?;
    if status != 0 {
        bail!("measurement child ({threads} threads) failed with wait status {status}");
    }
    let output: ChildOutput =
        serde_json::from_str(&text).context("parsing the measurement child's output")?;
    let _ = std::fs::remove_file(&list);
    Ok(Run {
        peak_rss_bytes: if output.hwm_bytes > 0 {
            output.hwm_bytes
        } else {
            maxrss_kib * 1024
        },
        output,
    })
}

/// Reaps `pid`; returns its wait status and `ru_maxrss` (KiB on Linux).
pub fn wait4(pid: libc::pid_t) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("waiting for a child");
        }
    }
    Ok((status, usage.ru_maxrss.max(0) as u64))
}
