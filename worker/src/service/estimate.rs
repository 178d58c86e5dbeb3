//! How many bytes the engine holds at once for one image, from its header and the request:
//! the admission reservation of [`super::admission`].
//!
//! The engine shrinks on load, so the size of the decode depends on the path it takes, not on
//! the full image: a 24 MP JPEG made into a 256 px thumbnail is decoded at 1/8 scale (0.4 MP),
//! a large non-interlaced PNG is box-reduced row by row while it inflates. This mirrors the
//! engine's choices with its public API ([`thumbd_engine::plan`],
//! [`thumbd_engine::stages::shrink_on_load_factor`]) plus the rule of `decode/jpeg.rs`
//! (`dct_scale`: 1/8 when the shrink factor is at least 8, 1/4 when at least 4, 1/2 when at
//! least 2, else the full decode) and of `decode/png.rs` (row-by-row shrink unless interlaced),
//! and then bounds each buffer of that path from above. The decode stage's bounds are the
//! engine's own ([`thumbd_engine::stages::decode_bytes`]), the ones it checks its decode
//! allowance against:
//!
//! | path | buffers counted |
//! |---|---|
//! | JPEG 1/8, 1/4, 1/2 (reduced decoder) | output pixels, one plane per component at the reduced scale, and for progressive files the coefficient store (DC only at 1/8; 64 × i16 per block at 1/4 and 1/2, counted as if no component were subsampled) |
//! | JPEG full (zune-jpeg) | output pixels, two MCU rows per component; when the file is progressive or its first scan lacks a component: 64 × i16 per block per component (as if unsubsampled) |
//! | PNG row shrink | output pixels, the box sums, decoder rows |
//! | PNG full (interlaced, or no shrink) | the full frame, plus the shrunk copy |
//! | TIFF | the engine's bound for its page and path; the decoded image at 1/8, 1/4 or 1/2 as for JPEG (a JPEG-compressed page is reduced by the JPEG decoder's scale, then by whole box steps) |
//! | every path, after the decode | the decoded pixels, a premultiplied copy, the resizer's intermediate images, colour and orientation copies, encoded outputs |
//! | AVIF output | the encoder's own buffers per size ([`thumbd_engine::stages::encoder_bytes`]: libheif and aom allocate tens of bytes a pixel in C) |
//!
//! | JPEG the reduced decoder will decline | the larger of the reduced decode and the full decode: [`thumbd_engine::stages::jpeg_reduced_decode_expected`] reads the headers and the scan layout (no decoding) and finds a file cut before some component's first scan, 12-bit precision, odd sampling ratios, tables a scan names but the file never defines; zune-jpeg then decodes it in full after the reduced decoder's buffers are freed. A file cut inside its scans is decoded at reduced scale (the rest grey, as libjpeg renders it) |
//!
//! It is checked against the engine's measured peak on every corpus image by
//! `cargo run --release -p thumbd --example engine-peak -- corpus/full` (prints each image's
//! peak and estimate; exits 1 if any image exceeds its estimate). The peak counts C's heap
//! too (the example interposes `malloc`), so with `--features heif,avif` and
//! `--format avif` it covers libheif, libde265, dav1d and aom.
//!
//! # What the headers do not show
//! The reduced decoder also declines a few kinds of damage inside scans: a block index outside
//! the frame, progressive refinements out of sequence. The header check cannot see them
//! without decoding. The worker gives the engine the estimate's decode bound as its allowance
//! (`Limits::max_decode_bytes`), so the engine refuses the full-size decode such a file falls
//! back to (`OverBudget`) before allocating it; the worker then reserves
//! [`estimate_declined`] and runs it again (`service::process`).

use thumbd_engine::stages::encoder_bytes;
use thumbd_engine::{plan, ImageInfo, InputFormat, JpegCoding, Request};

/// Decoder state, tables, ICC/EXIF copies, colour transforms: a fixed allowance per image.
const PER_IMAGE_BYTES: u64 = 2 << 20;

