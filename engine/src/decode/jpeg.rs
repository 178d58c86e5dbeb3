//! JPEG through zune-jpeg. CMYK and YCCK are taken as raw planes and normalised to ink values
//! here, because the colour stage converts them through a CMYK profile (a naive formula renders
//! print colours visibly wrong).
//!
//! When the engine shrinks on load by 2 or more, the pixels come from the reduced-scale decoder
//! in [`super::jpeg_scaled`] at 1/2, 1/4 or 1/8 (the largest that does not exceed the shrink factor;
//! `resize.rs` does the rest). zune-jpeg still reads the headers (colour space, ICC,
//! EXIF) and decodes in full whatever the reduced decoder declines.
//!
//! Arithmetic-coded files (SOF9, SOF10) are the exception: zune-jpeg decodes Huffman coding
//! only, so the reduced decoder reads them at every scale, full size included, and its error
//! is final; zune-jpeg reads their headers through a Huffman-labelled copy of them.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use super::jpeg_scaled::{self, ColorKind, ScaledError};
use super::Decoded;
use crate::bitmap::{Bitmap, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, JpegCoding};
use crate::{Error, Limits};

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    info.check_decodable()?;
    let headers = huffman_labelled_headers(data, info);
    let (decoder, input) = read_headers(headers.as_deref().unwrap_or(data))?;
    if headers.is_some() {
        let scale = dct_scale(shrink).unwrap_or(1);
        limits.afford_decode(|| reduced_bytes(info, scale))?;
        return Ok(Decoded {
            bitmap: reduced(data, info, scale, input)?,
            icc: decoder.icc_profile(),
            orientation: orientation(&decoder),
        });
    }
    let options = lenient_options();
    let model = color_model(input);
    let scale = dct_scale(shrink);
    let scaled = match reduced_scale(info, shrink) {
        Some(scale) => {
            limits.afford_decode(|| reduced_bytes(info, scale))?;
            reduced(data, info, scale, input).ok()
        }
        None => None,
    };
    let bitmap = match scaled {
        Some(bitmap) => bitmap,
        None => {
            // Full size, also when the reduced decoder declined damage its header check cannot
            // see: far more than the reduced decode a caller may have reserved for.
            limits.afford_decode(|| full_bytes(data, info))?;
            let strict = options.set_strict_mode(true);
            decode_full(data, info, strict, input, model).or_else(|_| {
                // zune-jpeg (even lenient) stops at damage in the image data that libjpeg steps
                // over, such as junk before a restart marker; our decoder at full scale
                // resynchronises there. It is tried when the damage is in the data (strict
                // headers parse) and it has not just declined the file at a reduced scale.
                let data_damaged = scale.is_none()
                    && JpegDecoder::new_with_options(ZCursor::new(data), strict)
                        .decode_headers()
                        .is_ok();
                data_damaged
                    .then(|| decode_scaled(data, info, 1, input))
                    .flatten()
                    .map_or_else(|| decode_full(data, info, options, input, model), Ok)
            })?
        }
    };
    Ok(Decoded {
        bitmap,
        icc: decoder.icc_profile(),
        orientation: orientation(&decoder),
    })
}

/// zune-jpeg's full-size decode with `options` (strict or lenient).
fn decode_full(
    data: &[u8],
    info: &ImageInfo,
    options: DecoderOptions,
    input: ColorSpace,
    model: ColorModel,
) -> Result<Bitmap, Error> {
    let out = match model {
        ColorModel::Gray => ColorSpace::Luma,
        ColorModel::Cmyk => input,
        _ => ColorSpace::RGB,
    };
    let mut decoder =
        JpegDecoder::new_with_options(ZCursor::new(data), options.jpeg_set_out_colorspace(out));
    decoder.decode_headers().map_err(map_error)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| Error::Internal("zune-jpeg gave no dimensions after headers".into()))?;
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| Error::Internal("zune-jpeg gave no output size".into()))?;
    if size != width * height * model.channels() {
        return Err(Error::Corrupt {
            format: "jpeg",
            detail: format!("unexpected output size for {input:?} → {out:?}"),
        });
    }
    let mut pixels = vec![0u8; size];
    decoder.decode_into(&mut pixels).map_err(map_error)?;
    to_ink(&mut pixels, input, info);
    Ok(Bitmap::new(width as u32, height as u32, model, pixels))
}

