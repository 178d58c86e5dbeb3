//! `thumbd thumbnail`: a batch run over files and folders. A reader thread reads ahead, the engine
//! threads (a rayon pool of `--threads`) make thumbnails, the main thread writes and reports.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use thumbd_engine::{Limits, Request};

use crate::cli::ThumbnailArgs;
use crate::naming;
use crate::resources::Resources;

/// Extensions picked up when walking a folder (files named directly are always tried).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "mpo", "png", "gif", "webp", "bmp", "tif", "tiff", "avif",
    "heic", "heif", "jxl",
];

/// One input file and where its thumbnails go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The file to read.
    pub input: PathBuf,
    /// The input's path relative to its root, extension kept (`photos/a.jpg`): its thumbnails
    /// go to `<out>/<name>/<size>.<ext>` ([`naming::thumbnail_path`]), as the worker names them.
    pub name: PathBuf,
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
    /// An engine [`thumbd_engine::ErrorKind`] name, or `not_found`, `io`.
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

/// Expands the inputs into jobs; inputs that do not exist come back as failed reports, so the
/// rest of the batch still runs.
///
/// Each file's name is its path relative to its root: a file given directly is named by its
/// file name, a folder's files by the folder's name and their path inside it. Inputs whose
/// names would be equal (`one/a.jpg` and `two/a.jpg`, or two folders called `photos`) are
/// told apart by as many of their parent folders as it takes (`one/a.jpg`, `two/a.jpg`), so no
/// input's outputs ever overwrite another's. A file or folder given twice is made once.
pub fn collect_jobs(inputs: &[PathBuf]) -> (Vec<Job>, Vec<Report>) {
    let mut failed = Vec::new();
    let mut roots = Vec::new();
    for input in inputs {
        if input.exists() {
            roots.push(input.clone());
        } else {
            failed.push(Report::failed(
                input,
                "not_found",
                "no such file or folder".into(),
                0.0,
            ));
        }
    }
    // Every file first, as (root, path inside the root: empty for a file given directly).
    let mut found: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
    for (root, input) in roots.iter().enumerate() {
        if !input.is_dir() {
            found.push((root, input.clone(), PathBuf::new()));
            continue;
        }
        let walk = walkdir::WalkDir::new(input)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            match entry {
                Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                    let rel = e.path().strip_prefix(input).unwrap_or(e.path());
                    found.push((root, e.path().to_path_buf(), rel.to_path_buf()));
                }
                Ok(_) => {}
                Err(err) => {
                    let path = err.path().unwrap_or(input).to_path_buf();
                    failed.push(Report::failed(&path, "io", err.to_string(), 0.0));
                }
            }
        }
    }
    let names = file_names(&roots, &found);
    // Equal names are left only for one file reached twice (its root given twice).
    let mut seen = HashSet::new();
    let jobs = found
        .into_iter()
        .zip(names)
        .filter(|(_, name)| seen.insert(name.clone()))
        .map(|((_, input, _), name)| Job { input, name })
        .collect();
    (jobs, failed)
}

