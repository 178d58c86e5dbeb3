//! The pipeline's stages one by one, for benchmarks and capacity tools that time each stage.
//! [`crate::thumbnail`] is the API for everything else.

use crate::bitmap::Bitmap;
use crate::{
    color, decode, encode, resize, Error, Filter, Fit, ImageInfo, Limits, OutputFormat, Request,
};

pub use crate::decode::DecodeBytes;

/// Decoded (possibly shrunk-on-load) pixels in the file's own colour space.
#[derive(Debug, Clone)]
pub struct Pixels {
    bitmap: Bitmap,
    icc: Option<Vec<u8>>,
}

impl Pixels {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.bitmap.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.bitmap.height
    }
    /// Channels per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA or CMYK).
    pub fn channels(&self) -> usize {
        self.bitmap.model.channels()
    }
    /// Bytes held by the pixel buffer.
    pub fn byte_len(&self) -> usize {
        self.bitmap.data.len()
    }
}

/// Integer factor the decoder may box-reduce by on load for a `target` output (libvips' rule:
/// leave a factor of two for the final filter; progressive JPEGs go to 1/8 earlier).
pub fn shrink_on_load_factor(info: &ImageInfo, target: (u32, u32)) -> u32 {
    resize::shrink_for(info, target)
}

/// Whether a JPEG decoded with a shrink of 2 or more takes the reduced decoder (memory: the
/// reduced image) rather than falling back to the full decode (memory: the full image), judged
/// from its headers and scan layout without decoding. A file cut inside its scans still takes
/// the reduced decoder; one cut before some component's first scan, 12-bit, or with odd
/// sampling ratios does not. For admission estimates; false for non-JPEG input.
pub fn jpeg_reduced_decode_expected(data: &[u8], info: &ImageInfo) -> bool {
    decode::jpeg_reduced_decode_expected(data, info)
}

/// The bytes a decode of `data` (probed as `info`) with shrink-on-load factor `shrink` holds at
/// its peak, on the path it plans and at full size, read from the headers (a JPEG's up to its
/// first scan) without decoding: the bounds [`Limits::max_decode_bytes`] is checked against,
/// for admission estimates.
pub fn decode_bytes(data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    decode::decode_bytes(data, info, shrink)
}

/// Stage 1: decode, reducing by up to `shrink` while decoding where the format allows.
pub fn decode(data: &[u8], info: &ImageInfo, shrink: u32) -> Result<Pixels, Error> {
    let decoded = decode::decode(data, info, shrink, &Limits::default())?;
    Ok(Pixels {
        bitmap: decoded.bitmap,
        icc: decoded.icc,
    })
}

/// Stage 1 for JPEG through the reduced-scale decoder only, at 1/`scale` (2, 4 or 8), without
/// the fallback to the full decoder that [`decode`] takes: for per-scale benchmarks and the
/// `jpeg_scaled` fuzz target. Errors name what the reduced decoder declined.
pub fn decode_jpeg_reduced(data: &[u8], info: &ImageInfo, scale: u32) -> Result<Pixels, Error> {
    Ok(Pixels {
        bitmap: decode::jpeg_reduced_only(data, info, scale)?,
        icc: None,
    })
}

/// Stage 2: resize to exactly `target` (centre-cropping for [`Fit::Cover`]).
pub fn resize(
    pixels: &Pixels,
    target: (u32, u32),
    fit: Fit,
    filter: Filter,
) -> Result<Pixels, Error> {
    Ok(Pixels {
        bitmap: resize::resize(&pixels.bitmap, target, fit, filter)?,
        icc: pixels.icc.clone(),
    })
}

/// Stages 3–4: convert to sRGB, flatten alpha for JPEG, encode.
pub fn encode(pixels: &Pixels, request: &Request) -> Result<Vec<u8>, Error> {
    let mut bitmap = color::to_srgb(pixels.bitmap.clone(), pixels.icc.as_deref());
    if request.format == OutputFormat::Jpeg {
        bitmap = encode::flatten(bitmap, request.background);
    }
    encode::encode(&bitmap, request)
}

/// Upper bound of the heap an encoder holds for a `width`×`height` output in `format`, beyond
/// the pixels it is given and the file it returns: the AVIF encoder's (libheif and aom, in C,
/// tens of bytes a pixel); 0 for JPEG, PNG and WebP, whose few buffers a caller's per-size
/// allowance for the output image covers.
pub fn encoder_bytes(format: OutputFormat, width: u32, height: u32) -> u64 {
    encode::encoder_bytes(format, width, height)
}
