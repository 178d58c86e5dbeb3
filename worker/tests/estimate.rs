//! The worker's per-image estimate is an upper bound of what the engine really holds: every
//! committed corpus image is thumbnailed under a counting allocator and its peak of live heap
//! bytes compared with `thumbd::service::estimate` (the full corpus is checked the same way by
//! `cargo run --release -p thumbd --example engine-peak -- corpus/full`). The heap counted is
//! Rust's and C's (`common/measure.rs`): with the `heif` feature libheif's and its codecs'
//! allocations, with `avif` aom's encoder's, are part of the peak.

use std::path::{Path, PathBuf};

use thumbd::service::estimate::estimate;
use thumbd_engine::{InputFormat, Limits, Request};

#[path = "common/measure.rs"]
mod measure;

#[global_allocator]
static GLOBAL: measure::Counting = measure::Counting;

/// The JPEG and PNG corpus, and the other formats' (corpus/formats).
fn corpus_files() -> Vec<PathBuf> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut files: Vec<_> = [corpus.clone(), corpus.join("formats")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// One image's peak against its estimate; `Some(problem)` when over.
struct Checked {
    format: InputFormat,
    threads_started: usize,
    over: Option<String>,
}

fn check(file: &Path, data: &[u8], request: &Request) -> Option<Checked> {
    let limits = Limits::default();
    let info = thumbd_engine::probe(data, &limits).ok()?;
    let bound = estimate(&info, data, request).engine_bytes;
    let window = measure::Window::open();
    let _ = thumbd_engine::thumbnail(data, request, &limits);
    let peak = window.peak();
    let name = file.file_name().unwrap().to_string_lossy();
    Some(Checked {
        format: info.format,
        threads_started: window.threads_started(),
        over: (peak > bound).then(|| {
            format!(
                "{name} {:?} {:?}: peak {peak} > estimate {bound}",
                request.sizes, request.format
            )
        }),
    })
}

#[test]
fn the_estimate_bounds_the_engine_peak_on_the_corpus() {
    measure::assert_c_allocations_are_counted();
    let files = corpus_files();
    let mut checked = 0;
    let mut heif_checked = 0;
    let mut over = Vec::new();
    let mut avif_threads = Vec::new();
    for sizes in [vec![256], vec![64, 1024]] {
        let request = Request {
            sizes,
            ..Request::default()
        };
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let Some(c) = check(file, &data, &request) else {
                continue;
            };
            checked += 1;
            over.extend(c.over);
            if matches!(c.format, InputFormat::Heif | InputFormat::Avif) {
                heif_checked += 1;
            }
            // dav1d would start one worker per CPU of this thread's affinity; the engine pins
            // the decode to one CPU so that it starts none (`decode/heif.rs`, `one_cpu`).
            if c.format == InputFormat::Avif && c.threads_started > 0 {
                avif_threads.push(format!("{}: {}", file.display(), c.threads_started));
            }
        }
    }
    assert!(checked > 100, "only {checked} corpus images probed");
    // Without the feature HEIC and AVIF are refused from their headers; with it, every
    // readable one (corpus/formats' 12 `ok` rows at least) is measured at both requests.
    if cfg!(feature = "heif") {
        assert!(heif_checked >= 2 * 12, "{heif_checked} HEIC/AVIF checks");
    }
    assert!(over.is_empty(), "{over:#?}");
    assert!(
        avif_threads.is_empty(),
        "threads started: {avif_threads:#?}"
    );
}

/// AVIF output: aom's encoder allocates tens of bytes a pixel in C, which the estimate adds
/// per size. At the default size and at larger ones, on the corpus's largest images, those
/// with alpha (the alpha plane is a second AV1 image) and a thin strip (whose estimate is
/// small but aom's frame borders are not: 1.45× its estimate before the encoder was counted).
#[cfg(feature = "avif")]
#[test]
fn the_estimate_bounds_the_avif_encoder() {
    measure::assert_c_allocations_are_counted();
    let wanted = [
        "derived_arith_Kite_2560x1600.jpg",
        "plasma_FlyingKonqui_2560x1600.png",
        "derived_webp_alpha_astronaut.webp",
        "derived_tiff_tiled_pyramid_jpeg_moon.tif",
        "imdoc_splitbar_6x1024.png",
    ];
    let files: Vec<PathBuf> = corpus_files()
        .into_iter()
        .filter(|f| wanted.iter().any(|w| f.ends_with(w)))
        .collect();
    assert_eq!(files.len(), wanted.len(), "{files:?}");
    let mut over = Vec::new();
    let mut checked = 0;
    for sizes in [vec![256], vec![64, 1024], vec![2048]] {
        let request = Request {
            sizes,
            format: thumbd_engine::OutputFormat::Avif,
            ..Request::default()
        };
        for file in &files {
            let data = std::fs::read(file).unwrap();
            if let Some(c) = check(file, &data, &request) {
                checked += 1;
                over.extend(c.over);
            }
        }
    }
    assert_eq!(checked, 3 * wanted.len());
    assert!(over.is_empty(), "{over:#?}");
}
