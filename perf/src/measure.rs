//! The measurement plan and its aggregation into the figures of `report.json`.
//!
//! Per repetition (repetitions outermost, so slow drift of a shared machine hits every
//! configuration alike): the whole corpus at 1..=N threads, then each (format, size class) on
//! its own at 1..=N threads. Whole-corpus runs give `runs`; class runs give `classes` and feed
//! the throughput model, which is then checked against the whole-corpus runs it never saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use thumbd_benches::{Corpus, Sample, SizeClass};
use thumbd_engine::Request;

use crate::run::{self, Run};
use crate::stats::{mean, median, percentile};

/// Throughput, latency and memory of one configuration, medians over repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    /// Pool size.
    pub threads: usize,
    /// Images that made thumbnails, per run.
    pub images: usize,
    /// Median over repetitions of images / wall time.
    pub images_per_s: f64,
    /// Median over repetitions of input megapixels / wall time.
    pub input_mp_per_s: f64,
    /// `images_per_s / threads`.
    pub images_per_s_per_core: f64,
    /// `input_mp_per_s / threads`.
    pub input_mp_per_s_per_core: f64,
    /// Mean engine time per image (pooled over repetitions), ms.
    pub mean_ms: f64,
    /// Latency percentiles per image over every repetition's samples, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest peak RSS of the run's process over repetitions, bytes.
    pub peak_rss_bytes: u64,
    /// Median RSS before any image work, bytes.
    pub base_rss_bytes: u64,
    /// Every repetition's images/s, to show the spread.
    pub reps_images_per_s: Vec<f64>,
}

/// [`Figures`] of one input format and size class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassFigures {
    /// `jpeg` or `png`.
    pub format: String,
    /// `small`, `mid` or `large`.
    pub size_class: String,
    /// Files of the corpus in this class.
    pub files: usize,
    /// Mean input megapixels of those files.
    pub mean_mp: f64,
    /// Mean input bytes of those files.
    pub mean_input_bytes: f64,
    /// Largest engine estimate of the worker's admission control among the class's files
    /// (`thumbd::service::estimate`, for the job's sizes), to compare with the measured peak.
    pub max_estimate_bytes: u64,
    /// Largest compressed file of the class: what the worker's input pool holds for it.
    pub max_input_bytes: u64,
    /// The measured figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Key of a class: (format name, size class).
pub type ClassKey = (&'static str, SizeClass);

/// Everything measured, before the report is written.
#[derive(Debug)]
pub struct Measurements {
    /// Whole corpus, one entry per thread count.
    pub runs: Vec<Figures>,
    /// One entry per class and thread count.
    pub classes: Vec<ClassFigures>,
    /// Fraction of the corpus's images in each class (the corpus's own mix).
    pub corpus_mix: BTreeMap<ClassKey, f64>,
}

/// The configuration of a measurement.
pub struct Plan<'a> {
    /// Usable files.
    pub corpus: &'a Corpus,
    /// Highest thread count measured.
    pub max_threads: usize,
    /// Repetitions of every configuration.
    pub reps: usize,
    /// Thumbnail sizes per image.
    pub sizes: &'a [u32],
    /// Scratch folder for file lists.
    pub work: &'a Path,
}

/// The worker's admission estimate of the engine's bytes for `sample` at `sizes` (the index
/// holds headers only, so the file is read for the estimate's end-of-file checks).
fn worker_estimate(sample: &Sample, sizes: &[u32]) -> u64 {
    let request = Request {
        sizes: sizes.to_vec(),
        ..Request::default()
    };
    // An unreadable file is estimated as if truncated: the larger bound.
    let data = std::fs::read(&sample.path).unwrap_or_default();
    thumbd::service::estimate::estimate(&sample.info, &data, &request).engine_bytes
}

/// Groups the corpus's files by (format, size class).
pub fn classes(corpus: &Corpus) -> BTreeMap<ClassKey, Vec<&Sample>> {
    let mut groups: BTreeMap<ClassKey, Vec<&Sample>> = BTreeMap::new();
    for s in &corpus.samples {
        groups.entry((s.format(), s.class())).or_default().push(s);
    }
    groups
}

