//! TIFF and BigTIFF through the tiff crate: RGB, gray (1–16 bits), gray+alpha, RGBA, CMYK and
//! YCbCr, 8 or 16 bits per sample, with every compression the crate reads (LZW, Deflate,
//! PackBits, JPEG, CCITT fax; predictors included), the Orientation tag and the ICC tag.
//!
//! The first page is the image. When shrinking on load, the smallest reduced-resolution page of
//! a pyramid that is still at least the shrink-on-load size is read instead, as libvips picks a
//! pyramid level: a page counts as a level when each side is the first page's side halved one
//! or more times (rounded either way). Strips and tiles are read one at a time and reduced as
//! they arrive, so a page much larger than the thumbnail is never held whole.
//!
//! Refused as `unsupported`: planar (band-separate) colour, palettes and Lab (the crate reads
//! neither), float and signed samples, and bit depths other than 1, 2, 4 (gray), 8 and 16.

use std::io::Cursor;

use tiff::decoder::{ChunkType, Decoder, DecodingResult};
use tiff::tags::{CompressionMethod, PlanarConfiguration, SampleFormat, Tag};
use tiff::{ColorType, TiffError, TiffFormatError, TiffUnsupportedError};

use super::{DecodeBytes, Decoded};
use crate::bitmap::{Bitmap, BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

const FORMAT: &str = "tiff";

/// Pages looked at for a pyramid level after the first: pyramids have a dozen levels at most,
/// and a chain of thousands of IFDs must not cost thousands of parses.
const MAX_LEVELS: usize = 16;

/// The crate's own limits: one decoded chunk (a strip can be the whole page) and one tag value
/// (an ICC profile, the strip offsets of a tall image). Pixels are also checked against the
/// caller's allowance first.
fn crate_limits() -> tiff::decoder::Limits {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = 1 << 30;
    limits.ifd_value_size = 16 << 20;
    limits
}

fn open(data: &[u8]) -> Result<Decoder<Cursor<&[u8]>>, Error> {
    Ok(Decoder::new(Cursor::new(data))
        .map_err(map_error)?
        .with_limits(crate_limits()))
}

pub(super) fn header(data: &[u8]) -> Result<ImageInfo, Error> {
    let mut decoder = open(data)?;
    let (width, height) = decoder.dimensions().map_err(map_error)?;
    let layout = Layout::of(&mut decoder)?;
    Ok(ImageInfo {
        format: InputFormat::Tiff,
        width,
        height,
        channels: layout.model().channels() as u8,
        jpeg_coding: None,
        adobe_transform: None,
    })
}

/// How the samples of a page become one of the engine's 8-bit colour models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Samples {
    /// 1, 2, 4, 8 or 16 bits; packed rows below 8 bits.
    Gray {
        bits: u8,
    },
    GrayAlpha,
    Rgb,
    /// `associated`: colour premultiplied by alpha (ExtraSamples = 1).
    Rgba {
        associated: bool,
    },
    /// Ink values; `stride` 5 when an alpha sample follows (dropped).
    Cmyk {
        stride: usize,
    },
    /// Full-range YCbCr, as JPEG-in-TIFF comes out of the crate (it leaves colour as coded).
    YCbCr,
}

/// A page's pixel layout: what its samples are and how its chunks are cut.
#[derive(Debug, Clone, Copy)]
struct Layout {
    samples: Samples,
    /// Bytes per sample as the crate returns it (1 or 2; 1 for packed gray).
    sample_bytes: u64,
    /// Samples per pixel as stored.
    stride: u64,
    width: u32,
    height: u32,
    /// Strip: (width, rows per strip); tile: (tile width, tile length).
    chunk: (u32, u32),
    tiled: bool,
}

