//! The resize plan (pure arithmetic, property-tested) and its execution with fast_image_resize.
//!
//! Large reductions go in two steps, as libvips does: a cheap area average (box) down to about
//! twice the target, then the high-quality filter for the last factor of about two.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{CropBox, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::bitmap::{Bitmap, ColorModel};
use crate::probe::{ImageInfo, JpegCoding};
use crate::request::{Filter, Fit};
use crate::Error;

/// Output dimensions of a `size`×`size` thumbnail of a `width`×`height` image.
///
/// `Inside` keeps the aspect ratio (longest side = `size`, never enlarged); `Cover` fills the
/// box and crops (each side = `size`, or the source side when that is smaller). Never zero.
pub fn plan(width: u32, height: u32, size: u32, fit: Fit) -> (u32, u32) {
    let (w, h, n) = (u64::from(width), u64::from(height), u64::from(size.max(1)));
    match fit {
        Fit::Cover => (width.min(size).max(1), height.min(size).max(1)),
        Fit::Inside if w <= n && h <= n => (width.max(1), height.max(1)),
        Fit::Inside if w >= h => (size, div_round(h * n, w).clamp(1, n) as u32),
        Fit::Inside => (div_round(w * n, h).clamp(1, n) as u32, size),
    }
}

fn div_round(a: u64, b: u64) -> u64 {
    (a + b / 2) / b
}

/// The shrink-on-load factor for `info` and the largest `target`: libvips' rule
/// ([`shrink_on_load_factor`]), except that a progressive JPEG is decoded at 1/8 as soon as that
/// still leaves [`PROGRESSIVE_DC_GAP`] for the final filter. A progressive file's 1/8 decode reads
/// only its DC scans, about a tenth of the work of 1/4, which must read every AC scan
/// (measured: 4 ms against 69 ms on a 6.3 MP photo).
pub(crate) fn shrink_for(info: &ImageInfo, target: (u32, u32)) -> u32 {
    let shrink = shrink_on_load_factor(info.width, info.height, target);
    let dc_only_fits = |side: u32, target: u32| {
        f64::from(side) / 8.0 >= PROGRESSIVE_DC_GAP * f64::from(target.max(1))
    };
    if shrink < 8
        && info.jpeg_coding.is_some_and(JpegCoding::is_progressive)
        && dc_only_fits(info.width, target.0)
        && dc_only_fits(info.height, target.1)
    {
        8
    } else {
        shrink
    }
}

/// The smallest factor left for the final filter after a DC-only decode of a progressive JPEG.
/// Measured against vipsthumbnail on the progressive photos of `../shared/corpus` at 256 px:
/// at 1.4 every file's PSNR stays within 3.4 dB of the 2× rule's (most rise: the 6 MP
/// `lomiri16_life` goes from 29.6 to 30.3 dB); at 1.25 the 2560 px wallpapers lose 6–9 dB.
pub(crate) const PROGRESSIVE_DC_GAP: f64 = 1.4;

/// Integer factor by which the decoder may box-reduce `width`×`height` on load while leaving
/// at least a factor of two for the final filter to reach `target` (the libvips rule).
pub(crate) fn shrink_on_load_factor(width: u32, height: u32, target: (u32, u32)) -> u32 {
    let fx = width / target.0.max(1);
    let fy = height / target.1.max(1);
    // Capped so the u32 box sums of `BoxShrinker` cannot overflow (64² × 255² < 2³²).
    (fx.min(fy) / 2).clamp(1, 64)
}

/// Sides shorter than this are padded by [`pad_narrow_sides`].
const NARROW_SIDE: u32 = 16;

/// For an image with a side under [`NARROW_SIDE`] px, a copy with that side extended on both
/// ends by replicated edge pixels (as far as the filter reaches), and the crop box moved to
/// match. `None` for every other image.
fn pad_narrow_sides(
    src: &Bitmap,
    crop: CropBox,
    (dst_w, dst_h): (u32, u32),
) -> Option<(Bitmap, CropBox)> {
    // Lanczos3 reaches 3 output pixels, i.e. 3 × scale source pixels, each side.
    let reach = |side: u32, crop: f64, dst: u32| -> u32 {
        if side >= NARROW_SIDE {
            return 0;
        }
        (3.0 * (crop / f64::from(dst.max(1))).max(1.0))
            .ceil()
            .min(256.0) as u32
            + 1
    };
    let px = reach(src.width, crop.width, dst_w);
    let py = reach(src.height, crop.height, dst_h);
    if px == 0 && py == 0 {
        return None;
    }
    let channels = src.model.channels();
    let (w, h) = (src.width as usize, src.height as usize);
    let (pw, ph) = (w + 2 * px as usize, h + 2 * py as usize);
    let mut data = Vec::with_capacity(pw * ph * channels);
    for y in 0..ph {
        let sy = y.saturating_sub(py as usize).min(h - 1);
        let row = &src.data[sy * w * channels..(sy + 1) * w * channels];
        let (first, last) = (&row[..channels], &row[row.len() - channels..]);
        for _ in 0..px {
            data.extend_from_slice(first);
        }
        data.extend_from_slice(row);
        for _ in 0..px {
            data.extend_from_slice(last);
        }
    }
    let crop = CropBox {
        left: crop.left + f64::from(px),
        top: crop.top + f64::from(py),
        ..crop
    };
    Some((Bitmap::new(pw as u32, ph as u32, src.model, data), crop))
}

