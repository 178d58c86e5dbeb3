//! Fuzzes the engine's entry point, `thumbd_engine::thumbnail`, on arbitrary bytes (the check is
//! in `common.rs`, shared with the per-format targets).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::check(data));
