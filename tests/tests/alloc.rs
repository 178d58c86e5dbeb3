//! Hostile dimensions are refused before allocation: this binary's global allocator counts live
//! bytes and their peak, and the engine must turn away files whose header claims billions of
//! pixels with a typed `too_many_pixels` while allocating only a little beyond the input.
//!
//! Memory only: no timing assertions (they flake on a loaded 2-core CI machine).
//! One `#[test]` runs every case in turn, because the counter is process-wide and the test
//! harness would otherwise run cases on parallel threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use thumbd_engine::{thumbnail, ErrorKind, Limits, Request};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: delegates to System and only keeps counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the old block and the new one both live, as during a moving realloc.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak bytes allocated while `f` runs, above what was live when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

/// A PNG signature and IHDR claiming `w`×`h` RGBA, followed by a tiny (bogus) IDAT.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (name, body) in [
        (&b"IHDR"[..], &ihdr[..]),
        (b"IDAT", &[0x78, 0x9c, 0x03, 0x00]),
    ] {
        png.extend_from_slice(&(body.len() as u32).to_be_bytes());
        png.extend_from_slice(name);
        png.extend_from_slice(body);
        // CRC left wrong on purpose: the refusal must come before any chunk is checked.
        png.extend_from_slice(&[0; 4]);
    }
    png
}

/// SOI, a baseline SOF0 claiming `w`×`h` with 3 components, SOS, a few bytes, EOI.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpg.extend_from_slice(&h.to_be_bytes());
    jpg.extend_from_slice(&w.to_be_bytes());
    jpg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
    jpg.extend_from_slice(&[0x12, 0x34, 0x56, 0xFF, 0xD9]);
    jpg
}

#[test]
fn hostile_dimensions_are_refused_before_allocation() {
    // The instrument works: a 16 MiB buffer shows up in the peak.
    let (_, control) = peak_during(|| std::hint::black_box(vec![1u8; 16 << 20]).len());
    assert!(
        control >= 16 << 20,
        "counting allocator saw only {control} bytes"
    );

    let corpus = thumbd_tests::corpus_dir();
    let mut cases: Vec<(String, Vec<u8>)> = [
        "derived_sof_lie_65500x65500_hopper.jpg",
        "derived_bomb_1bit_50000x50000.png",
        "derived_bomb_gray_20000x20000.jpg",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(corpus.join(f)).unwrap()))
    .collect();
    cases.push((
        "synthetic PNG 60000x60000".into(),
        png_header(60_000, 60_000),
    ));
    cases.push((
        "synthetic JPEG 60000x60000".into(),
        jpeg_header(60_000, 60_000),
    ));
    // Just over the default 100 MP limit: refused even though the full image would "only" be
    // ~400 MB of RGBA.
    cases.push((
        "synthetic PNG 10001x10000".into(),
        png_header(10_001, 10_000),
    ));

    let request = Request {
        sizes: vec![256, 64],
        ..Request::default()
    };
    // Small fixed overhead for the engine's bookkeeping, on top of the input itself.
    const OVERHEAD: usize = 2 << 20;
    for (name, data) in &cases {
        let (result, peak) = peak_during(|| thumbnail(data, &request, &Limits::default()));
        let kind = result.as_ref().err().map(|e| e.kind());
        assert_eq!(kind, Some(ErrorKind::TooManyPixels), "{name}: {result:?}");
        let budget = data.len() + OVERHEAD;
        println!("{name}: {} input bytes, peak {peak} bytes", data.len());
        assert!(
            peak <= budget,
            "{name}: peak allocation {peak} bytes > {budget}"
        );
    }

    // A lowered pixel limit refuses an otherwise fine 4.8 MP PNG just as cheaply.
    let data = std::fs::read(corpus.join("pil_itxt_chunks.png")).unwrap();
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let (result, peak) = peak_during(|| thumbnail(&data, &request, &limits));
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(ErrorKind::TooManyPixels)
    );
    assert!(peak <= data.len() + OVERHEAD, "lowered limit: peak {peak}");

    // And the same file within the limit, asked at full size (no shrink-on-load can apply),
    // allocates its 14 MB of pixels: proof that the budget above would catch a decode that
    // started before the check.
    let full = Request {
        sizes: vec![2400],
        ..Request::default()
    };
    let (result, peak) = peak_during(|| thumbnail(&data, &full, &Limits::default()));
    assert!(result.is_ok(), "{result:?}");
    assert!(
        peak > 2400 * 2000 * 3,
        "a full decode allocated only {peak} bytes"
    );
    println!("pil_itxt_chunks.png decoded: peak {peak} bytes");
}
