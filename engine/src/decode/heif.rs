//! HEIC and AVIF through libheif (libheif-rs), behind the `heif` feature.
//!
//! Not written yet: the probe recognises the formats and refuses them as `unsupported` until
//! this decoder lands (issue 13).

use super::{DecodeBytes, Decoded};
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

fn not_yet(format: InputFormat) -> Error {
    Error::Unsupported(format!("{} input is not supported yet", format.name()))
}

pub(super) fn check_decodable(format: InputFormat) -> Result<(), Error> {
    Err(not_yet(format))
}

pub(super) fn header(format: InputFormat, _data: &[u8]) -> Result<ImageInfo, Error> {
    Err(not_yet(format))
}

pub(super) fn decode(
    _data: &[u8],
    info: &ImageInfo,
    _shrink: u32,
    _limits: &Limits,
) -> Result<Decoded, Error> {
    Err(not_yet(info.format))
}

pub(super) fn decode_bytes(_data: &[u8], info: &ImageInfo, _shrink: u32) -> DecodeBytes {
    let full = full_bytes(info);
    DecodeBytes {
        planned: full,
        full,
    }
}

pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    info.pixels() * 4
}
