//! The check every engine fuzz target runs (included by each with `#[path]`): the engine's
//! entry point, `thumbd_engine::thumbnail`, on the input bytes.
//!
//! The whole input is the image, so the committed corpus files are valid seeds; the request
//! (sizes, fit, format, filter, quality) is derived from a checksum of the first 64 bytes, so
//! mutating a header also varies the options, and so is a decode allowance (none, or a few
//! bytes to a few MiB). Any panic (libfuzzer-sys aborts on it, before the engine's own
//! catch_unwind can hide it) or an `internal` error is a finding. So is an `over_budget`
//! refusal that does not converge: the call is repeated with the allowance it reported as
//! `needed`, as the worker does, and may be refused once more at most (the planned path, then
//! the full-size fallback).

use thumbd_engine::{thumbnail, Error, Filter, Fit, Limits, OutputFormat, Request};

/// Runs the check on `data` as it is.
pub fn check(data: &[u8]) {
    let seed = data.iter().take(64).fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let pick = |shift: u32, n: u32| ((seed >> shift) % n) as usize;
    const SIZES: [u32; 6] = [1, 7, 16, 33, 64, 128];
    let mut sizes = vec![SIZES[pick(0, 6)]];
    if pick(3, 2) == 1 {
        sizes.push(SIZES[pick(5, 6)]);
    }
    let request = Request {
        sizes,
        fit: [Fit::Inside, Fit::Cover][pick(8, 2)],
        format: [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp][pick(9, 3)],
        quality: [1, 50, 80, 100][pick(11, 4)],
        progressive: pick(13, 2) == 1,
        filter: [
            Filter::Lanczos3,
            Filter::CatmullRom,
            Filter::Mitchell,
            Filter::Hamming,
            Filter::Bilinear,
            Filter::Box,
        ][pick(14, 6)],
        background: [seed as u8, (seed >> 8) as u8, (seed >> 16) as u8],
    };
    // Small limits keep each run fast and far below libFuzzer's RSS limit; the header check
    // that enforces them is exercised all the same.
    let mut limits = Limits {
        max_pixels: 4_000_000,
        max_input_bytes: 8 << 20,
        max_decode_bytes: [u64::MAX, 1 << 10, 1 << 16, 1 << 20, 8 << 20][pick(17, 5)],
        ..Limits::default()
    };
    let mut refusals = 0;
    let result = loop {
        match thumbnail(data, &request, &limits) {
            Err(Error::OverBudget { needed, allowed }) => {
                assert_eq!(allowed, limits.max_decode_bytes);
                assert!(needed > allowed, "refused {needed} bytes within {allowed}");
                refusals += 1;
                assert!(refusals <= 2, "a third refusal, at {needed} bytes");
                limits.max_decode_bytes = needed;
            }
            result => break result,
        }
    };
    match result {
        Err(Error::Internal(msg)) => panic!("internal error: {msg}"),
        Err(_) => {}
        Ok(thumbs) => {
            assert_eq!(thumbs.len(), request.sizes.len());
            for t in &thumbs {
                assert!(t.width >= 1 && t.height >= 1, "zero-sized thumbnail");
                assert!(
                    t.width <= t.size && t.height <= t.size,
                    "{}x{} outside {}",
                    t.width,
                    t.height,
                    t.size
                );
                assert!(!t.data.is_empty());
            }
        }
    }
}

/// Runs the check on `data` with its first bytes replaced by `magic`, so that every input the
/// fuzzer makes reaches one format's decoder rather than the probe's refusal.
#[allow(dead_code)]
pub fn check_as(magic: &[u8], data: &[u8]) {
    let mut bytes = data.to_vec();
    let n = magic.len().min(bytes.len());
    bytes[..n].copy_from_slice(&magic[..n]);
    check(&bytes);
}
