//! `thumbd thumbnail`: a batch run over files and folders on a rayon pool, one image per task.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use thumbd_engine::{Limits, Request};

use crate::cli::ThumbnailArgs;
use crate::resources::Resources;

/// Extensions picked up when walking a folder (files named directly are always tried).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "mpo", "png", "gif", "webp", "bmp", "tif", "tiff", "avif",
    "heic", "jxl",
];

/// One input file and where its thumbnails go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The file to read.
    pub input: PathBuf,
    /// Output path without the `.<size>.<ext>` suffix, relative to `--out`.
    pub out_stem: PathBuf,
}

/// The JSON line printed per input with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub input: String,
    pub ok: bool,
    pub outputs: Vec<OutputReport>,
    pub error: Option<ErrorReport>,
    pub ms: f64,
    #[serde(skip)]
    pub input_megapixels: f64,
}

#[derive(Debug, Serialize)]
pub struct OutputReport {
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct ErrorReport {
    /// An engine [`thumbd_engine::ErrorKind`] name, or `not_found`, `io`, `output_collision`.
    pub kind: String,
    pub message: String,
}

impl Report {
    fn failed(input: &Path, kind: &str, message: String, ms: f64) -> Self {
        Report {
            input: input.display().to_string(),
            ok: false,
            outputs: Vec::new(),
            error: Some(ErrorReport {
                kind: kind.into(),
                message,
            }),
            ms,
            input_megapixels: 0.0,
        }
    }
}

/// Expands the inputs into jobs. Inputs that do not exist or collide on an output name come
/// back as failed reports, so the rest of the batch still runs.
pub fn collect_jobs(inputs: &[PathBuf]) -> (Vec<Job>, Vec<Report>) {
    let mut jobs = Vec::new();
    let mut failed = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let base = input.file_name().map(PathBuf::from).unwrap_or_default();
            let walk = walkdir::WalkDir::new(input)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walk {
                match entry {
                    Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                        let rel = e.path().strip_prefix(input).unwrap_or(e.path());
                        jobs.push(Job {
                            input: e.path().to_path_buf(),
                            out_stem: base.join(rel.with_extension("")),
                        });
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let path = err.path().unwrap_or(input).to_path_buf();
                        failed.push(Report::failed(&path, "io", err.to_string(), 0.0));
                    }
                }
            }
        } else if input.exists() {
            let stem = input.file_stem().map(PathBuf::from).unwrap_or_default();
            jobs.push(Job {
                input: input.clone(),
                out_stem: stem,
            });
        } else {
            failed.push(Report::failed(
                input,
                "not_found",
                "no such file or folder".into(),
                0.0,
            ));
        }
    }
    // Two inputs mapping to one output name (a.jpg and a.png) would overwrite each other.
    let mut seen: HashMap<PathBuf, PathBuf> = HashMap::new();
    jobs.retain(|job| match seen.get(&job.out_stem) {
        Some(first) => {
            let message = format!(
                "its outputs would overwrite those of {} (same name without extension)",
                first.display()
            );
            failed.push(Report::failed(&job.input, "output_collision", message, 0.0));
            false
        }
        None => {
            seen.insert(job.out_stem.clone(), job.input.clone());
            true
        }
    });
    (jobs, failed)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads one input, makes its thumbnails and writes them. Never panics on bad input.
pub fn process(job: &Job, out_dir: &Path, request: &Request, limits: &Limits) -> Report {
    let start = Instant::now();
    let ms = || start.elapsed().as_secs_f64() * 1000.0;
    let data = match read_capped(&job.input, limits.max_input_bytes) {
        Ok(data) => data,
        Err(ReadError::TooLarge(size)) => {
            let err = thumbd_engine::Error::InputTooLarge {
                size,
                limit: limits.max_input_bytes,
            };
            return Report::failed(&job.input, err.kind().as_str(), err.to_string(), ms());
        }
        Err(ReadError::Io(e)) => return Report::failed(&job.input, "io", e.to_string(), ms()),
    };
    let thumbs = match thumbd_engine::thumbnail(&data, request, limits) {
        Ok(thumbs) => thumbs,
        Err(e) => return Report::failed(&job.input, e.kind().as_str(), e.to_string(), ms()),
    };
    let megapixels = thumbd_engine::probe(&data, limits)
        .map(|i| i.pixels() as f64 / 1e6)
        .unwrap_or(0.0);
    drop(data);
    let mut outputs = Vec::with_capacity(thumbs.len());
    for thumb in &thumbs {
        let path = output_path(out_dir, &job.out_stem, thumb.size, thumb.format.extension());
        if let Err(e) = write_output(&path, &thumb.data) {
            let message = format!("writing {}: {e:#}", path.display());
            return Report::failed(&job.input, "io", message, ms());
        }
        outputs.push(OutputReport {
            path: path.display().to_string(),
            width: thumb.width,
            height: thumb.height,
            bytes: thumb.data.len(),
        });
    }
    Report {
        input: job.input.display().to_string(),
        ok: true,
        outputs,
        error: None,
        ms: ms(),
        input_megapixels: megapixels,
    }
}

