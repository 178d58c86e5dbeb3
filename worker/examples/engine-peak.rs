//! Per-image peak memory of the engine, against the worker's admission estimate.
//!
//! ```text
//! cargo run --release -p thumbd --example engine-peak -- [--size N]... FILE_OR_DIR...
//! ```
//!
//! Runs `thumbd_engine::thumbnail` on each file, one at a time on this thread, under a counting
//! allocator wrapped around mimalloc (the worker's allocator), and prints one tab-separated row
//! per file: the peak of live heap bytes during the call (above what was live before it), the
//! worker's estimate for that image ([`thumbd::service::estimate`]), and their ratio. Exits 1
//! if any image's peak exceeds its estimate, so the estimate stays an upper bound.
//!
//! It also measures the decode stage alone (`thumbd_engine::stages::decode` at the engine's
//! shrink-on-load factor, as the estimate computed it) against the JPEG shrink-on-load bar: compressed input plus decode
//! peak, over compressed input plus the decoded (reduced) image.

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use thumbd::service::estimate::{estimate, EstimateParts};
use thumbd_engine::{stages, Limits, Request};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Both blocks may exist during the copy.
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let mut sizes = Vec::new();
    let mut inputs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--size" {
            sizes.push(args.next().expect("--size N").parse().expect("a number"));
        } else {
            inputs.push(PathBuf::from(arg));
        }
    }
    if sizes.is_empty() {
        sizes.push(256);
    }
    let request = Request {
        sizes,
        ..Request::default()
    };
    let limits = Limits::default();
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
         decode_peak_mib\treduced_mib\t(input+decode_peak)/(input+reduced)"
    );
    let mut over = 0;
    let mut worst: f64 = 0.0;
    for file in files {
        let data = std::fs::read(&file).expect("readable file");
        let Ok(info) = thumbd_engine::probe(&data, &limits) else {
            continue;
        };
        let est: EstimateParts = estimate(&info, &data, &request);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let decoded = stages::decode(&data, &info, est.shrink);
        let decode_peak = PEAK.load(Ordering::Relaxed).saturating_sub(before) as u64;
        let reduced = decoded.as_ref().map_or(0, |p| p.byte_len() as u64);
        drop(decoded);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let result = thumbd_engine::thumbnail(&data, &request, &limits);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before) as u64;
        let ok = if result.is_ok() { "" } else { " (error)" };
        let ratio = peak as f64 / est.engine_bytes as f64;
        worst = worst.max(ratio);
        if peak > est.engine_bytes {
            over += 1;
        }
        let input = data.len() as u64;
        println!(
            "{}\t{:?}\t{}\t{}\t{}{}\t{}\t{:.1}\t{:.1}\t{:.2}\t{:.2}\t{:.2}\t{:.2}",
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
        );
    }
    eprintln!("worst peak/estimate {worst:.2}; {over} image(s) over their estimate");
    if over > 0 {
        std::process::exit(1);
    }
}
