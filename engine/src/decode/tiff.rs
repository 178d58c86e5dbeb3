//! TIFF through the tiff crate: the first page or a reduced-resolution page.
//!
//! Not written yet: the probe recognises the format and refuses it as `unsupported` until
//! this decoder lands (issue 13).

use super::{DecodeBytes, Decoded};
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

fn not_yet() -> Error {
    Error::Unsupported(format!(
        "{} input is not supported yet",
        InputFormat::Tiff.name()
    ))
}

pub(super) fn header(_data: &[u8]) -> Result<ImageInfo, Error> {
    Err(not_yet())
}

pub(super) fn decode(
    _data: &[u8],
    _info: &ImageInfo,
    _shrink: u32,
    _limits: &Limits,
) -> Result<Decoded, Error> {
    Err(not_yet())
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