/// The DCT scale for a shrink-on-load factor: the largest of 8, 4 and 2 not above it (so at
/// least the factor of two `shrink` leaves for the final filter remains), or `None`.
///
/// 1/2 joined once the reduced IDCT became a sparse basis sum: measured with
/// `engine/examples/decode_timing.rs` on the small and mid JPEGs of `../shared/corpus`, the 1/2
/// decode is 5–20 % faster than zune-jpeg's full SIMD decode on most files (baseline and
/// progressive) and holds a quarter of the pixels.
fn dct_scale(shrink: u32) -> Option<u32> {
    [8, 4, 2].into_iter().find(|&k| k <= shrink)
}

/// The scale the reduced decoder is tried at for a shrink-on-load factor, if any.
pub(super) fn reduced_scale(info: &ImageInfo, shrink: u32) -> Option<u32> {
    dct_scale(shrink).filter(|_| reduced_reads(info))
}

/// Upper bound of the bytes the reduced decoder holds at 1/`scale`: the output, one plane per
/// component at that scale, and for a progressive file the coefficient store (DC only at 1/8;
/// 64 × i16 per block otherwise, counted as if no component were subsampled).
pub(super) fn reduced_bytes(info: &ImageInfo, scale: u32) -> u64 {
    let s = u64::from(scale);
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    let components = u64::from(info.channels.max(1));
    let planes = components * padded_pixels(info) / (s * s);
    let progressive = info.jpeg_coding.is_some_and(JpegCoding::is_progressive);
    let coefficients = match (progressive, scale) {
        (true, 8) => 2 * components * padded_pixels(info) / 64,
        (true, _) => 2 * components * padded_pixels(info),
        _ => 0,
    };
    w.div_ceil(s) * h.div_ceil(s) * output_channels(info) + planes + coefficients
}

/// Upper bound of the bytes a full-size decode holds (zune-jpeg's, or for damaged data our
/// decoder at scale 1): the output, two MCU rows per component, and every coefficient (64 ×
/// i16 per block per component, as if unsubsampled) when the file is progressive or its first
/// scan does not hold every component: those keep every block until the last scan.
pub(super) fn full_bytes(data: &[u8], info: &ImageInfo) -> u64 {
    if info.jpeg_coding.is_some_and(JpegCoding::is_arithmetic) {
        // Only the reduced decoder reads arithmetic coding.
        return reduced_bytes(info, 1);
    }
    let progressive = info.jpeg_coding == Some(JpegCoding::Progressive);
    full_bytes_with(
        info,
        progressive || !jpeg_scaled::first_scan_has_every_component(data),
    )
}

/// [`full_bytes`] with the coefficient store counted or not.
pub(super) fn full_bytes_with(info: &ImageInfo, every_coefficient: bool) -> u64 {
    let components = u64::from(info.channels.max(1));
    let coefficients = if every_coefficient {
        2 * components * padded_pixels(info)
    } else {
        0
    };
    let rows = 2 * components * u64::from(info.width).div_ceil(16) * 16 * 16 * 2;
    info.pixels() * output_channels(info) + coefficients + rows
}

/// Pixels of the frame padded to whole 16×16 MCUs (the largest common sampling).
fn padded_pixels(info: &ImageInfo) -> u64 {
    u64::from(info.width).div_ceil(16) * 16 * u64::from(info.height).div_ceil(16) * 16
}

/// Channels of a decoded pixel: gray, 4-channel CMYK/YCCK, or RGB.
fn output_channels(info: &ImageInfo) -> u64 {
    match info.channels {
        1 => 1,
        4 => 4,
        _ => 3,
    }
}

/// The reduced-scale decode, or `None` when the full decoder must do it (see the fallback
/// list in [`super::jpeg_scaled`]).
fn decode_scaled(data: &[u8], info: &ImageInfo, scale: u32, input: ColorSpace) -> Option<Bitmap> {
    if !reduced_reads(info) {
        return None;
    }
    reduced(data, info, scale, input).ok()
}

/// Sequential or progressive DCT, Huffman or arithmetic: the codings the reduced decoder reads.
fn reduced_reads(info: &ImageInfo) -> bool {
    info.jpeg_coding.is_some_and(|c| c != JpegCoding::Other)
}

/// For an arithmetic-coded file, [`jpeg_scaled::huffman_labelled_headers`]: a copy of its
/// headers that zune-jpeg, which refuses arithmetic coding, reads for the colour space, ICC
/// profile and EXIF. `None` for any other file.
fn huffman_labelled_headers(data: &[u8], info: &ImageInfo) -> Option<Vec<u8>> {
    if !info.jpeg_coding.is_some_and(JpegCoding::is_arithmetic) {
        return None;
    }
    Some(jpeg_scaled::huffman_labelled_headers(data))
}

