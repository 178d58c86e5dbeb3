//! Hostile dimensions are refused before allocation: this binary's global allocator counts live
//! bytes and their peak, and the engine must turn away files whose header claims billions of
//! pixels with a typed `too_many_pixels` while allocating only a little beyond the input.
//!
//! Memory only: no timing assertions (they flake on a loaded 2-core CI machine).
//! Each `#[test]` holds [`MEASURING`] while it runs its cases in turn, because the counter is
//! process-wide and the test harness would otherwise run tests on parallel threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use thumbd_engine::{
    plan, probe, stages, thumbnail, Error, ErrorKind, InputFormat, Limits, Request,
};

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

/// Held by each test while it measures: one measurement at a time in the process.
static MEASURING: Mutex<()> = Mutex::new(());

fn measuring() -> MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    let _one_at_a_time = measuring();
    // The instrument works: a 16 MiB buffer shows up in the peak (less whatever small blocks
    // another thread, such as the test harness's, frees meanwhile: the counter is global; one
    // run saw 16 MiB - 24 bytes).
    let (_, control) = peak_during(|| std::hint::black_box(vec![1u8; 16 << 20]).len());
    assert!(
        control >= (16 << 20) - (64 << 10),
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

/// What a decode may allocate beyond the bounds of `stages::decode_bytes`, which count pixels
/// and decoder buffers: headers, tables, ICC and EXIF copies (the worker's estimate adds 2 MiB
/// per image for these).
const DECODE_STATE: u64 = 2 << 20;

#[test]
fn decodes_stay_within_their_bounds_and_an_allowance_refuses_before_allocating() {
    let _one_at_a_time = measuring();
    // A JPEG the reduced decoder declines at decode time, with an allowance for the reduced
    // decode: refused once that decode has declined, before the full-size one allocates.
    let data = thumbd_tests::jpeg_declined_at_decode_time();
    let info = probe(&data, &Limits::default()).unwrap();
    let request = Request {
        sizes: vec![256],
        ..Request::default()
    };
    let target = plan(info.width, info.height, 256, request.fit);
    let bytes = stages::decode_bytes(&data, &info, stages::shrink_on_load_factor(&info, target));
    let within = Limits {
        max_decode_bytes: bytes.planned,
        ..Limits::default()
    };
    let (result, peak) = peak_during(|| thumbnail(&data, &request, &within));
    assert!(
        matches!(result, Err(Error::OverBudget { needed, .. }) if needed == bytes.full),
        "{result:?}"
    );
    println!(
        "declined at decode time: peak {peak} bytes within {} (full size: {})",
        bytes.planned, bytes.full
    );
    assert!(peak as u64 <= bytes.planned + DECODE_STATE, "peak {peak}");
    // The full-size decode it refused holds no more than the `needed` it reported.
    let (decoded, full_peak) = peak_during(|| stages::decode(&data, &info, 1));
    assert!(decoded.is_ok(), "{:?}", decoded.err());
    println!("its full-size decode: peak {full_peak} bytes");
    assert!(
        full_peak as u64 <= bytes.full,
        "peak {full_peak} > {}",
        bytes.full
    );

    // Every committed file that decodes, at the shrink of a 256 px thumbnail and at full size:
    // the decode's peak is within its bound (the full-size one where the reduced decoder
    // declines: files cut before their scans).
    let mut worst = (0.0f64, String::new());
    let mut over = Vec::new();
    for entry in thumbd_tests::manifest() {
        let data = std::fs::read(entry.path()).unwrap();
        let Ok(info) = probe(&data, &Limits::default()) else {
            continue;
        };
        let target = plan(info.width, info.height, 256, request.fit);
        for shrink in [stages::shrink_on_load_factor(&info, target), 1] {
            let bytes = stages::decode_bytes(&data, &info, shrink);
            let bound = if info.format == InputFormat::Jpeg
                && !stages::jpeg_reduced_decode_expected(&data, &info)
            {
                bytes.planned.max(bytes.full)
            } else {
                bytes.planned
            };
            let (result, peak) = peak_during(|| stages::decode(&data, &info, shrink));
            if result.is_err() {
                continue;
            }
            // Largest share of the bound, among decodes large enough for the fixed state not
            // to dominate.
            let ratio = peak as f64 / bound as f64;
            if bound > DECODE_STATE && ratio > worst.0 {
                worst = (ratio, format!("{} at shrink {shrink}", entry.file));
            }
            if peak as u64 > bound + DECODE_STATE {
                over.push(format!(
                    "{} at shrink {shrink}: {peak} > {bound}",
                    entry.file
                ));
            }
        }
    }
    println!(
        "largest decode peak / bound over {DECODE_STATE} bytes: {:.2} ({})",
        worst.0, worst.1
    );
    assert!(
        over.is_empty(),
        "decodes over their bound:\n{}",
        over.join("\n")
    );
}
