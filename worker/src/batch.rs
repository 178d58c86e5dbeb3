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
            absolute_root(root)
                .components()
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

/// `root` as an absolute path with its folders resolved (symlinks, `..`) but not its own last
/// name, so an input that is a symlink keeps the name it was given (`latest.jpg`, not its
/// target's name), as the help says.
fn absolute_root(root: &Path) -> PathBuf {
    let resolved = match (root.parent(), root.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::canonicalize(parent).map(|parent| parent.join(name))
        }
        _ => std::fs::canonicalize(root),
    };
    resolved
        .or_else(|_| std::path::absolute(root))
        .unwrap_or_else(|_| root.to_path_buf())
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

/// The three stages of a batch run, so the engine threads never wait on the disk: a reader
/// thread reads inputs ahead, the engine threads (the pool) make thumbnails, the calling thread
/// writes them and reports.
struct Stages<'a> {
    pool: &'a rayon::ThreadPool,
    threads: usize,
    request: &'a Request,
    limits: Limits,
    out_dir: &'a Path,
}

/// Inputs read ahead wait here for an engine thread, at most `2 × threads` of them and at most
/// `max_input_bytes` in all (one larger input is still let through alone), so the read-ahead
/// adds at most about one maximal input to what the engine threads hold.
struct ReadAhead {
    /// Bytes queued, and whether the run stopped early (nothing will be released any more).
    state: std::sync::Mutex<(u64, bool)>,
    freed: std::sync::Condvar,
    limit: u64,
}

impl ReadAhead {
    fn new(limit: u64) -> Self {
        ReadAhead {
            state: std::sync::Mutex::new((0, false)),
            freed: std::sync::Condvar::new(),
            limit,
        }
    }

    /// Waits until `len` more bytes fit (or nothing is queued), then counts them. False once
    /// the run has stopped.
    fn admit(&self, len: u64) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        while !state.1 && state.0 > 0 && state.0 + len > self.limit {
            state = self.freed.wait(state).expect("not poisoned");
        }
        state.0 += len;
        !state.1
    }

    /// An engine thread took `len` bytes off the queue.
    fn release(&self, len: u64) {
        self.state.lock().expect("not poisoned").0 -= len;
        self.freed.notify_all();
    }

    /// The run stopped early: the reader must not wait for bytes nobody will release.
    fn stop(&self) {
        self.state.lock().expect("not poisoned").1 = true;
        self.freed.notify_all();
    }

    #[cfg(test)]
    fn queued(&self) -> u64 {
        self.state.lock().expect("not poisoned").0
    }
}

