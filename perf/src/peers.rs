//! `--peers`: vipsthumbnail, Pillow(-SIMD) and sharp on the same files in the same run, with
//! the approach of the team's shared peers harness: the same job (256 px box, EXIF
//! orientation, JPEG q80, metadata stripped), tools found under `$PEERS_HOME` (default
//! `~/.cache/thumb-peers`) or on `PATH`, one single-threaded batch process per thread (the
//! list split round-robin), timed as a whole. Peers that are not installed are skipped with a
//! note; with none installed the report says so and everything else still runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::run::wait4;
use crate::stats::median;

/// A thumbnailer to compare with.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Name in the report.
    pub name: &'static str,
    /// Program and arguments before `OUT_DIR @LIST` (vipsthumbnail takes the files instead).
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// vipsthumbnail's command line differs from the drivers'.
    vips: bool,
}

/// Environment that keeps every peer to one thread per process (as the harness does).
const ONE_THREAD: &[(&str, &str)] = &[
    ("VIPS_CONCURRENCY", "1"),
    ("OMP_NUM_THREADS", "1"),
    ("UV_THREADPOOL_SIZE", "1"),
    ("SHARP_CONCURRENCY", "1"),
    ("RAYON_NUM_THREADS", "1"),
];

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn runs_ok(program: &Path, args: &[&str], env: &[(String, String)]) -> bool {
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The installed peers, with a note on stderr for each missing one.
pub fn detect() -> Vec<Peer> {
    let home = std::env::var_os("PEERS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/thumb-peers")))
        .unwrap_or_default();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let mut peers = Vec::new();
    match on_path("vipsthumbnail") {
        Some(program) => peers.push(Peer {
            name: "vipsthumbnail",
            program,
            args: Vec::new(),
            env: Vec::new(),
            vips: true,
        }),
        None => eprintln!("thumbd-perf: vipsthumbnail not on PATH, skipped"),
    }
    let pil = scripts.join("pil_thumb.py").display().to_string();
    for (name, venv) in [("pillow-simd", "venv-simd"), ("pillow", "venv")] {
        let python = home.join(venv).join("bin/python");
        if python.is_file() && runs_ok(&python, &["-c", "import PIL"], &[]) {
            peers.push(Peer {
                name,
                program: python,
                args: vec![pil.clone()],
                env: Vec::new(),
                vips: false,
            });
        } else {
            eprintln!(
                "thumbd-perf: {name} not installed ({}), skipped",
                python.display()
            );
        }
    }
    let sharp_dir = home.join("node");
    match on_path("node") {
        Some(node) if sharp_dir.join("node_modules/sharp").is_dir() => peers.push(Peer {
            name: "sharp",
            program: node,
            args: vec![scripts.join("sharp_thumb.mjs").display().to_string()],
            env: vec![("SHARP_DIR".into(), sharp_dir.display().to_string())],
            vips: false,
        }),
        _ => eprintln!(
            "thumbd-perf: sharp not installed (node and {}), skipped",
            sharp_dir.join("node_modules/sharp").display()
        ),
    }
    peers
}

/// One timed batch of a peer.
#[derive(Debug, Clone)]
pub struct PeerRun {
    wall_s: f64,
    ok: usize,
    peak_rss_bytes: u64,
}

/// Runs `peer` over `files` as `threads` concurrent single-threaded processes.
pub fn run(peer: &Peer, files: &[PathBuf], threads: usize, work: &Path) -> Result<PeerRun> {
    let out = work.join(format!("peer-{}-{threads}", peer.name));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    // Absolute: vipsthumbnail resolves a relative `-o` folder against each input's folder.
    let out = std::fs::canonicalize(&out)?;
    let chunks: Vec<Vec<&PathBuf>> = (0..threads)
        .map(|k| files.iter().skip(k).step_by(threads).collect())
        .collect();
    let start = Instant::now();
    let mut children = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut cmd = Command::new(&peer.program);
        cmd.args(&peer.args)
            .envs(ONE_THREAD.iter().copied())
            .envs(peer.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if peer.vips {
            cmd.arg("-s")
                .arg("256x256")
                .arg("-o")
                .arg(format!("{}/%s.jpg[Q=80,strip]", out.display()))
                .args(chunk.iter());
        } else {
            let list = out.join(format!(".list.{k}"));
            let text: String = chunk.iter().map(|f| format!("{}\n", f.display())).collect();
            std::fs::write(&list, text)?;
            cmd.arg(&out).arg(format!("@{}", list.display()));
        }
        children.push(
            cmd.spawn()
                .with_context(|| format!("starting {}", peer.name))?,
        );
    }
    let mut peak = 0u64;
    for child in children {
        // Exit status is not used: a peer that fails some files exits non-zero, and what
        // counts is the thumbnails it wrote.
        let (_, maxrss_kib) = wait4(child.id() as libc::pid_t)?;
        peak = peak.max(maxrss_kib * 1024);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let ok = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().extension().is_some_and(|x| x == "jpg")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
        .count();
    let _ = std::fs::remove_dir_all(&out);
    Ok(PeerRun {
        wall_s,
        ok,
        peak_rss_bytes: peak,
    })
}

/// A peer's figures at one thread count, next to thumbd's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerFigures {
    /// Peer name.
    pub peer: String,
    /// Concurrent single-threaded processes.
    pub threads: usize,
    /// Files given.
    pub files: usize,
    /// Thumbnails written.
    pub ok: usize,
    /// Median over repetitions of thumbnails / wall time (process start-up included).
    pub images_per_s: f64,
    /// Largest single process's peak RSS, bytes (`wait4` `ru_maxrss`: includes a floor of
    /// the parent's own peak, kept small by scanning the corpus in a child).
    pub peak_rss_bytes: u64,
    /// thumbd's images/s at the same thread count divided by the peer's (`None` when the
    /// peer made no thumbnail).
    pub thumbd_ratio: Option<f64>,
}

/// Collects peer runs across repetitions.
#[derive(Debug, Default)]
pub struct PeerRuns {
    runs: BTreeMap<(&'static str, usize), Vec<PeerRun>>,
}

impl PeerRuns {
    /// Records one run.
    pub fn push(&mut self, peer: &'static str, threads: usize, run: PeerRun) {
        self.runs.entry((peer, threads)).or_default().push(run);
    }

    /// Medians per peer and thread count; `thumbd_ips(threads)` gives thumbd's figure.
    pub fn figures(&self, files: usize, thumbd_ips: impl Fn(usize) -> f64) -> Vec<PeerFigures> {
        self.runs
            .iter()
            .map(|(&(peer, threads), runs)| {
                let ips: Vec<f64> = runs
                    .iter()
                    .map(|r| r.ok as f64 / r.wall_s.max(1e-9))
                    .collect();
                let images_per_s = median(&ips).unwrap_or(0.0);
                PeerFigures {
                    peer: peer.into(),
                    threads,
                    files,
                    ok: runs.last().map_or(0, |r| r.ok),
                    images_per_s,
                    peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
                    thumbd_ratio: (images_per_s > 0.0).then(|| thumbd_ips(threads) / images_per_s),
                }
            })
            .collect()
    }
}