thread_local! {
    /// One resizer per pool thread: it keeps its convolution buffers between images, up to
    /// [`RETAINED_RESIZER_BYTES`].
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// The most a thread's resizer keeps between images. Its buffers grow to the largest image
/// the thread has seen (the first pass of a 1024 px thumbnail of a 5120×2880 RGBA frame: 33
/// MiB; a premultiplied copy of the source: as large as the source) and would stay that large
/// for the life of the thread, out of sight of any memory budget: in a burst of the largest
/// corpus photos at 1024 px they held 100 MiB of the worker's 259 MiB peak heap. Buffers
/// above this are freed after the image; below it (every 256 px thumbnail of the corpus)
/// they are reused.
pub(crate) const RETAINED_RESIZER_BYTES: usize = 4 << 20;

/// Resizes (and for `Cover`, centre-crops) `src` to exactly `dst_w`×`dst_h`.
pub(crate) fn resize(
    src: &Bitmap,
    (dst_w, dst_h): (u32, u32),
    fit: Fit,
    filter: Filter,
) -> Result<Bitmap, Error> {
    let crop = match fit {
        Fit::Cover => {
            CropBox::fit_src_into_dst_size(src.width, src.height, dst_w, dst_h, Some((0.5, 0.5)))
        }
        Fit::Inside => CropBox {
            left: 0.0,
            top: 0.0,
            width: f64::from(src.width),
            height: f64::from(src.height),
        },
    };
    let whole = crop.width == f64::from(src.width) && crop.height == f64::from(src.height);
    if whole && (src.width, src.height) == (dst_w, dst_h) {
        return Ok(src.clone());
    }
    // A narrow side is padded with copies of its edge pixels, which is how libvips extends
    // the border; the convolution here would instead renormalise the kernel at the border,
    // and where the border is most of the image (a 6 px wide bar) that leaves a column 11
    // levels apart from libvips'.
    let padded = pad_narrow_sides(src, crop, (dst_w, dst_h));
    let (src, crop) = match &padded {
        Some((image, crop)) => (image, *crop),
        None => (src, crop),
    };
    let pixel_type = match src.model {
        ColorModel::Gray => PixelType::U8,
        ColorModel::GrayAlpha => PixelType::U8x2,
        ColorModel::Rgb => PixelType::U8x3,
        ColorModel::Rgba | ColorModel::Cmyk => PixelType::U8x4,
    };
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("resize: {e}"));
    let source =
        ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| fail(&e))?;
    // Premultiply so transparent pixels' colour does not bleed (no dark fringes). CMYK has no
    // alpha even though it has four channels.
    let base = ResizeOptions::new().use_alpha(src.model.has_alpha());
    let final_alg = ResizeAlg::Convolution(filter_type(filter));

    RESIZER.with_borrow_mut(|resizer| {
        let resized = resize_with(resizer, &source, base, final_alg, crop, (dst_w, dst_h));
        if resizer.size_of_internal_buffers() > RETAINED_RESIZER_BYTES {
            resizer.reset_internal_buffers();
        }
        Ok(Bitmap::new(dst_w, dst_h, src.model, resized?))
    })
}

/// The resize itself: one high-quality pass, or a box pass to twice the target first when the
/// reduction is large.
fn resize_with(
    resizer: &mut Resizer,
    source: &ImageRef,
    base: ResizeOptions,
    final_alg: ResizeAlg,
    crop: CropBox,
    (dst_w, dst_h): (u32, u32),
) -> Result<Vec<u8>, Error> {
    let pixel_type = source.pixel_type();
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("resize: {e}"));
    let big = crop.width / f64::from(dst_w) > 3.0 && crop.height / f64::from(dst_h) > 3.0;
    let mut dst = Image::new(dst_w, dst_h, pixel_type);
    if big {
        let mut mid = Image::new(dst_w * 2, dst_h * 2, pixel_type);
        let opts = base
            .crop(crop.left, crop.top, crop.width, crop.height)
            .resize_alg(ResizeAlg::Convolution(FilterType::Box));
        resizer
            .resize(source, &mut mid, &opts)
            .map_err(|e| fail(&e))?;
        let opts = base.resize_alg(final_alg);
        resizer
            .resize(&mid, &mut dst, &opts)
            .map_err(|e| fail(&e))?;
    } else {
        let opts = base
            .crop(crop.left, crop.top, crop.width, crop.height)
            .resize_alg(final_alg);
        resizer
            .resize(source, &mut dst, &opts)
            .map_err(|e| fail(&e))?;
    }
    Ok(dst.into_vec())
}