impl Layout {
    fn of(decoder: &mut Decoder<Cursor<&[u8]>>) -> Result<Layout, Error> {
        let color = decoder.colortype().map_err(map_error)?;
        let format = decoder
            .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
            .map_err(map_error)?
            .unwrap_or_default();
        if format.iter().any(|&f| f != SampleFormat::Uint.to_u16()) {
            return Err(Error::Unsupported(format!(
                "TIFF sample format {format:?} (only unsigned integer samples are read)"
            )));
        }
        let bits = color.bit_depth();
        let unsupported = || {
            Error::Unsupported(format!(
                "TIFF colour type {color:?} (thumbd reads gray, gray+alpha, RGB, RGBA, CMYK and YCbCr at 8 or 16 bits)"
            ))
        };
        if !matches!(bits, 8 | 16) && !matches!(color, ColorType::Gray(1 | 2 | 4)) {
            return Err(unsupported());
        }
        let associated = decoder
            .find_tag_unsigned_vec::<u16>(Tag::ExtraSamples)
            .map_err(map_error)?
            .is_some_and(|extra| extra.first() == Some(&1));
        let (samples, stride) = match color {
            ColorType::Gray(bits) => (Samples::Gray { bits }, 1),
            ColorType::GrayA(_) | ColorType::Multiband { num_samples: 2, .. } => {
                (Samples::GrayAlpha, 2)
            }
            ColorType::RGB(_) => (Samples::Rgb, 3),
            ColorType::RGBA(_) => (Samples::Rgba { associated }, 4),
            ColorType::CMYK(_) => (Samples::Cmyk { stride: 4 }, 4),
            ColorType::CMYKA(_) => (Samples::Cmyk { stride: 5 }, 5),
            ColorType::YCbCr(_) => (Samples::YCbCr, 3),
            _ => return Err(unsupported()),
        };
        let planar = decoder
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .map_err(map_error)?;
        if stride > 1 && planar == Some(PlanarConfiguration::Planar.to_u16()) {
            return Err(Error::Unsupported(
                "planar (band-separate) TIFF colour is not read".into(),
            ));
        }
        let (width, height) = decoder.dimensions().map_err(map_error)?;
        Ok(Layout {
            samples,
            sample_bytes: if bits == 16 { 2 } else { 1 },
            stride,
            width,
            height,
            chunk: decoder.chunk_dimensions(),
            tiled: decoder.get_chunk_type() == ChunkType::Tile,
        })
    }

    fn model(&self) -> ColorModel {
        match self.samples {
            Samples::Gray { .. } => ColorModel::Gray,
            Samples::GrayAlpha => ColorModel::GrayAlpha,
            Samples::Rgb | Samples::YCbCr => ColorModel::Rgb,
            Samples::Rgba { .. } => ColorModel::Rgba,
            Samples::Cmyk { .. } => ColorModel::Cmyk,
        }
    }

    /// Bytes of one decoded chunk as the crate returns it.
    fn chunk_bytes(&self) -> u64 {
        let (w, h) = (u64::from(self.chunk.0), u64::from(self.chunk.1));
        match self.samples {
            Samples::Gray { bits } if bits < 8 => (w * u64::from(bits)).div_ceil(8) * h,
            _ => w * h * self.stride * self.sample_bytes,
        }
    }

    /// Peak bytes of reading this page reduced by `shrink`: a chunk three times over (the
    /// crate's JPEG path holds the decoded strip and a copy besides ours), its 8-bit samples,
    /// the band of tiles being assembled, and the output (reduced image and its sums, or the
    /// whole page).
    fn bytes(&self, shrink: u32) -> u64 {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        let channels = self.model().channels() as u64;
        let chunk = self.chunk_bytes();
        let chunk8 = u64::from(self.chunk.0) * u64::from(self.chunk.1) * self.stride;
        let band = if self.tiled {
            w * u64::from(self.chunk.1) * channels
        } else {
            0
        };
        let s = u64::from(shrink.max(1));
        let out = if s == 1 {
            w * h * channels
        } else {
            let rw = w.div_ceil(s);
            rw * h.div_ceil(s) * channels + rw * channels * 4
        };
        3 * chunk + chunk8 + band + out + (64 << 10)
    }
}

/// The page to read at `shrink` and the reduction left for the box filter: the first page, or
/// the smallest pyramid level at least `ceil(side / shrink)`.
struct Plan {
    page: usize,
    layout: Layout,
    /// Shrink still to apply to the chosen page.
    rest: u32,
}