/// Whether a shrink-on-load decode of `data` would run in the reduced decoder rather than fall
/// back to zune-jpeg's full decode, judged from the headers and the scan layout without
/// decoding ([`jpeg_scaled::check_headers`]).
pub(crate) fn reduced_decode_expected(data: &[u8], info: &ImageInfo) -> bool {
    reduced_reads(info) && jpeg_scaled::check_headers(data, (info.width, info.height)).is_ok()
}

/// The reduced-scale decoder alone, without the fallback: for benchmarks and fuzzing. `scale`
/// is 1, 2, 4 or 8.
pub(crate) fn decode_reduced_only(
    data: &[u8],
    info: &ImageInfo,
    scale: u32,
) -> Result<Bitmap, Error> {
    let headers = huffman_labelled_headers(data, info);
    let (_, input) = read_headers(headers.as_deref().unwrap_or(data))?;
    reduced(data, info, scale, input)
}

/// The bitmap model for zune-jpeg's input colour space: gray, ink (CMYK and YCCK) or RGB.
fn color_model(input: ColorSpace) -> ColorModel {
    match input {
        ColorSpace::Luma => ColorModel::Gray,
        ColorSpace::CMYK | ColorSpace::YCCK => ColorModel::Cmyk,
        _ => ColorModel::Rgb,
    }
}

/// zune-jpeg's options for a header read or a lenient decode. Limits were already enforced
/// from our own header walk, so zune accepts any u16 size.
fn lenient_options() -> DecoderOptions {
    DecoderOptions::default()
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .set_strict_mode(false)
}

/// zune-jpeg's decoder over an in-memory file.
type Zune<'a> = JpegDecoder<ZCursor<&'a [u8]>>;

/// zune-jpeg's header read: the decoder (for ICC and EXIF) and the input colour space.
fn read_headers(data: &[u8]) -> Result<(Zune<'_>, ColorSpace), Error> {
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), lenient_options());
    decoder.decode_headers().map_err(map_error)?;
    let input = decoder.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    Ok((decoder, input))
}

/// [`jpeg_scaled::decode`] at 1/`scale` for the colour space zune-jpeg decided, normalised
/// as the full path normalises (CMYK/YCCK to ink).
fn reduced(data: &[u8], info: &ImageInfo, scale: u32, input: ColorSpace) -> Result<Bitmap, Error> {
    let kind = match input {
        ColorSpace::Luma => ColorKind::Gray,
        ColorSpace::YCbCr => ColorKind::YCbCr,
        ColorSpace::RGB => ColorKind::Rgb,
        ColorSpace::CMYK | ColorSpace::YCCK => ColorKind::Raw4,
        other => return Err(Error::Unsupported(format!("JPEG colour space {other:?}"))),
    };
    let mut image =
        jpeg_scaled::decode(data, (info.width, info.height), scale, kind).map_err(|e| match e {
            ScaledError::Unsupported(what) => Error::Unsupported(format!("JPEG: {what}")),
            ScaledError::Corrupt(what) => Error::Corrupt {
                format: "jpeg",
                detail: what.into(),
            },
            ScaledError::Truncated => Error::Truncated {
                format: "jpeg",
                detail: e.to_string(),
            },
        })?;
    to_ink(&mut image.data, input, info);
    Ok(Bitmap::new(
        image.width as u32,
        image.height as u32,
        color_model(input),
        image.data,
    ))
}

fn orientation(decoder: &Zune<'_>) -> Orientation {
    decoder
        .exif()
        .map(|exif| Orientation::from_exif(exif))
        .unwrap_or_default()
}

/// Normalises raw CMYK/YCCK samples to ink values (0 = no ink).
fn to_ink(pixels: &mut [u8], input: ColorSpace, info: &ImageInfo) {
    match input {
        ColorSpace::YCCK => ycck_to_ink(pixels, info.adobe_transform.is_some()),
        ColorSpace::CMYK if info.adobe_transform.is_some() => {
            // Adobe writes CMYK inverted (0 = full ink).
            pixels.iter_mut().for_each(|v| *v = 255 - *v);
        }
        _ => {}
    }
}