/// The engine's path for one image and its byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateParts {
    /// Which decode path the engine will take (for logs and the measurement tool).
    pub path: &'static str,
    /// The engine's shrink-on-load factor for the largest requested size.
    pub shrink: u32,
    /// Bytes of the decoded (shrunk-on-load) pixels.
    pub decoded_bytes: u64,
    /// Upper bound of the decode stage's peak: the engine's allowance for the decode
    /// (`Limits::max_decode_bytes`), part of `engine_bytes`.
    pub decode_bytes: u64,
    /// Upper bound of the engine's peak heap for this image, compressed input excluded.
    pub engine_bytes: u64,
}

/// The bound for `info` (probed from `data`) thumbnailed with `request`.
pub fn estimate(info: &ImageInfo, data: &[u8], request: &Request) -> EstimateParts {
    estimate_path(info, data, request, false)
}

/// The bound once the engine has found that the reduced decoder declines this JPEG (damage
/// inside its scans, which the header check cannot see): the full-size decode after it.
pub fn estimate_declined(info: &ImageInfo, data: &[u8], request: &Request) -> EstimateParts {
    estimate_path(info, data, request, true)
}

fn estimate_path(
    info: &ImageInfo,
    data: &[u8],
    request: &Request,
    declined: bool,
) -> EstimateParts {
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    let targets: Vec<(u32, u32)> = request
        .sizes
        .iter()
        .map(|&s| plan(info.width, info.height, s, request.fit))
        .collect();
    let largest = targets
        .iter()
        .copied()
        .max_by_key(|&(tw, th)| u64::from(tw) * u64::from(th))
        .unwrap_or((info.width, info.height));
    let shrink_factor = thumbd_engine::stages::shrink_on_load_factor(info, largest);
    let shrink = u64::from(shrink_factor);
    // The decode stage's own bounds, per path, from the engine that checks them.
    let bytes = thumbd_engine::stages::decode_bytes(data, info, shrink_factor);

    let (path, (dw, dh), channels, decode_peak) = match info.format {
        InputFormat::Jpeg => {
            // zune-jpeg hands out gray, RGB or 4-channel CMYK/YCCK.
            let c = match info.channels {
                1 => 1,
                4 => 4,
                _ => 3,
            };
            let coding = info.jpeg_coding;
            let scale = [8, 4, 2].into_iter().find(|&k| k <= shrink);
            // The reduced decoder reads every DCT coding (arithmetic ones at full size too).
            let reduced = coding.is_some_and(|c| c != JpegCoding::Other) && info.channels != 2;
            match scale {
                Some(s) if reduced => {
                    let (dw, dh) = (w.div_ceil(s), h.div_ceil(s));
                    let peak = bytes.planned;
                    // What the reduced decoder declines, zune-jpeg then decodes in full, after
                    // the reduced decoder's buffers are freed. (The check walks the file, so
                    // only where the reduced path is taken.)
                    let falls_back = declined
                        || !thumbd_engine::stages::jpeg_reduced_decode_expected(data, info);
                    match (s, falls_back) {
                        (_, true) => ("jpeg-reduced-then-full", (w, h), c, peak.max(bytes.full)),
                        (8, false) => ("jpeg-1/8", (dw, dh), c, peak),
                        (4, false) => ("jpeg-1/4", (dw, dh), c, peak),
                        _ => ("jpeg-1/2", (dw, dh), c, peak),
                    }
                }
                _ => ("jpeg-full", (w, h), c, bytes.full),
            }
        }
        InputFormat::Png => {
            // After EXPAND and STRIP_16: palette and tRNS may add an alpha channel.
            let c = if info.channels >= 3 { 4 } else { 2 };
            let interlaced = data.get(28) == Some(&1);
            let (dw, dh) = (w.div_ceil(shrink), h.div_ceil(shrink));
            if shrink > 1 && !interlaced {
                ("png-rows", (dw, dh), c, bytes.planned)
            } else if shrink > 1 {
                ("png-interlaced", (dw, dh), c, bytes.planned)
            } else {
                ("png-full", (w, h), c, bytes.planned)
            }
        }
        // A TIFF's JPEG-compressed page is reduced by the JPEG decoder's scales first (the
        // largest of 8, 4, 2 not above the shrink, as for JPEG files), then by the box filter
        // by what is left in whole steps: it may hand out up to 1/`s` of the image, for `s`
        // that power of two, rather than 1/`shrink`.
        InputFormat::Tiff => {
            let s = [8, 4, 2].into_iter().find(|&k| k <= shrink).unwrap_or(1);
            ("tiff", (w.div_ceil(s), h.div_ceil(s)), 4, bytes.planned)
        }
        // The other decoders hand out up to 4 channels at 1/`shrink` (the full image when
        // they cannot shrink on load, which their own `planned` bound then says).
        other => {
            let (dw, dh) = (w.div_ceil(shrink), h.div_ceil(shrink));
            (other.name(), (dw, dh), 4, bytes.planned)
        }
    };
    let decoded = dw * dh * channels;

    // After the decode (whose scratch is gone by then) the decoded pixels stay while each size
    // is made: a premultiplied copy (alpha), the resizer's horizontal pass (target width ×
    // source height, twice the target for the box pre-reduction) and the small images (the
    // box mid-size image at 2× the target, the result, colour, orientation and flatten copies
    // at 4 bytes per pixel, the encoded output), and the encoder's own buffers (AVIF's: aom in
    // C, tens of bytes a pixel).
    let per_size = targets
        .iter()
        .map(|&(tw, th)| {
            let encoder = encoder_bytes(request.format, tw, th);
            let (tw, th) = (u64::from(tw), u64::from(th));
            (2 * tw).min(dw.max(1)) * dh * channels + 12 * tw * th * 4 + encoder
        })
        .max()
        .unwrap_or(0);
    let after_decode = 2 * decoded + per_size;
    // Encoded outputs of the earlier sizes are held until the last is made.
    let outputs: u64 = targets
        .iter()
        .map(|&(tw, th)| u64::from(tw) * u64::from(th) * 4)
        .sum();
    EstimateParts {
        path,
        shrink: shrink_factor,
        decoded_bytes: decoded,
        decode_bytes: decode_peak,
        engine_bytes: decode_peak.max(after_decode) + outputs + PER_IMAGE_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thumbd_engine::Fit;

    const MIB: u64 = 1 << 20;

    fn jpeg(width: u32, height: u32, coding: JpegCoding) -> ImageInfo {
        ImageInfo {
            format: InputFormat::Jpeg,
            width,
            height,
            channels: 3,
            jpeg_coding: Some(coding),
            adobe_transform: None,
        }
    }

    fn sizes(sizes: &[u32]) -> Request {
        Request {
            sizes: sizes.to_vec(),
            ..Request::default()
        }
    }

    /// A real JPEG's bytes claiming `width`×`height`: a 16×16 file from jpeg-encoder with its
    /// frame header's size patched. The estimate reads headers and the scan layout (to tell
    /// whether the reduced decoder will take the file), never the pixels.
    fn jpeg_file(info: &ImageInfo) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.set_progressive(info.jpeg_coding.is_some_and(JpegCoding::is_progressive));
        encoder
            .encode(&[128; 16 * 16 * 3], 16, 16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let sof = out
            .windows(2)
            .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
            .expect("a frame header");
        // FF Cn, length (2), precision (1), height (2), width (2).
        out[sof + 5..sof + 7].copy_from_slice(&(info.height as u16).to_be_bytes());
        out[sof + 7..sof + 9].copy_from_slice(&(info.width as u16).to_be_bytes());
        out
    }

    #[test]
    fn a_large_jpeg_is_counted_at_the_scale_it_is_decoded() {
        let info = jpeg(6000, 4000, JpegCoding::Baseline);
        let e = estimate(&info, &jpeg_file(&info), &sizes(&[256]));
        assert_eq!(e.path, "jpeg-1/8");
        assert_eq!(e.decoded_bytes, 750 * 500 * 3);
        // A few MiB, where a full-size decode would be 72 MB (and the header-only bound of
        // ImageInfo::decode_budget_bytes, which counts every coefficient, 217 MB).
        assert!(e.engine_bytes < 8 * MIB, "{e:?}");
        assert!(info.decode_budget_bytes() > 15 * e.engine_bytes);
    }

    #[test]
    fn the_largest_size_decides_the_path() {
        // 2560×1600 progressive at 256 px: 1/8 would leave too little, so 1/4 (every scan).
        let info = jpeg(2560, 1600, JpegCoding::Progressive);
        let file = jpeg_file(&info);
        let at_256 = estimate(&info, &file, &sizes(&[256]));
        assert_eq!(at_256.path, "jpeg-1/4");
        // Progressive at 1/4 keeps every coefficient: 2 bytes per sample, 3 samples a pixel.
        assert!(at_256.engine_bytes >= 6 * 2560 * 1600, "{at_256:?}");
        let with_1024 = estimate(&info, &file, &sizes(&[1024, 64]));
        assert_eq!(with_1024.path, "jpeg-full");
        assert!(with_1024.engine_bytes >= (3 + 6) * 2560 * 1600);
        let cover = Request {
            fit: Fit::Cover,
            ..sizes(&[256])
        };
        // Cover fills the box: the short side decides (1600 / 256 → shrink 3: 1/2).
        assert_eq!(estimate(&info, &file, &cover).path, "jpeg-1/2");
        // A 6 MP progressive photo at 256 px reads only its DC scans.
        let photo = jpeg(3000, 2000, JpegCoding::Progressive);
        let file = jpeg_file(&photo);
        assert_eq!(estimate(&photo, &file, &sizes(&[256])).path, "jpeg-1/8");
    }

    #[test]
    fn a_jpeg_the_reduced_decoder_declines_counts_the_full_decode() {
        let info = jpeg(6000, 4000, JpegCoding::Baseline);
        let file = jpeg_file(&info);
        let first_scan = file.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        // Cut inside its scan: decoded at reduced scale (the rest grey).
        let cut_in_scan = estimate(&info, &file[..first_scan + 20], &sizes(&[256]));
        assert_eq!(cut_in_scan.path, "jpeg-1/8");
        // Cut before it: the reduced decoder declines, zune-jpeg decodes in full.
        let e = estimate(&info, &file[..first_scan], &sizes(&[256]));
        assert_eq!(e.path, "jpeg-reduced-then-full");
        assert!(e.engine_bytes >= 6000 * 4000 * 3);
        // Not a JPEG the header check can read at all: the same.
        let e = estimate(&info, &[0xFF, 0xD8, 0xFF, 0xD9], &sizes(&[256]));
        assert_eq!(e.path, "jpeg-reduced-then-full");
    }

    #[test]
    fn a_decline_found_at_decode_time_counts_the_full_decode() {
        let info = jpeg(6000, 4000, JpegCoding::Progressive);
        let file = jpeg_file(&info);
        let planned = estimate(&info, &file, &sizes(&[256]));
        assert_eq!(planned.path, "jpeg-1/8");
        let full = thumbd_engine::stages::decode_bytes(&file, &info, planned.shrink).full;
        // The engine's allowance for the decode: the reduced path's bound, far below the
        // full-size decode it refuses.
        assert!(planned.decode_bytes < full / 20, "{planned:?}");
        let declined = estimate_declined(&info, &file, &sizes(&[256]));
        assert_eq!(declined.path, "jpeg-reduced-then-full");
        assert_eq!(declined.decode_bytes, full);
        // Output, coefficients of every block: 9 bytes per pixel.
        assert!(full >= 9 * 6000 * 4000, "{full}");
        assert!(declined.engine_bytes >= full, "{declined:?}");
    }

    #[test]
    fn png_rows_unless_interlaced() {
        let info = ImageInfo {
            format: InputFormat::Png,
            width: 8000,
            height: 6000,
            channels: 4,
            jpeg_coding: None,
            adobe_transform: None,
        };
        let mut header = vec![0u8; 29];
        let rows = estimate(&info, &header, &sizes(&[256]));
        assert_eq!(rows.path, "png-rows");
        assert!(rows.engine_bytes < 8 * MIB, "{rows:?}");
        header[28] = 1; // IHDR interlace method: Adam7
        let interlaced = estimate(&info, &header, &sizes(&[256]));
        assert_eq!(interlaced.path, "png-interlaced");
        assert!(interlaced.engine_bytes >= 8000 * 6000 * 4);
    }
}