fn plan(decoder: &mut Decoder<Cursor<&[u8]>>, shrink: u32) -> Result<Plan, Error> {
    let first = Layout::of(decoder)?;
    let mut best = Plan {
        page: 0,
        layout: first,
        rest: shrink.max(1),
    };
    if shrink < 2 {
        return Ok(best);
    }
    let (w, h) = (first.width, first.height);
    for page in 1..=MAX_LEVELS {
        // A damaged later page only means no pyramid: the first page is still readable.
        if !decoder.more_images() || decoder.next_image().is_err() {
            break;
        }
        let Ok((pw, ph)) = decoder.dimensions() else {
            break;
        };
        let Some(k) = (1..=shrink.ilog2()).find(|&k| {
            let halved = |side: u32| [side >> k, (side + (1 << k) - 1) >> k];
            halved(w).contains(&pw) && halved(h).contains(&ph)
        }) else {
            continue;
        };
        let factor = 1u32 << k;
        if factor > shrink || factor <= shrink / best.rest {
            continue;
        }
        if let Ok(layout) = Layout::of(decoder) {
            best = Plan {
                page,
                layout,
                rest: shrink / factor,
            };
        }
    }
    if best.page != 0 {
        decoder.seek_to_image(best.page).map_err(map_error)?;
    }
    Ok(best)
}

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    let mut decoder = open(data)?;
    if decoder.dimensions().map_err(map_error)? != (info.width, info.height) {
        return Err(Error::Corrupt {
            format: FORMAT,
            detail: "first page changed between reads".into(),
        });
    }
    // Colour and orientation are the first page's: levels inherit them.
    let icc = decoder
        .get_tag_u8_vec(Tag::IccProfile)
        .ok()
        .filter(|p| !p.is_empty());
    let orientation = decoder
        .find_tag_unsigned::<u32>(Tag::Orientation)
        .ok()
        .flatten()
        .map(Orientation::from_tag)
        .unwrap_or_default();
    let Plan { layout, rest, .. } = plan(&mut decoder, shrink)?;
    limits.afford_decode(|| layout.bytes(rest))?;
    let bitmap = read_page(&mut decoder, &layout, rest)?;
    Ok(Decoded {
        bitmap,
        icc,
        orientation,
    })
}

/// Rows of a page, reduced by `shrink` as they arrive (or kept whole at 1).
enum Sink {
    Whole(Vec<u8>),
    Reduced(BoxShrinker),
}

impl Sink {
    fn push(&mut self, row: &[u8]) {
        match self {
            Sink::Whole(rows) => rows.extend_from_slice(row),
            Sink::Reduced(shrinker) => shrinker.push_row(row),
        }
    }
}

