//! What the caller asks for: sizes, fit, output format and encoder settings.

use crate::{Error, Limits};

/// How a thumbnail fits its N×N box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Keep the whole picture, longest side = N; never enlarges a smaller image.
    #[default]
    Inside,
    /// Fill the N×N box and centre-crop the overflow; never enlarges (an image smaller than
    /// the box in one dimension keeps that dimension).
    Cover,
}

/// Encoded output format.
///
/// Non-exhaustive: `OutputFormat::Avif` exists only in a build with the `avif` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutputFormat {
    /// Baseline (or progressive) JPEG, 4:2:0, alpha composited over the background.
    #[default]
    Jpeg,
    /// PNG, 8-bit, keeps alpha.
    Png,
    /// Lossy WebP, keeps alpha.
    Webp,
    /// Lossy AVIF (AV1 in HEIF, 8-bit 4:2:0), keeps alpha; through the system libheif and
    /// its aom encoder. Only with the `avif` feature.
    #[cfg(feature = "avif")]
    Avif,
}

impl OutputFormat {
    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            #[cfg(feature = "avif")]
            OutputFormat::Avif => "avif",
        }
    }

    /// MIME type, for HTTP and Cloud Storage `Content-Type`.
    pub fn mime_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            #[cfg(feature = "avif")]
            OutputFormat::Avif => "image/avif",
        }
    }
}

/// Resampling filter of the final, high-quality resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Lanczos, a = 3: sharpest, the usual choice for thumbnails (libvips' default).
    #[default]
    Lanczos3,
    /// Catmull-Rom bicubic.
    CatmullRom,
    /// Mitchell–Netravali bicubic: softer, fewer ringing artefacts.
    Mitchell,
    /// Hamming: bilinear cost, near-bicubic quality when downscaling.
    Hamming,
    /// Bilinear (triangle).
    Bilinear,
    /// Box (area average): fastest, softest.
    Box,
}

/// A thumbnail request: one decode, one output per size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Box sides in pixels (each output fits an N×N box). Default `[256]`.
    pub sizes: Vec<u32>,
    /// Default [`Fit::Inside`].
    pub fit: Fit,
    /// Default [`OutputFormat::Jpeg`].
    pub format: OutputFormat,
    /// Encoder quality 1–100 for JPEG, WebP and AVIF (ignored by PNG), on JPEG's scale: AVIF
    /// maps it so that the same number gives about JPEG's visual quality. Default 80.
    pub quality: u8,
    /// Progressive JPEG. Default `false` (baseline decodes fastest in browsers for small images).
    pub progressive: bool,
    /// Default [`Filter::Lanczos3`].
    pub filter: Filter,
    /// Colour that transparent pixels are composited over for JPEG output. Default white.
    pub background: [u8; 3],
}

impl Default for Request {
    fn default() -> Self {
        Request {
            sizes: vec![256],
            fit: Fit::Inside,
            format: OutputFormat::Jpeg,
            quality: 80,
            progressive: false,
            filter: Filter::Lanczos3,
            background: [255, 255, 255],
        }
    }
}

impl Request {
    /// Checks the request against the limits (sizes present, non-zero, not over
    /// [`Limits::max_output_dimension`]; quality 1–100).
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        if self.sizes.is_empty() {
            return Err(Error::InvalidRequest("no thumbnail size given".into()));
        }
        for &size in &self.sizes {
            if size == 0 || size > limits.max_output_dimension {
                return Err(Error::InvalidRequest(format!(
                    "size {size} is outside 1..={}",
                    limits.max_output_dimension
                )));
            }
        }
        if !(1..=100).contains(&self.quality) {
            return Err(Error::InvalidRequest(format!(
                "quality {} is outside 1..=100",
                self.quality
            )));
        }
        Ok(())
    }
}

/// One encoded thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The box side it was made for (one of [`Request::sizes`]).
    pub size: u32,
    /// Output width in pixels (upright, after EXIF orientation).
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Encoded format.
    pub format: OutputFormat,
    /// The encoded file.
    pub data: Vec<u8>,
}