/// `<out>/<stem>.<size>.<ext>`, keeping inner dots of the stem (`a.q50` → `a.q50.256.jpg`).
pub fn output_path(out_dir: &Path, out_stem: &Path, size: u32, ext: &str) -> PathBuf {
    let name = out_stem.file_name().unwrap_or_default().to_string_lossy();
    let parent = out_stem.parent().unwrap_or(Path::new(""));
    out_dir.join(parent).join(format!("{name}.{size}.{ext}"))
}

enum ReadError {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a file, refusing it from its metadata (before reading) when over the byte limit.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let size = std::fs::metadata(path).map_err(ReadError::Io)?.len();
    if size > cap {
        return Err(ReadError::TooLarge(size));
    }
    std::fs::read(path).map_err(ReadError::Io)
}

/// Writes one output, creating its folder. A plain write, as vipsthumbnail does: a temporary
/// file plus rename measured up to 16 ms per file on overlay filesystems.
fn write_output(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context("creating the output folder")?;
    }
    std::fs::write(path, data)?;
    Ok(())
}

/// Runs the `thumbnail` subcommand.
pub fn run(args: ThumbnailArgs) -> anyhow::Result<ExitCode> {
    let request = args.image.request();
    let limits = args.image.limits();
    if let Err(e) = request.validate(&limits) {
        eprintln!("thumbd: {e}");
        return Ok(ExitCode::from(2));
    }
    let threads = args
        .threads
        .map_or_else(|| Resources::detect().cpus, |t| t as usize);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("thumbd-{i}"))
        .build()
        .context("starting the thread pool")?;

    let (jobs, early_failures) = collect_jobs(&args.inputs);
    let total = jobs.len() + early_failures.len();
    let show_progress = !args.json && std::io::stdout().is_terminal();
    let progress = if show_progress {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images, {per_sec}, eta {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    let start = Instant::now();
    let (tx, rx) = crossbeam_channel::unbounded();
    for report in early_failures {
        tx.send(report).expect("receiver alive");
    }
    let out_dir = args.out.clone();
    for job in jobs {
        let (tx, out_dir, request) = (tx.clone(), out_dir.clone(), request.clone());
        pool.spawn(move || {
            let report = process(&job, &out_dir, &request, &limits);
            let _ = tx.send(report);
        });
    }
    drop(tx);

    let mut stdout = std::io::stdout().lock();
    let (mut ok, mut failed, mut megapixels) = (0usize, 0usize, 0.0f64);
    for report in rx {
        if report.ok {
            ok += 1;
            megapixels += report.input_megapixels;
        } else {
            failed += 1;
            if !args.json {
                let err = report
                    .error
                    .as_ref()
                    .expect("failed reports carry an error");
                progress.suspend(|| {
                    eprintln!("thumbd: {}: {}: {}", report.input, err.kind, err.message)
                });
            }
        }
        if args.json {
            serde_json::to_writer(&mut stdout, &report)?;
            stdout.write_all(b"\n")?;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let peak_rss = peak_rss_bytes().map_or_else(
        || "unknown".to_string(),
        |b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64),
    );
    eprintln!(
        "thumbd: {} images, {ok} ok, {failed} failed in {secs:.2} s: {:.1} images/s, {:.1} input MP/s ({threads} threads, peak RSS {peak_rss})",
        ok + failed,
        ok as f64 / secs,
        megapixels / secs,
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Peak resident set size of this process (`VmHWM`), for the summary line.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_follow_the_contract() {
        let out = Path::new("/o");
        assert_eq!(
            output_path(out, Path::new("photos/a"), 256, "jpg"),
            Path::new("/o/photos/a.256.jpg")
        );
        assert_eq!(
            output_path(out, Path::new("a.q50"), 128, "webp"),
            Path::new("/o/a.q50.128.webp")
        );
    }
}
