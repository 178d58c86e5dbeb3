//! The worker's per-image estimate is an upper bound of what the engine really holds: every
//! committed corpus image is thumbnailed under a counting allocator and its peak of live heap
//! bytes compared with `thumbd::service::estimate` (the full corpus is checked the same way by
//! `cargo run --release -p thumbd --example engine-peak -- corpus/full`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use thumbd::service::estimate::estimate;
use thumbd_engine::{Limits, Request};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_estimate_bounds_the_engine_peak_on_the_corpus() {
    // The JPEG and PNG corpus, and the other formats' (corpus/formats).
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut files: Vec<_> = [corpus.clone(), corpus.join("formats")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let limits = Limits::default();
    let mut checked = 0;
    let mut over = Vec::new();
    for sizes in [vec![256], vec![64, 1024]] {
        let request = Request {
            sizes,
            ..Request::default()
        };
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let Ok(info) = thumbd_engine::probe(&data, &limits) else {
                continue;
            };
            let bound = estimate(&info, &data, &request).engine_bytes;
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let _ = thumbd_engine::thumbnail(&data, &request, &limits);
            let peak = (PEAK.load(Ordering::Relaxed) - before) as u64;
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            checked += 1;
            if peak > bound {
                over.push(format!(
                    "{name} {:?}: peak {peak} > estimate {bound}",
                    request.sizes
                ));
            }
        }
    }
    assert!(checked > 100, "only {checked} corpus images probed");
    assert!(over.is_empty(), "{over:#?}");
}
