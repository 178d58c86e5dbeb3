//! Decoding: compressed bytes → [`Bitmap`] (possibly already shrunk) plus the metadata the
//! later stages need (ICC profile, EXIF orientation).

mod bmp;
mod gif;
mod heif;
mod jpeg;
mod jpeg_scaled;
mod png;
mod tiff;
mod webp;

use crate::bitmap::Bitmap;
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

/// A file of `corpus/formats/`, for the decoders' unit tests.
#[cfg(test)]
fn formats_corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/../corpus/formats/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A decoded image and the metadata that decides its colour and orientation.
pub(crate) struct Decoded {
    /// Pixels in the file's own colour space, possibly reduced by the shrink factor.
    pub bitmap: Bitmap,
    /// Embedded ICC profile, if any.
    pub icc: Option<Vec<u8>>,
    /// EXIF orientation (1 when absent or unreadable).
    pub orientation: Orientation,
}

/// The reduced-scale JPEG decoder alone (no fallback to the full decoder), at 1/`scale`.
pub(crate) fn jpeg_reduced_only(
    data: &[u8],
    info: &ImageInfo,
    scale: u32,
) -> Result<Bitmap, Error> {
    if info.format != InputFormat::Jpeg {
        return Err(Error::Unsupported("not a JPEG".into()));
    }
    jpeg::decode_reduced_only(data, info, scale)
}

/// Whether a reduced JPEG decode of `data` would run in the reduced decoder (see
/// [`crate::stages::jpeg_reduced_decode_expected`]).
pub(crate) fn jpeg_reduced_decode_expected(data: &[u8], info: &ImageInfo) -> bool {
    info.format == InputFormat::Jpeg && jpeg::reduced_decode_expected(data, info)
}

/// A decoder error known only by its message: `Truncated` when the message says the data ran
/// out (contains one of `ran_out`, the decoder's own wording), `Corrupt` otherwise.
fn by_message(format: &'static str, detail: String, ran_out: &[&str]) -> Error {
    if ran_out.iter().any(|words| detail.contains(words)) {
        Error::Truncated { format, detail }
    } else {
        Error::Corrupt { format, detail }
    }
}

/// Decodes `data`, reducing by up to `shrink` (integer box average) while decoding where the
/// decoder allows it. The result is never smaller than `ceil(side / shrink)`. Each decode path
/// is checked against `limits.max_decode_bytes` (with the bounds of [`decode_bytes`]) before
/// it allocates.
pub(crate) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    match info.format {
        InputFormat::Jpeg => jpeg::decode(data, info, shrink, limits),
        InputFormat::Png => png::decode(data, info, shrink, limits),
        InputFormat::Webp => webp::decode(data, info, shrink, limits),
        InputFormat::Gif => gif::decode(data, info, shrink, limits),
        InputFormat::Tiff => tiff::decode(data, info, shrink, limits),
        InputFormat::Bmp => bmp::decode(data, info, shrink, limits),
        InputFormat::Heif | InputFormat::Avif => heif::decode(data, info, shrink, limits),
    }
}

/// The header of a format other than JPEG and PNG (whose headers [`crate::probe`] reads
/// itself): dimensions and channels, checked before anything large is allocated.
pub(crate) fn header(format: InputFormat, data: &[u8]) -> Result<ImageInfo, Error> {
    match format {
        InputFormat::Webp => webp::header(data),
        InputFormat::Gif => gif::header(data),
        InputFormat::Tiff => tiff::header(data),
        InputFormat::Bmp => bmp::header(data),
        InputFormat::Heif | InputFormat::Avif => heif::header(format, data),
        InputFormat::Jpeg | InputFormat::Png => Err(Error::Internal(
            "JPEG and PNG headers are the probe's".into(),
        )),
    }
}

/// Refuses, from the header alone, what this build cannot decode (HEIF and AVIF without the
/// `heif` feature).
pub(crate) fn check_decodable(info: &ImageInfo) -> Result<(), Error> {
    match info.format {
        InputFormat::Heif | InputFormat::Avif => heif::check_decodable(info.format),
        _ => Ok(()),
    }
}

/// Upper bounds of the bytes a decode holds at its peak (pixels and decoder buffers, not the
/// compressed input), from the headers: what [`Limits::max_decode_bytes`] is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBytes {
    /// The path the decode takes at this shrink-on-load factor: a JPEG's reduced decoder, a
    /// PNG's row-by-row shrink, or the full-size image.
    pub planned: u64,
    /// The full-size decode: what a JPEG falls back to when the reduced decoder declines it
    /// (`planned` when the plan is full size already).
    pub full: u64,
}

/// The bounds of [`DecodeBytes`] for `data` (probed as `info`) decoded with `shrink`.
pub(crate) fn decode_bytes(data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    match info.format {
        InputFormat::Jpeg => {
            let full = jpeg::full_bytes(data, info);
            let planned = jpeg::reduced_scale(info, shrink)
                .map_or(full, |scale| jpeg::reduced_bytes(info, scale));
            DecodeBytes { planned, full }
        }
        InputFormat::Png => DecodeBytes {
            planned: png::decode_bytes(info, shrink, png::interlaced(data)),
            full: png::decode_bytes(info, 1, false),
        },
        InputFormat::Webp => webp::decode_bytes(data, info, shrink),
        InputFormat::Gif => gif::decode_bytes(data, info, shrink),
        InputFormat::Tiff => tiff::decode_bytes(data, info, shrink),
        InputFormat::Bmp => bmp::decode_bytes(data, info, shrink),
        InputFormat::Heif | InputFormat::Avif => heif::decode_bytes(data, info, shrink),
    }
}

/// Upper bound of a full-size decode from the header alone (see
/// [`ImageInfo::decode_budget_bytes`]).
pub(crate) fn full_decode_bytes(info: &ImageInfo) -> u64 {
    match info.format {
        // An arithmetic-coded file decodes at full size in the reduced decoder.
        InputFormat::Jpeg => jpeg::full_bytes_with(info, true).max(jpeg::reduced_bytes(info, 1)),
        InputFormat::Png => png::decode_bytes(info, 1, false),
        InputFormat::Webp => webp::full_bytes(info),
        InputFormat::Gif => gif::full_bytes(info),
        InputFormat::Tiff => tiff::full_bytes(info),
        InputFormat::Bmp => bmp::full_bytes(info),
        InputFormat::Heif | InputFormat::Avif => heif::full_bytes(info),
    }
}