impl Stages<'_> {
    /// Runs `jobs` through the stages, reading each with `read`; `report` gets one report per
    /// job on this thread, in the order they finish. Stops early if `report` fails.
    fn run(
        &self,
        jobs: Vec<Job>,
        read: impl Fn(Job, &Limits) -> Result<Read, Report> + Send + 'static,
        report: &mut dyn FnMut(Report) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (threads, limits) = (self.threads, self.limits);
        let (read_tx, read_rx) = crossbeam_channel::bounded::<Read>(2 * threads);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Result<Made, Report>>(2 * threads);
        let ahead = std::sync::Arc::new(ReadAhead::new(limits.max_input_bytes));
        let reader = {
            let (done_tx, ahead) = (done_tx.clone(), ahead.clone());
            std::thread::Builder::new()
                .name("thumbd-read".into())
                .spawn(move || {
                    for job in jobs {
                        let sent = match read(job, &limits) {
                            Ok(input) => {
                                ahead.admit(input.data.len() as u64) && read_tx.send(input).is_ok()
                            }
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
            let (read_rx, done_tx) = (read_rx.clone(), done_tx.clone());
            let (request, ahead) = (self.request.clone(), ahead.clone());
            self.pool.spawn(move || {
                for input in read_rx {
                    ahead.release(input.data.len() as u64);
                    if done_tx.send(make(input, &request, &limits)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((read_rx, done_tx));
        let mut result = Ok(());
        for done in &done_rx {
            let done = done.map_or_else(|failed| failed, |made| write_outputs(made, self.out_dir));
            result = report(done);
            if result.is_err() {
                break;
            }
        }
        // Unblocks the engine threads and then the reader if `report` stopped the run early.
        drop(done_rx);
        ahead.stop();
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
        result
    }
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
        .thread_name(|i| format!("thumbd-engine-{i}"))
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
    let out_dir = args.out.clone();
    let mut stdout = std::io::stdout().lock();
    let (mut ok, mut failed, mut megapixels) = (0usize, 0usize, 0.0f64);
    let mut on_report = |report: Report| -> anyhow::Result<()> {
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
        Ok(())
    };
    for report in early_failures {
        on_report(report)?;
    }
    let stages = Stages {
        pool: &pool,
        threads,
        request: &request,
        limits,
        out_dir: &out_dir,
    };
    stages.run(jobs, read_input, &mut on_report)?;
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

    /// A symlink given as input, file or folder, is named as given, not by its target.
    #[cfg(unix)]
    #[test]
    fn symlinked_inputs_keep_the_name_they_were_given() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("photos")).unwrap();
        std::fs::write(tmp.path().join("photos/b.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink("photos/b.jpg", tmp.path().join("latest.jpg")).unwrap();
        std::os::unix::fs::symlink("photos", tmp.path().join("newest")).unwrap();
        let inputs = vec![tmp.path().join("latest.jpg"), tmp.path().join("newest")];
        let (jobs, failed) = collect_jobs(&inputs);
        assert!(failed.is_empty());
        let names: Vec<&Path> = jobs.iter().map(|j| j.name.as_path()).collect();
        assert_eq!(names, [Path::new("latest.jpg"), Path::new("newest/b.jpg")]);
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
    /// A small photo of the committed corpus that every build decodes.
    fn photo() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pil_empty_gps_ifd.jpg");
        std::fs::read(path).unwrap()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    fn job(input: PathBuf, name: &str) -> Job {
        Job {
            input,
            name: PathBuf::from(name),
        }
    }

    /// Every job is reported once, whichever stage it fails in, with the error kind of that
    /// stage; the good ones are written under their names.
    #[test]
    fn each_input_is_reported_once_with_its_stages_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, out) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let photo = photo();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let mut big = photo.clone();
        big.resize(photo.len() * 4, 0);
        // The writer cannot make this input's folder: a file is in its way.
        std::fs::write(out.join("blocked.jpg"), b"x").unwrap();
        let jobs = vec![
            job(file("a.jpg", &photo), "a.jpg"),
            job(dir.join("missing.jpg"), "missing.jpg"),
            job(file("corrupt.jpg", b"\xff\xd8\xff garbage"), "corrupt.jpg"),
            job(file("big.jpg", &big), "big.jpg"),
            job(file("blocked.jpg", &photo), "blocked.jpg"),
            job(file("b.jpg", &photo), "b.jpg"),
        ];
        let limits = Limits {
            max_input_bytes: photo.len() as u64 * 2,
            ..Limits::default()
        };
        let pool = pool(2);
        let request = Request::default();
        let stages = Stages {
            pool: &pool,
            threads: 2,
            request: &request,
            limits,
            out_dir: &out,
        };
        let mut reports = Vec::new();
        stages
            .run(jobs, read_input, &mut |r| {
                reports.push(r);
                Ok(())
            })
            .unwrap();
        let mut kinds: Vec<(String, String)> = reports
            .iter()
            .map(|r| {
                let name = Path::new(&r.input).file_name().unwrap().to_string_lossy();
                let kind = r.error.as_ref().map_or("ok".into(), |e| e.kind.clone());
                (name.into_owned(), kind)
            })
            .collect();
        kinds.sort();
        let expect = [
            ("a.jpg", "ok"),
            ("b.jpg", "ok"),
            ("big.jpg", "input_too_large"),
            ("blocked.jpg", "io"),
            ("corrupt.jpg", "truncated"),
            ("missing.jpg", "io"),
        ];
        assert_eq!(
            kinds,
            expect.map(|(n, k)| (n.to_string(), k.to_string())),
            "{reports:?}"
        );
        for name in ["a.jpg", "b.jpg"] {
            let written = naming::thumbnail_path(&out, Path::new(name), 256, "jpg");
            assert!(written.is_file(), "{}", written.display());
        }
        let blocked = reports.iter().find(|r| r.input.ends_with("blocked.jpg"));
        let message = &blocked.unwrap().error.as_ref().unwrap().message;
        assert!(message.starts_with("writing "), "{message}");
    }

    /// While the writer (the reporting thread) is stuck, the reader stops: the queues hold a
    /// few inputs per engine thread, not the whole batch.
    #[test]
    fn reading_ahead_stops_while_the_writer_waits() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("a.jpg");
        std::fs::write(&input, photo()).unwrap();
        const JOBS: usize = 40;
        let jobs = (0..JOBS)
            .map(|i| job(input.clone(), &format!("{i}.jpg")))
            .collect();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let reader = move |job: Job, limits: &Limits| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_input(job, limits)
        };
        let pool = pool(1);
        let request = Request::default();
        let out = tmp.path().join("out");
        let stages = Stages {
            pool: &pool,
            threads: 1,
            request: &request,
            limits: Limits::default(),
            out_dir: &out,
        };
        let (mut reported, mut read_while_stuck) = (0, 0);
        stages
            .run(jobs, reader, &mut |r| {
                assert!(r.ok, "{r:?}");
                reported += 1;
                if reported == 1 {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    read_while_stuck = read.load(std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(reported, JOBS);
        // One reported, two finished waiting for the writer, one in the engine, two read
        // ahead, one held by the reader: 7 at one thread.
        assert!(
            (2..=7).contains(&read_while_stuck),
            "{read_while_stuck} inputs read while the writer was stuck"
        );
    }

    /// Inputs read ahead are bounded in bytes too: at most `max_input_bytes` wait, and one
    /// larger input still goes through alone. A run stopped early frees a waiting reader.
    #[test]
    fn read_ahead_bytes_are_bounded() {
        let ahead = std::sync::Arc::new(ReadAhead::new(100));
        assert!(ahead.admit(60));
        let waiting = {
            let ahead = ahead.clone();
            std::thread::spawn(move || ahead.admit(60))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiting.is_finished(), "admitted over the bound");
        assert_eq!(ahead.queued(), 60);
        ahead.release(60);
        assert!(waiting.join().unwrap());
        assert_eq!(ahead.queued(), 60);
        ahead.release(60);
        // Larger than the bound, alone: admitted.
        assert!(ahead.admit(500));
        let stuck = {
            let ahead = ahead.clone();
            std::thread::spawn(move || ahead.admit(1))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!stuck.is_finished());
        ahead.stop();
        assert!(!stuck.join().unwrap(), "a stopped run admits nothing");
    }

    /// A report that cannot be written (stdout closed) stops the run and returns its error,
    /// without leaving the reader waiting on a full queue.
    #[test]
    fn a_failing_report_stops_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let photo = photo();
        let input = tmp.path().join("a.jpg");
        std::fs::write(&input, &photo).unwrap();
        let jobs = (0..20)
            .map(|i| job(input.clone(), &format!("{i}.jpg")))
            .collect();
        let pool = pool(2);
        let request = Request::default();
        let out = tmp.path().join("out");
        // One input's bytes at a time in the queue: the reader waits on the byte bound.
        let limits = Limits {
            max_input_bytes: photo.len() as u64,
            ..Limits::default()
        };
        let stages = Stages {
            pool: &pool,
            threads: 2,
            request: &request,
            limits,
            out_dir: &out,
        };
        let mut calls = 0;
        let result = stages.run(jobs, read_input, &mut |_| {
            calls += 1;
            anyhow::bail!("broken pipe")
        });
        assert_eq!(result.unwrap_err().to_string(), "broken pipe");
        assert_eq!(calls, 1);
    }
}