fn filter_type(filter: Filter) -> FilterType {
    match filter {
        Filter::Lanczos3 => FilterType::Lanczos3,
        Filter::CatmullRom => FilterType::CatmullRom,
        Filter::Mitchell => FilterType::Mitchell,
        Filter::Hamming => FilterType::Hamming,
        Filter::Bilinear => FilterType::Bilinear,
        Filter::Box => FilterType::Box,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_examples() {
        assert_eq!(plan(4352, 2448, 256, Fit::Inside), (256, 144));
        assert_eq!(plan(2448, 4352, 256, Fit::Inside), (144, 256));
        assert_eq!(plan(100, 50, 256, Fit::Inside), (100, 50));
        assert_eq!(plan(50000, 1, 256, Fit::Inside), (256, 1));
        assert_eq!(plan(4000, 3000, 256, Fit::Cover), (256, 256));
        assert_eq!(plan(1, 118, 256, Fit::Cover), (1, 118));
    }

    #[test]
    fn shrink_leaves_a_factor_of_two() {
        assert_eq!(shrink_on_load_factor(4000, 3000, (256, 192)), 7);
        assert_eq!(shrink_on_load_factor(600, 400, (256, 171)), 1);
    }

    #[test]
    fn progressive_jpegs_go_to_dc_only_with_a_smaller_gap() {
        let info = |width, height, jpeg_coding| ImageInfo {
            format: crate::InputFormat::Jpeg,
            width,
            height,
            channels: 3,
            jpeg_coding,
            adobe_transform: None,
        };
        // 3088×2056 → 256×170: 1/8 gives 386×257, 1.5× the target.
        let target = plan(3088, 2056, 256, Fit::Inside);
        let progressive = Some(JpegCoding::Progressive);
        assert_eq!(shrink_for(&info(3088, 2056, progressive), target), 8);
        assert_eq!(
            shrink_for(&info(3088, 2056, Some(JpegCoding::Baseline)), target),
            6
        );
        // 2560×1600: 1/8 would leave 1.25×, too little; the 2× rule stands.
        let target = plan(2560, 1600, 256, Fit::Inside);
        assert_eq!(shrink_for(&info(2560, 1600, progressive), target), 5);
    }

    #[test]
    fn resize_keeps_flat_colour_and_alpha_edges_clean() {
        // Opaque red next to fully transparent black: no dark fringe after premultiplied resize.
        let mut data = Vec::new();
        for x in 0..64 {
            data.extend_from_slice(if x < 32 {
                &[255, 0, 0, 255]
            } else {
                &[0, 0, 0, 0]
            });
        }
        let src = Bitmap::new(64, 64, ColorModel::Rgba, data.repeat(64));
        let out = resize(&src, (16, 16), Fit::Inside, Filter::Lanczos3).unwrap();
        for px in out.data.chunks_exact(4).filter(|p| p[3] > 16) {
            assert!(px[0] > 240, "fringe {px:?}");
        }
    }

    #[test]
    fn a_large_resize_does_not_leave_its_buffers_behind() {
        let retained = || RESIZER.with_borrow(|r| r.size_of_internal_buffers());
        // A small thumbnail's buffers are kept for the next image...
        let small = Bitmap::new(600, 400, ColorModel::Rgba, vec![128; 600 * 400 * 4]);
        resize(&small, (256, 171), Fit::Inside, Filter::Lanczos3).unwrap();
        let kept = retained();
        assert!(kept > 0 && kept <= RETAINED_RESIZER_BYTES, "{kept}");
        // ...a large one's (premultiplied copy of 4000×3000 RGBA alone: 46 MiB) are not.
        let large = Bitmap::new(4000, 3000, ColorModel::Rgba, vec![128; 4000 * 3000 * 4]);
        let out = resize(&large, (1024, 768), Fit::Inside, Filter::Lanczos3).unwrap();
        assert_eq!((out.width, out.height), (1024, 768));
        assert!(retained() <= RETAINED_RESIZER_BYTES, "{}", retained());
    }
}
