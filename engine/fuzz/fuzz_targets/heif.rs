//! Fuzzes HEIC/HEIF and AVIF through `thumbd_engine::thumbnail` (libheif, the `heif` feature:
//! `cargo fuzz build -O --features heif heif`).
//!
//! An input that already starts with an ISO-BMFF `ftyp` box is the file (seed with
//! `corpus/formats/*.heic`, `*.heif` and `*.avif`); any other input gets a minimal `ftyp`
//! prepended, HEIC or AVIF by its first byte, so every run reaches libheif rather than the
//! sniffer. The request and a decode allowance come from a checksum of the first 64 bytes, as
//! in `thumbnail.rs`. A panic, an `internal` error, or an `over_budget` refusal that does not
//! converge once the reported `needed` is granted is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thumbd_engine::{thumbnail, Error, Fit, Limits, OutputFormat, Request};

fuzz_target!(|input: &[u8]| {
    let owned;
    let data = if input.get(4..8) == Some(b"ftyp") {
        input
    } else {
        let brand: &[u8; 4] = if input.first().is_some_and(|b| b & 1 == 1) {
            b"avif"
        } else {
            b"heic"
        };
        let mut v = Vec::with_capacity(input.len() + 24);
        v.extend_from_slice(&[0, 0, 0, 24]);
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(brand);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(b"mif1");
        v.extend_from_slice(brand);
        v.extend_from_slice(input.get(1..).unwrap_or_default());
        owned = v;
        &owned[..]
    };
    let seed = data.iter().take(64).fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let pick = |shift: u32, n: u32| ((seed >> shift) % n) as usize;
    const SIZES: [u32; 4] = [1, 16, 64, 128];
    let request = Request {
        sizes: vec![SIZES[pick(0, 4)]],
        fit: [Fit::Inside, Fit::Cover][pick(8, 2)],
        format: [OutputFormat::Jpeg, OutputFormat::Png][pick(9, 2)],
        ..Request::default()
    };
    // Small limits keep each run fast and under libFuzzer's RSS limit.
    let mut limits = Limits {
        max_pixels: 4_000_000,
        max_input_bytes: 8 << 20,
        max_decode_bytes: [u64::MAX, 1 << 16, 8 << 20, 64 << 20][pick(17, 4)],
        ..Limits::default()
    };
    let mut refusals = 0;
    let result = loop {
        match thumbnail(data, &request, &limits) {
            Err(Error::OverBudget { needed, allowed }) => {
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
            for t in &thumbs {
                assert!(t.width >= 1 && t.height >= 1 && t.width <= t.size && t.height <= t.size);
            }
        }
    }
});