fn read_page(
    decoder: &mut Decoder<Cursor<&[u8]>>,
    layout: &Layout,
    shrink: u32,
) -> Result<Bitmap, Error> {
    let (width, height) = (layout.width, layout.height);
    let model = layout.model();
    let channels = model.channels();
    let row_out = width as usize * channels;
    let mut sink = if shrink > 1 {
        Sink::Reduced(BoxShrinker::new(width, height, shrink, model))
    } else {
        Sink::Whole(Vec::with_capacity(row_out * height as usize))
    };
    let (chunk_w, chunk_h) = layout.chunk;
    let across = width.div_ceil(chunk_w.max(1));
    let down = height.div_ceil(chunk_h.max(1));
    let mut band = vec![
        0u8;
        if layout.tiled {
            row_out * chunk_h as usize
        } else {
            0
        }
    ];
    let mut row = vec![0u8; row_out];
    let chunks = if layout.tiled {
        decoder.tile_count()
    } else {
        decoder.strip_count()
    }
    .map_err(map_error)?;
    if u64::from(chunks) < u64::from(across) * u64::from(down) {
        return Err(Error::Corrupt {
            format: FORMAT,
            detail: format!(
                "{chunks} strips or tiles where the page needs {}",
                across * down
            ),
        });
    }
    for band_index in 0..down {
        let rows_here = chunk_h.min(height - band_index * chunk_h) as usize;
        if !layout.tiled {
            let samples = chunk_samples(decoder.read_chunk(band_index).map_err(map_error)?)?;
            let src_row = src_row_bytes(layout, width);
            for r in 0..rows_here {
                let src = samples
                    .get(r * src_row..(r + 1) * src_row)
                    .ok_or_else(short)?;
                convert_row(layout.samples, src, width as usize, &mut row);
                sink.push(&row);
            }
            continue;
        }
        for tile_x in 0..across {
            let index = band_index * across + tile_x;
            let (tw, th) = decoder.chunk_data_dimensions(index);
            let samples = chunk_samples(decoder.read_chunk(index).map_err(map_error)?)?;
            let src_row = src_row_bytes(layout, tw);
            let x0 = (tile_x * chunk_w) as usize * channels;
            let out_w = (tw as usize).min(width as usize - (tile_x * chunk_w) as usize);
            for r in 0..(th as usize).min(rows_here) {
                let src = samples
                    .get(r * src_row..(r + 1) * src_row)
                    .ok_or_else(short)?;
                let dst = &mut band[r * row_out + x0..r * row_out + x0 + out_w * channels];
                convert_row(layout.samples, src, out_w, dst);
            }
        }
        for r in 0..rows_here {
            sink.push(&band[r * row_out..(r + 1) * row_out]);
        }
    }
    Ok(match sink {
        Sink::Whole(rows) => Bitmap::new(width, height, model, rows),
        Sink::Reduced(shrinker) => shrinker.finish(),
    })
}

fn short() -> Error {
    Error::Truncated {
        format: FORMAT,
        detail: "a strip or tile holds fewer rows than the page needs".into(),
    }
}

/// Bytes of one row of `width` pixels in a chunk, after [`chunk_samples`].
fn src_row_bytes(layout: &Layout, width: u32) -> usize {
    match layout.samples {
        Samples::Gray { bits } if bits < 8 => (width as usize * bits as usize).div_ceil(8),
        _ => width as usize * layout.stride as usize,
    }
}

/// A decoded chunk as 8-bit samples (16-bit rounded to 8).
fn chunk_samples(result: DecodingResult) -> Result<Vec<u8>, Error> {
    match result {
        DecodingResult::U8(samples) => Ok(samples),
        DecodingResult::U16(samples) => Ok(samples
            .iter()
            .map(|&v| ((u32::from(v) * 255 + 32767) / 65535) as u8)
            .collect()),
        _ => Err(Error::Unsupported(
            "TIFF samples wider than 16 bits are not read".into(),
        )),
    }
}

/// One row of `width` pixels from stored samples to the engine's colour model.
fn convert_row(samples: Samples, src: &[u8], width: usize, out: &mut [u8]) {
    match samples {
        Samples::Gray { bits: 8 | 16 } | Samples::GrayAlpha | Samples::Rgb => {
            out[..src.len()].copy_from_slice(src)
        }
        Samples::Gray { bits } => {
            let per_byte = 8 / bits as usize;
            let max = (1u16 << bits) - 1;
            for (x, o) in out.iter_mut().take(width).enumerate() {
                let byte = src[x / per_byte];
                let shift = 8 - bits as usize * (x % per_byte + 1);
                let v = u16::from(byte >> shift) & max;
                *o = (v * 255 / max) as u8;
            }
        }
        Samples::Rgba { associated } => {
            out[..src.len()].copy_from_slice(src);
            if associated {
                for px in out.chunks_exact_mut(4) {
                    let a = u16::from(px[3]);
                    if a != 0 && a != 255 {
                        for c in &mut px[..3] {
                            *c = ((u16::from(*c) * 255 + a / 2) / a).min(255) as u8;
                        }
                    }
                }
            }
        }
        Samples::Cmyk { stride } => {
            for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(stride)) {
                o.copy_from_slice(&s[..4]);
            }
        }
        Samples::YCbCr => {
            // JPEG-in-TIFF arrives as coded, full range (the JFIF equations); uncompressed
            // YCbCr (subsampling 1,1) uses the same default ReferenceBlackWhite.
            for (o, s) in out.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                o.copy_from_slice(&ycbcr_to_rgb(s[0], s[1], s[2]));
            }
        }
    }
}

