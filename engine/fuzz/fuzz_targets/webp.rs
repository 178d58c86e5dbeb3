//! Fuzzes the WebP decoder (RIFF walk and libwebp) and the libwebp encoder behind it.
//!
//! An input that starts with `RIFF` is the file itself, so corpus/formats/*.webp are valid
//! seeds; any other input is wrapped in a RIFF header of the right size, so the fuzzer can
//! build chunk sequences (VP8X, ANMF, ALPH, VP8L...) without first finding the container.
//! The shrink factor, the decode allowance and the output come from a checksum of the first 64
//! bytes. A panic or an `internal` error is a finding; so is a decode larger than the
//! `decode_bytes` bound allows (refused with `over_budget` under that allowance) or smaller
//! than ceil(side / shrink).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thumbd_engine::{probe, stages, thumbnail, Error, Filter, Fit, Limits, OutputFormat, Request};

fuzz_target!(|input: &[u8]| {
    let wrapped;
    let data = if input.starts_with(b"RIFF") {
        input
    } else {
        let mut file = Vec::with_capacity(input.len() + 12);
        file.extend_from_slice(b"RIFF");
        file.extend_from_slice(&(input.len() as u32 + 4).to_le_bytes());
        file.extend_from_slice(b"WEBP");
        file.extend_from_slice(input);
        wrapped = file;
        &wrapped
    };
    let seed = input.iter().take(64).fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let pick = |shift: u32, n: u32| ((seed >> shift) % n) as usize;
    // Small enough that a fuzzer-made header cannot make every run slow.
    let limits = Limits {
        max_pixels: 4_000_000,
        max_input_bytes: 8 << 20,
        ..Limits::default()
    };
    let Ok(info) = probe(data, &limits) else {
        return;
    };
    let shrink = [1, 2, 3, 8][pick(0, 4)];
    let bytes = stages::decode_bytes(data, &info, shrink);
    assert!(bytes.planned <= bytes.full, "{bytes:?}");
    assert!(bytes.full <= info.decode_budget_bytes(), "{bytes:?}");
    match stages::decode(data, &info, shrink) {
        Err(Error::Internal(msg)) => panic!("internal error: {msg}"),
        Err(_) => {}
        Ok(pixels) => {
            assert!(pixels.width() >= info.width.div_ceil(shrink));
            assert!(pixels.height() >= info.height.div_ceil(shrink));
            assert!(pixels.byte_len() as u64 <= bytes.planned);
        }
    }
    // The whole pipeline, WebP out included, under the planned allowance.
    let request = Request {
        sizes: vec![[1, 16, 64][pick(2, 3)]],
        fit: [Fit::Inside, Fit::Cover][pick(4, 2)],
        format: [OutputFormat::Webp, OutputFormat::Png][pick(5, 2)],
        quality: [1, 50, 80, 100][pick(6, 4)],
        progressive: false,
        filter: Filter::Lanczos3,
        background: [255, 255, 255],
    };
    let limits = Limits {
        max_decode_bytes: [u64::MAX, 1 << 16][pick(8, 2)],
        ..limits
    };
    match thumbnail(data, &request, &limits) {
        Err(Error::Internal(msg)) => panic!("internal error: {msg}"),
        Err(Error::OverBudget { needed, allowed }) => {
            assert!(needed > allowed);
            let limits = Limits {
                max_decode_bytes: needed,
                ..limits
            };
            if let Err(Error::Internal(msg)) = thumbnail(data, &request, &limits) {
                panic!("internal error: {msg}");
            }
        }
        _ => {}
    }
});
