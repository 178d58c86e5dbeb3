//! Fuzzes the GIF decoder through the engine's entry point: every input is made a GIF by
//! putting "GIF89a" in front of it (unless it has a GIF signature already), so the fuzzer spends
//! its time in the logical screen descriptor, the blocks before the first frame and the LZW
//! data, not in finding the magic. Seeds: corpus/formats/*.gif with their first six bytes
//! removed, or as they are. A panic, an `internal` error, or an `over_budget` refusal that does
//! not converge when repeated with the allowance it reported (as the worker does) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thumbd_engine::{thumbnail, Error, Limits, Request};

fuzz_target!(|input: &[u8]| {
    let mut data = Vec::with_capacity(input.len() + 6);
    if !(input.starts_with(b"GIF87a") || input.starts_with(b"GIF89a")) {
        data.extend_from_slice(b"GIF89a");
    }
    data.extend_from_slice(input);
    let selector = input.last().copied().unwrap_or(0);
    let request = Request {
        sizes: vec![[1, 16, 64, 128][usize::from(selector % 4)]],
        ..Request::default()
    };
    let mut limits = Limits {
        max_pixels: 4_000_000,
        max_input_bytes: 8 << 20,
        max_decode_bytes: [u64::MAX, 1 << 10, 1 << 16, 1 << 20][usize::from(selector / 4 % 4)],
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