/// The JFIF equations in 16-bit fixed point with rounding, as libjpeg's `jdcolor.c` does
/// (within 1 of the exact result; a float `round()` per channel cost 40 % of a TIFF decode).
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const HALF: i32 = 1 << 15;
    // 1.402, 0.344136, 0.714136 and 1.772, times 2^16, rounded.
    const R_CR: i32 = 91_881;
    const G_CB: i32 = 22_554;
    const G_CR: i32 = 46_802;
    const B_CB: i32 = 116_130;
    let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
    let r = y + ((R_CR * cr + HALF) >> 16);
    let g = y + ((-G_CB * cb - G_CR * cr + HALF) >> 16);
    let b = y + ((B_CB * cb + HALF) >> 16);
    [r, g, b].map(|v| v.clamp(0, 255) as u8)
}

pub(super) fn decode_bytes(data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    let bounds = || -> Result<DecodeBytes, Error> {
        let mut decoder = open(data)?;
        let full = Layout::of(&mut decoder)?.bytes(1);
        let plan = plan(&mut decoder, shrink)?;
        Ok(DecodeBytes {
            planned: plan.layout.bytes(plan.rest),
            full,
        })
    };
    // A file whose layout cannot be read fails before decoding anything.
    bounds().unwrap_or_else(|_| {
        let full = full_bytes(info);
        DecodeBytes {
            planned: full,
            full,
        }
    })
}

/// From the header alone: the whole page at up to 4 channels, plus one strip as tall as the
/// page (the worst layout) at 16 bits and 5 samples, three times over.
pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    info.pixels() * 4 + 3 * info.pixels() * 10 + (64 << 10)
}

