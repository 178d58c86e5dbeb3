//! Per-image peak memory of the engine, against the worker's admission estimate.
//!
//! ```text
//! cargo run --release -p thumbd --example engine-peak -- [--size N]... [--format F] FILE_OR_DIR...
//! cargo run --release -p thumbd --features heif,avif --example engine-peak -- \
//!     --format avif corpus/formats
//! ```
//!
//! Runs `thumbd_engine::thumbnail` on each file, one at a time on this thread, and prints one
//! tab-separated row per file: the peak of live heap bytes during the call (above what was
//! live before it), the worker's estimate for that image ([`thumbd::service::estimate`]), and
//! their ratio. Exits 1 if any image's peak exceeds its estimate, so the estimate stays an
//! upper bound. The heap is Rust's (mimalloc, the worker's allocator) plus C's: libheif and
//! its codecs allocate with `malloc`, which this binary interposes (`tests/common/measure.rs`
//! says how and why), on every thread.
//!
//! It also measures the decode stage alone (`thumbd_engine::stages::decode` at the engine's
//! shrink-on-load factor, as the estimate computed it) against the JPEG shrink-on-load bar:
//! compressed input plus decode peak, over compressed input plus the decoded (reduced) image;
//! and the threads started during the thumbnail call (`codec_threads`: libde265's and
//! dav1d's workers, per decoder instance; `pthread_create` is counted like `malloc`).

use std::path::PathBuf;

use thumbd::service::estimate::{estimate, EstimateParts};
use thumbd_engine::{stages, Limits, OutputFormat, Request};

#[path = "../tests/common/measure.rs"]
mod measure;

#[global_allocator]
static GLOBAL: measure::Counting = measure::Counting;

fn output_format(name: &str) -> OutputFormat {
    match name {
        "jpeg" => OutputFormat::Jpeg,
        "png" => OutputFormat::Png,
        "webp" => OutputFormat::Webp,
        #[cfg(feature = "avif")]
        "avif" => OutputFormat::Avif,
        other => panic!("--format {other}: jpeg, png, webp (avif with the avif feature)"),
    }
}

fn main() {
    let mut sizes = Vec::new();
    let mut inputs = Vec::new();
    let mut format = OutputFormat::Jpeg;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--size" {
            sizes.push(args.next().expect("--size N").parse().expect("a number"));
        } else if arg == "--format" {
            format = output_format(&args.next().expect("--format NAME"));
        } else {
            inputs.push(PathBuf::from(arg));
        }
    }
    if sizes.is_empty() {
        sizes.push(256);
    }
    let request = Request {
        sizes,
        format,
        ..Request::default()
    };
    let limits = Limits::default();
    measure::assert_c_allocations_are_counted();
    let mut files: Vec<PathBuf> = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&input)
                .expect("readable folder")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(input);
        }
    }
    println!(
        "file\tformat\twidth\theight\tpath\tbytes\tpeak_mib\testimate_mib\tpeak/estimate\t\
         decode_peak_mib\treduced_mib\t(input+decode_peak)/(input+reduced)\tcodec_threads"
    );
    let mut over = 0;
    let mut worst: f64 = 0.0;
    for file in files {
        let data = std::fs::read(&file).expect("readable file");
        let Ok(info) = thumbd_engine::probe(&data, &limits) else {
            continue;
        };
        let est: EstimateParts = estimate(&info, &data, &request);
        let window = measure::Window::open();
        let decoded = stages::decode(&data, &info, est.shrink);
        let decode_peak = window.peak();
        let reduced = decoded.as_ref().map_or(0, |p| p.byte_len() as u64);
        drop(decoded);
        drop(window);
        let window = measure::Window::open();
        let result = thumbd_engine::thumbnail(&data, &request, &limits);
        let peak = window.peak();
        let threads = window.threads_started();
        drop(window);
        let ok = if result.is_ok() { "" } else { " (error)" };
        let ratio = peak as f64 / est.engine_bytes as f64;
        worst = worst.max(ratio);
        if peak > est.engine_bytes {
            over += 1;
        }
        let input = data.len() as u64;
        println!(
            "{}\t{:?}\t{}\t{}\t{}{}\t{}\t{:.1}\t{:.1}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{}",
            file.file_name().unwrap().to_string_lossy(),
            info.format,
            info.width,
            info.height,
            est.path,
            ok,
            data.len(),
            peak as f64 / 1048576.0,
            est.engine_bytes as f64 / 1048576.0,
            ratio,
            decode_peak as f64 / 1048576.0,
            reduced as f64 / 1048576.0,
            (input + decode_peak) as f64 / (input + reduced) as f64,
            threads,
        );
    }
    eprintln!("worst peak/estimate {worst:.2}; {over} image(s) over their estimate");
    if over > 0 {
        std::process::exit(1);
    }
}