/// The name of each found file (`(root, path, path inside the root)`) under `--out`: its
/// root's last path component joined with its path inside the root. Where two different files
/// would share a name, their roots take one more component of their absolute paths, until
/// every name belongs to one file (absolute paths always differ).
fn file_names(roots: &[PathBuf], found: &[(usize, PathBuf, PathBuf)]) -> Vec<PathBuf> {
    let absolute: Vec<Vec<std::ffi::OsString>> = roots
        .iter()
        .map(|root| {
            let path = std::fs::canonicalize(root)
                .or_else(|_| std::path::absolute(root))
                .unwrap_or_else(|_| root.clone());
            path.components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(part) => Some(part.to_os_string()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    // The file's name with `n` components of its root's absolute path (all with usize::MAX).
    let name_at = |root: usize, n: usize, rel: &Path| -> PathBuf {
        let parts = &absolute[root];
        parts[parts.len().saturating_sub(n)..]
            .iter()
            .collect::<PathBuf>()
            .join(rel)
    };
    let mut lengths = vec![1usize; roots.len()];
    loop {
        let names: Vec<PathBuf> = found
            .iter()
            .map(|(root, _, rel)| name_at(*root, lengths[*root], rel))
            .collect();
        // Per name: the absolute path of its first file, whether another file takes it too,
        // and the roots of every file that takes it.
        let mut takers: HashMap<&Path, (PathBuf, bool, Vec<usize>)> = HashMap::new();
        for (name, (root, _, rel)) in names.iter().zip(found) {
            let path = name_at(*root, usize::MAX, rel);
            let entry = takers
                .entry(name.as_path())
                .or_insert_with(|| (path.clone(), false, Vec::new()));
            entry.1 |= entry.0 != path;
            entry.2.push(*root);
        }
        let mut grown = vec![false; roots.len()];
        for (_, clash, clashing_roots) in takers.values() {
            for &root in clashing_roots.iter().filter(|_| *clash) {
                if !grown[root] && lengths[root] < absolute[root].len() {
                    lengths[root] += 1;
                    grown[root] = true;
                }
            }
        }
        if !grown.contains(&true) {
            return names;
        }
    }
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// One input read from disk, on its way to the engine.
struct Read {
    job: Job,
    data: Vec<u8>,
    ms: f64,
}

/// One input's thumbnails, on their way to the disk.
struct Made {
    job: Job,
    thumbs: Vec<thumbd_engine::Thumbnail>,
    input_megapixels: f64,
    ms: f64,
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Stage 1 (the reader thread): one input's bytes, or its failed report.
fn read_input(job: Job, limits: &Limits) -> Result<Read, Report> {
    let start = Instant::now();
    match read_capped(&job.input, limits.max_input_bytes) {
        Ok(data) => Ok(Read {
            job,
            data,
            ms: elapsed_ms(start),
        }),
        Err(ReadError::TooLarge(size)) => {
            let err = thumbd_engine::Error::InputTooLarge {
                size,
                limit: limits.max_input_bytes,
            };
            let message = err.to_string();
            Err(Report::failed(
                &job.input,
                err.kind().as_str(),
                message,
                elapsed_ms(start),
            ))
        }
        Err(ReadError::Io(e)) => Err(Report::failed(
            &job.input,
            "io",
            e.to_string(),
            elapsed_ms(start),
        )),
    }
}

/// Stage 2 (an engine thread): the thumbnails of one input. Never panics on bad input.
fn make(read: Read, request: &Request, limits: &Limits) -> Result<Made, Report> {
    let start = Instant::now();
    let read_ms = read.ms;
    let ms = || read_ms + elapsed_ms(start);
    let thumbs = match thumbd_engine::thumbnail(&read.data, request, limits) {
        Ok(thumbs) => thumbs,
        Err(e) => {
            return Err(Report::failed(
                &read.job.input,
                e.kind().as_str(),
                e.to_string(),
                ms(),
            ))
        }
    };
    let input_megapixels = thumbd_engine::probe(&read.data, limits)
        .map(|i| i.pixels() as f64 / 1e6)
        .unwrap_or(0.0);
    Ok(Made {
        ms: ms(),
        job: read.job,
        thumbs,
        input_megapixels,
    })
}

/// Stage 3 (the main thread): writes one input's thumbnails under `out_dir`.
fn write_outputs(made: Made, out_dir: &Path) -> Report {
    let start = Instant::now();
    let ms = || made.ms + elapsed_ms(start);
    let mut outputs = Vec::with_capacity(made.thumbs.len());
    for thumb in &made.thumbs {
        let path = naming::thumbnail_path(
            out_dir,
            &made.job.name,
            thumb.size,
            thumb.format.extension(),
        );
        if let Err(e) = write_output(&path, &thumb.data) {
            let message = format!("writing {}: {e:#}", path.display());
            return Report::failed(&made.job.input, "io", message, ms());
        }
        outputs.push(OutputReport {
            path: path.display().to_string(),
            width: thumb.width,
            height: thumb.height,
            bytes: thumb.data.len(),
        });
    }
    Report {
        input: made.job.input.display().to_string(),
        ok: true,
        outputs,
        error: None,
        ms: ms(),
        input_megapixels: made.input_megapixels,
    }
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

    // Three stages, so the engine threads never wait on the disk: a reader thread reads inputs
    // ahead, the engine threads make thumbnails, this thread writes them and reports. The
    // queues hold two inputs per engine thread, which bounds the memory the read-ahead takes.
    let start = Instant::now();
    let (read_tx, read_rx) = crossbeam_channel::bounded::<Read>(2 * threads);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Result<Made, Report>>(2 * threads);
    let reader = {
        let done_tx = done_tx.clone();
        std::thread::Builder::new()
            .name("thumbd-read".into())
            .spawn(move || {
                for job in jobs {
                    let sent = match read_input(job, &limits) {
                        Ok(read) => read_tx.send(read).is_ok(),
                        Err(report) => done_tx.send(Err(report)).is_ok(),
                    };
                    if !sent {
                        break;
                    }
                }
            })
            .context("starting the reader thread")?
    };
    for _ in 0..threads {
        let (read_rx, done_tx, request) = (read_rx.clone(), done_tx.clone(), request.clone());
        pool.spawn(move || {
            for read in read_rx {
                if done_tx.send(make(read, &request, &limits)).is_err() {
                    break;
                }
            }
        });
    }
    drop((read_rx, done_tx));
    let out_dir = args.out.clone();
    let rx = early_failures.into_iter().chain(
        done_rx
            .into_iter()
            .map(|done| done.map_or_else(|report| report, |made| write_outputs(made, &out_dir))),
    );

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
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
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
    fn inputs_of_one_name_are_told_apart_by_their_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let file = |rel: &str| {
            let path = tmp.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            path
        };
        let (one, two) = (file("one/a.jpg"), file("two/a.jpg"));
        let (png, other) = (file("one/a.png"), file("x/photos/b.jpg"));
        file("y/photos/b.jpg");
        let inputs = vec![
            one.clone(),
            two.clone(),
            png,
            one.clone(),
            tmp.path().join("x/photos"),
            tmp.path().join("y/photos"),
            other,
        ];
        let (jobs, failed) = collect_jobs(&inputs);
        assert!(failed.is_empty());
        let names: Vec<&Path> = jobs.iter().map(|j| j.name.as_path()).collect();
        assert_eq!(
            names,
            [
                "one/a.jpg",
                "two/a.jpg",
                "a.png",
                "x/photos/b.jpg",
                "y/photos/b.jpg",
                "b.jpg",
            ]
            .map(Path::new)
        );
    }

    /// A name grown to tell two inputs apart must not land on a third input's file: the
    /// folder `z/one` holds `one/a.jpg` too, so the direct `one/a.jpg` grows once more.
    #[test]
    fn a_grown_name_never_lands_on_another_inputs_file() {
        let tmp = tempfile::tempdir().unwrap();
        for rel in ["one/a.jpg", "two/a.jpg", "z/one/a.jpg"] {
            let path = tmp.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        let inputs = vec![
            tmp.path().join("one/a.jpg"),
            tmp.path().join("two/a.jpg"),
            tmp.path().join("z/one"),
        ];
        let (jobs, failed) = collect_jobs(&inputs);
        assert!(failed.is_empty());
        let names: Vec<&Path> = jobs.iter().map(|j| j.name.as_path()).collect();
        let top = Path::new(tmp.path().file_name().unwrap());
        assert_eq!(
            names,
            [
                top.join("one/a.jpg").as_path(),
                Path::new("two/a.jpg"),
                Path::new("z/one/a.jpg"),
            ]
        );
    }
}