/// YCCK → CMYK ink: the Y/Cb/Cr planes are an RGB-coded inverse of the stored CMY (libjpeg's
/// `ycck_cmyk_convert`), and Adobe stores all four channels inverted.
fn ycck_to_ink(pixels: &mut [u8], adobe: bool) {
    for px in pixels.chunks_exact_mut(4) {
        let y = f32::from(px[0]);
        let cb = f32::from(px[1]) - 128.0;
        let cr = f32::from(px[2]) - 128.0;
        let r = y + 1.402 * cr;
        let g = y - 0.344_136 * cb - 0.714_136 * cr;
        let b = y + 1.772 * cb;
        // Decoded RGB is 255 − stored CMY; stored CMY is itself inverted ink under Adobe.
        let stored = |v: f32| 255 - v.round().clamp(0.0, 255.0) as u8;
        let ink = |s: u8| if adobe { 255 - s } else { s };
        px[0] = ink(stored(r));
        px[1] = ink(stored(g));
        px[2] = ink(stored(b));
        px[3] = ink(px[3]);
    }
}

fn map_error(err: DecodeErrors) -> Error {
    match err {
        DecodeErrors::ExhaustedData => Error::Truncated {
            format: "jpeg",
            detail: "data ends inside the image".into(),
        },
        DecodeErrors::Unsupported(scheme) => Error::Unsupported(format!("JPEG: {scheme:?}")),
        DecodeErrors::IoErrors(e) => Error::Truncated {
            format: "jpeg",
            detail: format!("{e:?}"),
        },
        DecodeErrors::LargeDimensions(n) => Error::Corrupt {
            format: "jpeg",
            detail: format!("dimension {n} over the decoder's limit"),
        },
        other => super::by_message("jpeg", other.to_string(), &["EOF", "No more bytes"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> Vec<u8> {
        let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Arithmetic-coded files through the whole decode stage, at full size (the reduced decoder
    /// alone) and at 1/8, against zune-jpeg and the reduced decoder on their Huffman-coded twins
    /// (the same coefficients and scan kind): gray, 4:2:0 YCbCr, and Adobe CMYK normalised to
    /// ink alike, with the ICC profile and EXIF orientation read from the relabelled headers.
    #[test]
    fn arithmetic_files_decode_as_their_huffman_twins() {
        let pairs = [
            (
                "tests/fixtures/arith/hopper_arith_prog.jpg",
                "tests/fixtures/arith/hopper_prog.jpg",
            ),
            (
                "tests/fixtures/arith/grey_arith_prog.jpg",
                "tests/fixtures/arith/grey_prog.jpg",
            ),
            (
                "tests/fixtures/arith/cmyk_arith_seq.jpg",
                "corpus/pil_pil_sample_cmyk.jpg",
            ),
        ];
        let limits = Limits::default();
        for (arith, twin) in pairs {
            let (a, b) = (read(arith), read(twin));
            let info_a = crate::probe::probe(&a, &limits).unwrap();
            let info_b = crate::probe::probe(&b, &limits).unwrap();
            assert!(info_a.jpeg_coding.is_some_and(JpegCoding::is_arithmetic));
            for shrink in [1, 8] {
                let da = decode(&a, &info_a, shrink, &limits).unwrap();
                let db = decode(&b, &info_b, shrink, &limits).unwrap();
                assert_eq!(da.icc, db.icc, "{arith}");
                assert_eq!(da.orientation, db.orientation, "{arith}");
                let (pa, pb) = (da.bitmap, db.bitmap);
                assert_eq!(
                    (pa.width, pa.height, pa.model),
                    (pb.width, pb.height, pb.model),
                    "{arith} 1/{shrink}"
                );
                // Full size: our float IDCT against zune-jpeg's integer one.
                let tolerance = if shrink == 1 { 6 } else { 0 };
                let diff = pa.data.iter().zip(&pb.data).map(|(x, y)| x.abs_diff(*y));
                let (max, sum) = diff.fold((0, 0u64), |(m, s), d| (m.max(d), s + u64::from(d)));
                let mean = sum as f64 / pa.data.len() as f64;
                assert!(
                    max <= tolerance && mean < 0.6,
                    "{arith} 1/{shrink}: max {max}, mean {mean:.3}"
                );
            }
        }
    }

    /// What no decoder here reads is refused from the header, before any decode.
    #[test]
    fn lossless_jpeg_is_refused_from_the_header() {
        let mut data = read("corpus/pil_hopper_orientation_6.jpg");
        let sof = data.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        data[sof + 1] = 0xC3;
        let info = crate::probe::probe(&data, &Limits::default()).unwrap();
        assert_eq!(info.jpeg_coding, Some(JpegCoding::Other));
        assert!(matches!(info.check_decodable(), Err(Error::Unsupported(_))));
    }
}
