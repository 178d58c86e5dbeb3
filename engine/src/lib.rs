//! thumbd's engine: image bytes in, encoded thumbnails out.
//!
//! No I/O, no async, no cloud: the batch CLI, the Pub/Sub worker and the benchmarks all call
//! [`thumbnail`] on bytes they fetched themselves, one image per thread.
//!
//! # Layout
//! The modules follow the data flow of one image:
//!
//! 1. [`probe`] — sniff the format from magic bytes, read the header, enforce [`Limits`]
//!    before any large allocation;
//! 2. `decode` — JPEG (zune-jpeg) or PNG (png), shrinking on load where the decoder allows;
//! 3. `resize` — the [`plan`] per size, then box pre-reduction and the final filter
//!    (fast_image_resize, premultiplied alpha);
//! 4. `color` — ICC profile (RGB, gray, CMYK) to sRGB with moxcms, on the small image;
//! 5. `orient` — EXIF orientation applied to the small image;
//! 6. `encode` — JPEG, PNG, WebP or (feature `avif`) AVIF, metadata stripped.
//!
//! # Example
//! ```
//! use thumbd_engine::{thumbnail, Limits, Request};
//! # let png = {
//! #     let mut out = Vec::new();
//! #     let mut e = png::Encoder::new(&mut out, 600, 400);
//! #     e.set_color(png::ColorType::Rgb);
//! #     let mut w = e.write_header().unwrap();
//! #     w.write_image_data(&vec![128u8; 600 * 400 * 3]).unwrap();
//! #     w.finish().unwrap();
//! #     out
//! # };
//! let request = Request { sizes: vec![256, 64], ..Request::default() };
//! let thumbs = thumbnail(&png, &request, &Limits::default())?;
//! assert_eq!((thumbs[0].width, thumbs[0].height), (256, 171));
//! assert_eq!((thumbs[1].width, thumbs[1].height), (64, 43));
//! # Ok::<(), thumbd_engine::Error>(())
//! ```
#![deny(missing_docs)]

mod bitmap;
mod color;
mod decode;
mod encode;
mod error;
#[cfg(any(feature = "heif", feature = "avif"))]
mod libheif;
mod limits;
mod orient;
mod probe;
mod request;
mod resize;
pub mod stages;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use error::{Error, ErrorKind};
pub use limits::Limits;
pub use probe::{probe, ImageInfo, InputFormat, JpegCoding};
pub use request::{Filter, Fit, OutputFormat, Request, Thumbnail};
pub use resize::plan;

/// Makes one thumbnail per requested size from one decode of `data`.
///
/// Outputs come back in the order of `request.sizes`. A panic inside a decoder or encoder is
/// caught and reported as [`Error::Internal`], so one hostile file cannot take down a batch.
/// With [`Limits::max_decode_bytes`] set, a decode path that needs more is refused with
/// [`Error::OverBudget`] before it allocates.
pub fn thumbnail(data: &[u8], request: &Request, limits: &Limits) -> Result<Vec<Thumbnail>, Error> {
    request.validate(limits)?;
    match catch_unwind(AssertUnwindSafe(|| run(data, request, limits))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Internal(format!("panic: {message}")))
        }
    }
}

fn run(data: &[u8], request: &Request, limits: &Limits) -> Result<Vec<Thumbnail>, Error> {
    let info = probe(data, limits)?;
    // Every size is planned on the stored (pre-orientation) dimensions: boxes are square, so
    // orientation only swaps the result.
    let targets: Vec<(u32, u32)> = request
        .sizes
        .iter()
        .map(|&size| plan(info.width, info.height, size, request.fit))
        .collect();
    let largest = *targets
        .iter()
        .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
        .expect("validated: at least one size");
    let shrink = resize::shrink_for(&info, largest);
    let decoded = decode::decode(data, &info, shrink, limits)?;

    let mut thumbnails = Vec::with_capacity(targets.len());
    for (&size, &target) in request.sizes.iter().zip(&targets) {
        let small = resize::resize(&decoded.bitmap, target, request.fit, request.filter)?;
        let small = color::to_srgb(small, decoded.icc.as_deref());
        let mut small = decoded.orientation.apply(small);
        if request.format == OutputFormat::Jpeg {
            small = encode::flatten(small, request.background);
        }
        let data = encode::encode(&small, request)?;
        thumbnails.push(Thumbnail {
            size,
            width: small.width,
            height: small.height,
            format: request.format,
            data,
        });
    }
    Ok(thumbnails)
}
