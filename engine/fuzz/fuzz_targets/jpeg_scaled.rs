//! Fuzzes the reduced-scale JPEG decoder alone (no fallback to zune-jpeg): any bytes must give
//! a picture or a typed error, never a panic, a hang or an allocation beyond what the header
//! admitted under the limits. The first byte picks the scale (1 is the full-size resync path,
//! and the only full-size decoder of arithmetic-coded files). Huffman and arithmetic coding
//! (SOF9/SOF10) both go through here: seed with `../corpus` and `../tests/fixtures/arith`.
//! The header check the worker's memory estimate uses runs on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thumbd_engine::{probe, stages, Limits};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let scale = [1, 2, 4, 8][usize::from(selector % 4)];
    // Small enough that a fuzzer-made header cannot make every run slow.
    let limits = Limits {
        max_pixels: 4_000_000,
        ..Limits::default()
    };
    if let Ok(info) = probe(data, &limits) {
        // No relation to assert: damage inside scans can still make the decode decline.
        let _ = stages::jpeg_reduced_decode_expected(data, &info);
        if let Ok(pixels) = stages::decode_jpeg_reduced(data, &info, scale) {
            let k = scale as u32;
            assert_eq!(pixels.width(), info.width.div_ceil(k));
            assert_eq!(pixels.height(), info.height.div_ceil(k));
        }
    }
});
