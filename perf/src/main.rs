//! `thumbd-perf`: runs the engine over a corpus at 1..N threads and writes the capacity report
//! people plan GKE deployments from (`report.md`, `report.json`, SVG charts), optionally with
//! peers and a sizing for a target rate and traffic mix. See `perf/README.md`.

mod autoscale;
mod charts;
mod measure;
mod peers;
mod report;
mod run;
mod sizing;
mod stats;
mod upload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use thumbd_benches::{Corpus, CorpusDir, CorpusKind};

// Same allocator as the `thumbd` binary, so RSS figures are the ones a deployment sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "thumbd-perf",
    version,
    about = "thumbd capacity-planning reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure the engine on a corpus; write report.md, report.json and SVG charts.
    Report(ReportArgs),
    /// Simulate the burst through the HPA and price the cost again for a measured report,
    /// from its report.json and a mix file (no measuring); rewrite report.json, report.md
    /// and the charts in its folder.
    Burst(BurstArgs),
    /// Measure what `thumbd serve` adds to an upload against the storage write alone, and
    /// the throughput of concurrent uploads (fake-gcs-server and the Pub/Sub emulator on
    /// loopback).
    Upload(upload::UploadArgs),
    /// Internal: find the files that make thumbnails (spawned by `report`, so decoding the
    /// whole corpus never raises the parent's peak RSS, which every child it spawns inherits
    /// as a floor of its `ru_maxrss`).
    #[command(hide = true)]
    Scan {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Internal: moves each input's `OUT/t/<name>/<size>.jpg`, as `thumbd thumbnail --out
    /// OUT/t` names it, to `OUT/<stem>.jpg`, where `../shared/bench/peers.sh` checks every
    /// tool's thumbnails (`perf/peers-classes` appends it to thumbd's command; compiled, so
    /// it costs thumbd's timed batch about a millisecond).
    #[command(hide = true)]
    Flatten {
        #[arg(long, default_value_t = 256)]
        size: u32,
        out: PathBuf,
        inputs: Vec<PathBuf>,
    },
    /// Internal: one measured run in its own process (spawned by `report`).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        list: PathBuf,
        #[arg(long = "size", required = true)]
        sizes: Vec<u32>,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Folder of JPEG/PNG files [default: corpus/full if fetched, else corpus/].
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Highest thread count [default: the CPUs this process may use].
    #[arg(long)]
    max_threads: Option<usize>,
    /// Repetitions of every configuration (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Thumbnail size (repeatable).
    #[arg(long = "size", default_values_t = [256u32])]
    sizes: Vec<u32>,
    /// Also time vipsthumbnail, Pillow(-SIMD) and sharp where installed.
    #[arg(long)]
    peers: bool,
    /// Images/s to size a deployment for (needs --mix).
    #[arg(long, requires = "mix")]
    target_rate: Option<f64>,
    /// Traffic mix and autoscaling assumptions (see corpus/mix.toml).
    #[arg(long, requires = "target_rate")]
    mix: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BurstArgs {
    /// Folder of a report measured with --target-rate and --mix (holds report.json).
    #[arg(long)]
    report: PathBuf,
    /// Burst, autoscaler and prices (see corpus/mix.toml); its classes, pod vCPUs and
    /// target utilisation must be the report's.
    #[arg(long)]
    mix: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Configured as the `thumbd` binary configures it (freed memory goes back to the OS at
    // once): with mimalloc's default 1 s purge delay, 0.1 MP PNGs measured 30 MiB each.
    thumbd::alloc::purge_promptly();
    let result = match cli.command {
        Cmd::Run {
            threads,
            list,
            sizes,
        } => run::child(threads, &list, sizes),
        Cmd::Scan { dir } => scan(dir),
        Cmd::Flatten { size, out, inputs } => flatten(size, &out, &inputs),
        Cmd::Report(args) => report(args),
        Cmd::Burst(args) => burst(args),
        Cmd::Upload(args) => upload::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thumbd-perf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(args: ReportArgs) -> Result<()> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    // Validate the mix before minutes of measuring.
    let mix = args.mix.as_deref().map(sizing::Mix::load).transpose()?;
    let dir = match &args.corpus {
        Some(dir) => CorpusDir {
            dir: dir.clone(),
            kind: CorpusKind::Custom,
        },
        None => thumbd_benches::find_corpus()?,
    };
    let corpus = scan_in_child(dir)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_threads = args.max_threads.unwrap_or(cpus).max(1);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let work = args.out.join(".work");
    std::fs::create_dir_all(&work)?;

    let peer_list = if args.peers {
        peers::detect()
    } else {
        Vec::new()
    };
    let files: Vec<PathBuf> = corpus.samples.iter().map(|s| s.path.clone()).collect();
    let mut peer_runs = peers::PeerRuns::default();
    let peer_threads: Vec<usize> = if max_threads > 1 {
        vec![1, max_threads]
    } else {
        vec![1]
    };
    let plan = measure::Plan {
        corpus: &corpus,
        max_threads,
        reps: args.reps,
        sizes: &args.sizes,
        work: &work,
    };
    let m = measure::measure(&plan, |rep| {
        for peer in &peer_list {
            for &threads in &peer_threads {
                eprintln!(
                    "thumbd-perf: rep {}/{} peer {}, {threads} process(es)",
                    rep + 1,
                    args.reps,
                    peer.name
                );
                peer_runs.push(
                    peer.name,
                    threads,
                    peers::run(peer, &files, threads, &work)?,
                );
            }
        }
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&work);

    let model_check = sizing::check(&m)?;
    let sizing = match (&mix, args.target_rate) {
        (Some(mix), Some(rate)) => Some(sizing::size(&m, mix, rate)?),
        _ => None,
    };
    let peers = args
        .peers
        .then(|| peer_runs.figures(files.len(), |t| m.run(t).map_or(0.0, |r| r.images_per_s)));

    let resources = thumbd::resources::Resources::detect();
    let report = report::Report {
        tool: format!("thumbd-perf {}", env!("CARGO_PKG_VERSION")),
        generated_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        replanned_by: None,
        machine: report::Machine {
            cpu_model: cpu_model(),
            cpus,
            memory_bytes: resources.memory_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        },
        corpus: report::CorpusSummary {
            dir: corpus.dir.dir.display().to_string(),
            description: corpus.dir.describe(),
            usable_files: corpus.samples.len(),
            megapixels: corpus.samples.iter().map(|s| s.megapixels()).sum(),
            bytes: corpus.samples.iter().map(|s| s.bytes).sum(),
            skipped: corpus
                .skipped
                .iter()
                .map(|(p, e)| report::Skipped {
                    file: p.display().to_string(),
                    error: e.clone(),
                })
                .collect(),
        },
        sizes: args.sizes.clone(),
        reps: args.reps,
        memory: report::Report::memory(&m),
        runs: m.runs.clone(),
        classes: m.classes.clone(),
        model_check,
        sizing,
        peers,
    };

    write_report(&args.out, &report)?;
    for c in &report.model_check {
        eprintln!(
            "thumbd-perf: model at {} thread(s): predicted {:.1} images/s, measured {:.1} ({:+.1} %)",
            c.threads, c.predicted_images_per_s, c.measured_images_per_s, c.error_pct
        );
    }
    Ok(())
}

/// Writes `report.json`, `report.md` and the charts of `report` into `out`.
fn write_report(out: &Path, report: &report::Report) -> Result<()> {
    charts::throughput(
        &out.join("throughput.svg"),
        &report.runs,
        &report.model_check,
    )?;
    let max_threads = report.runs.iter().map(|r| r.threads).max().unwrap_or(1);
    let at_max: Vec<&measure::ClassFigures> = report
        .classes
        .iter()
        .filter(|c| c.figures.threads == max_threads)
        .collect();
    charts::latency(&out.join("latency.svg"), &at_max, max_threads)?;
    let mut written = "report.md, report.json, throughput.svg, latency.svg";
    if let Some(s) = &report.sizing {
        charts::burst(&out.join("burst.svg"), &s.burst)?;
        written = "report.md, report.json, throughput.svg, latency.svg, burst.svg";
        let o = &s.burst.outcome;
        eprintln!(
            "thumbd-perf: burst through the HPA: peak backlog {:.0} images, {} pods at most, \
             backlog empty at {}",
            o.peak_backlog,
            o.peak_pods,
            o.backlog_empty_at_s
                .map_or("the end of the simulation or later".into(), |t| format!(
                    "+{t} s"
                ))
        );
    }
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    std::fs::write(out.join("report.md"), report::markdown(report))?;
    eprintln!("thumbd-perf: wrote {written} in {}", out.display());
    Ok(())
}

/// `thumbd-perf burst`: the report's burst and cost from its `report.json`.
fn burst(args: BurstArgs) -> Result<()> {
    let mix = sizing::Mix::load(&args.mix)?;
    let path = args.report.join("report.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut report: report::Report =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(sizing) = report.sizing.as_mut() else {
        bail!(
            "{} has no sizing: measure with `thumbd-perf report --target-rate R --mix FILE`",
            path.display()
        );
    };
    sizing::replan(sizing, &mix).with_context(|| format!("{}", args.mix.display()))?;
    // The tool's name rather than the path it was built at.
    let command: Vec<String> = std::env::args().skip(1).collect();
    report.replanned_by = Some(format!("thumbd-perf {}", command.join(" ")));
    write_report(&args.report, &report)
}

/// What `scan` prints.
#[derive(serde::Serialize, serde::Deserialize)]
struct ScanOutput {
    usable: Vec<PathBuf>,
    skipped: Vec<(PathBuf, String)>,
}

/// See `Cmd::Flatten`. An input without a thumbnail (a file the engine refused) is left for
/// the harness's check to count as missing.
fn flatten(size: u32, out: &Path, inputs: &[PathBuf]) -> Result<()> {
    for input in inputs {
        let (Some(name), Some(stem)) = (input.file_name(), input.file_stem()) else {
            bail!("{}: not a file name", input.display());
        };
        let from = out.join("t").join(name).join(format!("{size}.jpg"));
        let mut to = stem.to_os_string();
        to.push(".jpg");
        match std::fs::rename(&from, out.join(to)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            result => result.with_context(|| format!("moving {}", from.display()))?,
        }
    }
    Ok(())
}

/// The child side of the corpus check.
fn scan(dir: PathBuf) -> Result<()> {
    let corpus = Corpus::load(CorpusDir {
        dir,
        kind: CorpusKind::Custom,
    })?;
    let out = ScanOutput {
        usable: corpus.samples.into_iter().map(|s| s.path).collect(),
        skipped: corpus.skipped,
    };
    serde_json::to_writer(std::io::stdout().lock(), &out)?;
    Ok(())
}

/// Checks the corpus in a child process and indexes the usable files (headers only).
fn scan_in_child(dir: CorpusDir) -> Result<Corpus> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("scan")
        .arg("--dir")
        .arg(&dir.dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the corpus scan")?;
    if !output.status.success() {
        bail!("the corpus scan failed");
    }
    let scan: ScanOutput =
        serde_json::from_slice(&output.stdout).context("parsing the corpus scan")?;
    let corpus = Corpus::index(dir, &scan.usable, scan.skipped)?;
    corpus.announce("thumbd-perf");
    Ok(corpus)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_moves_each_thumbnail_where_the_harness_checks_and_skips_refused_inputs() {
        let out = std::env::temp_dir().join(format!("thumbd-perf-flatten-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(out.join("t/00001_cat.png")).unwrap();
        std::fs::write(out.join("t/00001_cat.png/256.jpg"), b"jpeg").unwrap();
        let inputs = [
            PathBuf::from("stage/00001_cat.png"),
            PathBuf::from("stage/00002_bomb.jpg"),
        ];
        flatten(256, &out, &inputs).unwrap();
        assert_eq!(std::fs::read(out.join("00001_cat.jpg")).unwrap(), b"jpeg");
        assert!(!out.join("t/00001_cat.png/256.jpg").exists());
        assert!(!out.join("00002_bomb.jpg").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
