//! Decoding: compressed bytes → [`Bitmap`] (possibly already shrunk) plus the metadata the
//! later stages need (ICC profile, EXIF orientation).

mod jpeg;
mod jpeg_scaled;
mod png;

use crate::bitmap::Bitmap;
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::Error;

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

/// Decodes `data`, reducing by up to `shrink` (integer box average) while decoding where the
/// decoder allows it. The result is never smaller than `ceil(side / shrink)`.
pub(crate) fn decode(data: &[u8], info: &ImageInfo, shrink: u32) -> Result<Decoded, Error> {
    match info.format {
        InputFormat::Jpeg => jpeg::decode(data, info, shrink),
        InputFormat::Png => png::decode(data, info, shrink),
    }
}