fn map_error(err: TiffError) -> Error {
    match err {
        TiffError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Truncated {
                format: FORMAT,
                detail: "data ends inside the file (a directory, strip or tile lies past the end)"
                    .into(),
            }
        }
        TiffError::UnsupportedError(TiffUnsupportedError::UnknownCompressionMethod)
        | TiffError::UnsupportedError(TiffUnsupportedError::UnknownInterpretation) => {
            Error::Corrupt {
                format: FORMAT,
                detail: err.to_string(),
            }
        }
        TiffError::UnsupportedError(TiffUnsupportedError::UnsupportedCompressionMethod(
            CompressionMethod::Unknown(method),
        )) => Error::Corrupt {
            format: FORMAT,
            detail: format!("compression {method} is not a TIFF compression"),
        },
        TiffError::UnsupportedError(e) => Error::Unsupported(format!("TIFF: {e}")),
        TiffError::FormatError(TiffFormatError::TiffSignatureNotFound) => {
            Error::Unsupported("not a TIFF".into())
        }
        TiffError::LimitsExceeded => Error::Corrupt {
            format: FORMAT,
            detail: "a tag or chunk is larger than any real image needs".into(),
        },
        other => Error::Corrupt {
            format: FORMAT,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::formats_corpus as corpus;

    fn probe(data: &[u8]) -> Result<ImageInfo, Error> {
        crate::probe::probe(data, &Limits::default())
    }

    #[test]
    fn fixed_point_ycbcr_is_within_one_of_the_exact_equations() {
        for y in (0..=255u8).step_by(3) {
            for cb in (0..=255u8).step_by(5) {
                for cr in (0..=255u8).step_by(5) {
                    let (yf, cbf, crf) =
                        (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
                    let exact = [
                        yf + 1.402 * crf,
                        yf - 0.344_136 * cbf - 0.714_136 * crf,
                        yf + 1.772 * cbf,
                    ]
                    .map(|v| v.round().clamp(0.0, 255.0) as i32);
                    let got = ycbcr_to_rgb(y, cb, cr).map(i32::from);
                    for c in 0..3 {
                        assert!(
                            (got[c] - exact[c]).abs() <= 1,
                            "{y} {cb} {cr}: {got:?} {exact:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pages_decode_with_their_layouts() {
        for (name, size, model) in [
            (
                "derived_tiff_gray8_packbits_camera.tif",
                (512, 512),
                ColorModel::Gray,
            ),
            (
                "derived_tiff_rgb16_deflate_assign5.tif",
                (576, 299),
                ColorModel::Rgb,
            ),
            (
                "derived_tiff_cmyk8_lzw_tree.tif",
                (770, 642),
                ColorModel::Cmyk,
            ),
            (
                "derived_tiff_jpeg_ycbcr_BytheWater.tif",
                (2560, 1600),
                ColorModel::Rgb,
            ),
            (
                "derived_tiff_multipage3_lzw.tif",
                (480, 320),
                ColorModel::Rgb,
            ),
        ] {
            let data = corpus(name);
            let info = probe(&data).unwrap();
            assert_eq!((info.width, info.height), size, "{name}");
            let decoded = decode(&data, &info, 1, &Limits::default()).unwrap();
            assert_eq!(decoded.bitmap.model, model, "{name}");
            assert_eq!(
                (decoded.bitmap.width, decoded.bitmap.height),
                size,
                "{name}"
            );
        }
    }

    #[test]
    fn tags_give_orientation_and_profile() {
        let data = corpus("derived_tiff_orient6_lzw_coffee.tif");
        let info = probe(&data).unwrap();
        let decoded = decode(&data, &info, 1, &Limits::default()).unwrap();
        assert_eq!(decoded.orientation, Orientation::from_tag(6));
        let data = corpus("derived_tiff_rgb8_lzw_pred_adobergb_icc_rocket.tif");
        let info = probe(&data).unwrap();
        let decoded = decode(&data, &info, 2, &Limits::default()).unwrap();
        assert_eq!(decoded.icc.map(|p| p.len()), Some(560));
    }

    #[test]
    fn a_pyramid_level_is_read_when_large_enough() {
        let data = corpus("derived_tiff_tiled_pyramid_jpeg_moon.tif");
        let info = probe(&data).unwrap();
        // 4096x2048 at shrink 8: the 512x256 level, nothing left to reduce.
        let decoded = decode(&data, &info, 8, &Limits::default()).unwrap();
        assert_eq!((decoded.bitmap.width, decoded.bitmap.height), (512, 256));
        let bytes = decode_bytes(&data, &info, 8);
        assert!(bytes.planned < bytes.full / 8, "{bytes:?}");
        // Not a pyramid: pages of other sizes are never taken for levels.
        let data = corpus("derived_tiff_multipage3_lzw.tif");
        let info = probe(&data).unwrap();
        let decoded = decode(&data, &info, 2, &Limits::default()).unwrap();
        assert_eq!((decoded.bitmap.width, decoded.bitmap.height), (240, 160));
    }

    #[test]
    fn the_allowance_is_checked_before_reading() {
        let data = corpus("derived_tiff_jpeg_ycbcr_BytheWater.tif");
        let info = probe(&data).unwrap();
        let bytes = decode_bytes(&data, &info, 1);
        let tight = Limits {
            max_decode_bytes: bytes.planned - 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&data, &info, 1, &tight),
            Err(Error::OverBudget { .. })
        ));
        let enough = Limits {
            max_decode_bytes: bytes.planned,
            ..Limits::default()
        };
        assert!(decode(&data, &info, 1, &enough).is_ok());
    }

    #[test]
    fn broken_files_give_typed_errors() {
        let data = corpus("derived_bad_tiff_stripoffsets_past_eof_camera.tif");
        let info = probe(&data).unwrap();
        assert!(matches!(
            decode(&data, &info, 1, &Limits::default()),
            Err(Error::Truncated { .. })
        ));
        let data = corpus("derived_bad_trunc40_tiff_lzw_rocket.tif");
        assert!(matches!(probe(&data), Err(Error::Truncated { .. })));
        // Every prefix of a real file: a typed error or an image, never a panic.
        let data = corpus("derived_tiff_orient6_lzw_coffee.tif");
        for len in (0..data.len()).step_by(data.len() / 97) {
            let cut = &data[..len];
            if let Ok(info) = probe(cut) {
                let _ = decode(cut, &info, 2, &Limits::default());
            }
        }
    }
}