/// Runs the plan; `between_reps` is called once per repetition (the peers run there, so
/// they share the same drift).
pub fn measure(
    plan: &Plan,
    mut between_reps: impl FnMut(usize) -> Result<()>,
) -> Result<Measurements> {
    let all: Vec<&Sample> = plan.corpus.samples.iter().collect();
    let groups = classes(plan.corpus);
    let paths =
        |samples: &[&Sample]| -> Vec<PathBuf> { samples.iter().map(|s| s.path.clone()).collect() };
    let mut whole: BTreeMap<usize, Vec<Run>> = BTreeMap::new();
    let mut per_class: BTreeMap<(ClassKey, usize), Vec<Run>> = BTreeMap::new();
    for rep in 0..plan.reps {
        for threads in 1..=plan.max_threads {
            eprintln!(
                "thumbd-perf: rep {}/{} whole corpus, {threads} thread(s)",
                rep + 1,
                plan.reps
            );
            let r = run::spawn(threads, &paths(&all), plan.sizes, plan.work)?;
            whole.entry(threads).or_default().push(r);
        }
        for (key, samples) in &groups {
            for threads in 1..=plan.max_threads {
                eprintln!(
                    "thumbd-perf: rep {}/{} {} {}, {threads} thread(s)",
                    rep + 1,
                    plan.reps,
                    key.0,
                    key.1
                );
                let r = run::spawn(threads, &paths(samples), plan.sizes, plan.work)?;
                per_class.entry((*key, threads)).or_default().push(r);
            }
        }
        between_reps(rep)?;
    }

    let runs = whole
        .iter()
        .map(|(&threads, runs)| figures(threads, runs, &all))
        .collect();
    // Once per class, not per thread count: each estimate reads its file.
    let max_estimates: BTreeMap<ClassKey, u64> = groups
        .iter()
        .map(|(&key, samples)| {
            let max = samples.iter().map(|s| worker_estimate(s, plan.sizes)).max();
            (key, max.unwrap_or(0))
        })
        .collect();
    let classes = per_class
        .iter()
        .map(|(&(key, threads), runs)| {
            let samples = &groups[&key];
            let n = samples.len() as f64;
            ClassFigures {
                format: key.0.to_string(),
                size_class: key.1.name().to_string(),
                files: samples.len(),
                mean_mp: samples.iter().map(|s| s.megapixels()).sum::<f64>() / n,
                mean_input_bytes: samples.iter().map(|s| s.bytes as f64).sum::<f64>() / n,
                max_estimate_bytes: max_estimates[&key],
                max_input_bytes: samples.iter().map(|s| s.bytes).max().unwrap_or(0),
                figures: figures(threads, runs, samples),
            }
        })
        .collect();
    let total = all.len() as f64;
    let corpus_mix = groups
        .iter()
        .map(|(k, v)| (*k, v.len() as f64 / total))
        .collect();
    Ok(Measurements {
        runs,
        classes,
        corpus_mix,
    })
}

/// Aggregates the repetitions of one configuration over `samples` (the files in list order).
fn figures(threads: usize, runs: &[Run], samples: &[&Sample]) -> Figures {
    let mut ips = Vec::new();
    let mut mps = Vec::new();
    let mut latencies = Vec::new();
    let mut images = 0;
    for run in runs {
        let wall = run.output.wall_s.max(1e-9);
        let ok: Vec<(usize, f64)> = run
            .output
            .images
            .iter()
            .enumerate()
            .filter(|(_, t)| t.error.is_none())
            .map(|(i, t)| (i, t.ms))
            .collect();
        images = ok.len();
        let mp: f64 = ok.iter().map(|&(i, _)| samples[i].megapixels()).sum();
        ips.push(ok.len() as f64 / wall);
        mps.push(mp / wall);
        latencies.extend(ok.iter().map(|&(_, ms)| ms));
    }
    let base: Vec<f64> = runs
        .iter()
        .map(|r| r.output.base_rss_bytes as f64)
        .collect();
    let images_per_s = median(&ips).unwrap_or(0.0);
    let input_mp_per_s = median(&mps).unwrap_or(0.0);
    Figures {
        threads,
        images,
        images_per_s,
        input_mp_per_s,
        images_per_s_per_core: images_per_s / threads as f64,
        input_mp_per_s_per_core: input_mp_per_s / threads as f64,
        mean_ms: mean(&latencies).unwrap_or(0.0),
        p50_ms: percentile(&latencies, 50.0).unwrap_or(0.0),
        p95_ms: percentile(&latencies, 95.0).unwrap_or(0.0),
        p99_ms: percentile(&latencies, 99.0).unwrap_or(0.0),
        peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        base_rss_bytes: median(&base).unwrap_or(0.0) as u64,
        reps_images_per_s: ips,
    }
}

impl Measurements {
    /// The class figures of `key` at `threads`, or at the highest thread count measured
    /// below it (a pod may have more threads than this machine).
    pub fn class(&self, key: ClassKey, threads: usize) -> Option<&ClassFigures> {
        self.classes
            .iter()
            .filter(|c| {
                c.format == key.0 && c.size_class == key.1.name() && c.figures.threads <= threads
            })
            .max_by_key(|c| c.figures.threads)
    }

    /// The whole-corpus figures at `threads`.
    pub fn run(&self, threads: usize) -> Option<&Figures> {
        self.runs.iter().find(|r| r.threads == threads)
    }
}
