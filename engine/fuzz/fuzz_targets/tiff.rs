//! Fuzzes the TIFF decoder: every input is made a little-endian TIFF (its first four bytes
//! replaced by `II*\0`), then goes through the engine's check in `common.rs`. Seed with
//! `corpus/formats/*.tif` (big-endian seeds become little-endian ones; the mutator explores both
//! from there, as `MM\0*` is reachable only through `thumbnail`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::check_as(b"II*\0", data));
