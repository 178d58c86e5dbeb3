//! Fuzzes the BMP decoder through the engine's entry point: every input is made a BMP by
//! putting "BM" in front of it (unless it starts with "BM" already) and, when bytes 14..18 are
//! not a DIB header size the probe knows, writing one there chosen by the last byte (12, 40,
//! 52, 56, 108 or 124), so the fuzzer spends its time in the headers, palettes, bit fields and
//! RLE codes. Seeds: corpus/formats/*.bmp. A panic, an `internal` error, or an `over_budget`
//! refusal that does not converge when repeated with the allowance it reported (as the worker
//! does) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thumbd_engine::{thumbnail, Error, Limits, Request};

fuzz_target!(|input: &[u8]| {
    let selector = input.last().copied().unwrap_or(0);
    let mut data = Vec::with_capacity(input.len() + 20);
    if !input.starts_with(b"BM") {
        data.extend_from_slice(b"BM");
    }
    data.extend_from_slice(input);
    if data.len() < 18 {
        data.resize(18, 0);
    }
    const SIZES: [u32; 6] = [12, 40, 52, 56, 108, 124];
    let dib = u32::from_le_bytes([data[14], data[15], data[16], data[17]]);
    if !SIZES.contains(&dib) {
        let size = SIZES[usize::from(selector % 6)];
        data[14..18].copy_from_slice(&size.to_le_bytes());
    }
    let request = Request {
        sizes: vec![[1, 16, 64, 128][usize::from(selector / 6 % 4)]],
        ..Request::default()
    };
    let mut limits = Limits {
        max_pixels: 4_000_000,
        max_input_bytes: 8 << 20,
        max_decode_bytes: [u64::MAX, 1 << 10, 1 << 16, 1 << 20][usize::from(selector / 24 % 4)],
        ..Limits::default()
    };
    let mut refusals = 0;
    let result = loop {
        match thumbnail(&data, &request, &limits) {
            Err(Error::OverBudget { needed, allowed }) => {
                assert!(needed > allowed, "refused {needed} bytes within {allowed}");
                refusals += 1;
                assert!(refusals <= 2, "a third refusal, at {needed} bytes");
                limits.max_decode_bytes = needed;
            }
            result => break result,
        }
    };
    if let Err(Error::Internal(msg)) = result {
        panic!("internal error: {msg}");
    }
});
