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
//! JPEG-compressed pages (Compression 7) in gray, RGB or YCbCr are read, when shrinking by 2
//! or more, through thumbd's reduced JPEG decoder ([`super::jpeg_scaled`]): each strip or
//! tile is an independent JPEG stream, decoded at 1/2, 1/4 or 1/8 with the JPEGTables tag's
//! tables read first (libtiff's reading), so the full-size pixels are never made. The crate's
//! full decode stays the path for everything else, at shrink 1, and for a page whose chunk the
//! reduced decoder declines.
//!
//! Refused as `unsupported`: planar (band-separate) colour, palettes and Lab (the crate reads
//! neither), float and signed samples, and bit depths other than 1, 2, 4 (gray), 8 and 16.

use std::io::Cursor;

use tiff::decoder::{ChunkType, Decoder, DecodingResult};
use tiff::tags::{CompressionMethod, PlanarConfiguration, SampleFormat, Tag};
use tiff::{ColorType, TiffError, TiffFormatError, TiffUnsupportedError};

use super::jpeg_scaled::{self, ColorKind};
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
    /// Strip: (width, rows per strip, at most the height); tile: (tile width, tile length).
    chunk: (u32, u32),
    tiled: bool,
    /// New-style JPEG (Compression 7) at 8 bits in gray, RGB or YCbCr: what the JPEG stream
    /// holds, as libtiff reads it (YCbCr converted to RGB, RGB and gray taken as coded).
    jpeg: Option<ColorKind>,
    /// Bytes of the JPEGTables tag (0 without one).
    jpeg_tables: u64,
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
        let tiled = decoder.get_chunk_type() == ChunkType::Tile;
        let mut chunk = decoder.chunk_dimensions();
        if !tiled {
            // RowsPerStrip may be 2^32 − 1 for "one strip": the crate reads the page's rows.
            chunk.1 = chunk.1.min(height);
        }
        let compression = decoder
            .find_tag_unsigned::<u16>(Tag::Compression)
            .map_err(map_error)?;
        let photometric = decoder
            .find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)
            .map_err(map_error)?;
        let jpeg = match (samples, photometric) {
            _ if compression != Some(CompressionMethod::ModernJPEG.to_u16()) || bits != 8 => None,
            // BlackIsZero only: WhiteIsZero would need inverting.
            (Samples::Gray { bits: 8 }, Some(1)) => Some(ColorKind::Gray),
            (Samples::Rgb, _) => Some(ColorKind::Rgb),
            (Samples::YCbCr, _) => Some(ColorKind::YCbCr),
            _ => None,
        };
        let jpeg_tables = match jpeg {
            Some(_) => decoder
                .find_tag(Tag::JPEGTables)
                .map_err(map_error)?
                .map_or(0, |v| v.into_u8_vec().map_or(0, |t| t.len() as u64)),
            None => 0,
        };
        Ok(Layout {
            samples,
            sample_bytes: if bits == 16 { 2 } else { 1 },
            stride,
            width,
            height,
            chunk,
            tiled,
            jpeg,
            jpeg_tables,
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

    /// The DCT scale (8, 4 or 2: the largest not above `rest`, as for JPEG files) and the box
    /// factor left after it, when the page's chunks can be read by the reduced JPEG decoder at
    /// that scale: every chunk but the last in a row or column must be a whole number of
    /// reduced pixels, so that reduced chunks tile the reduced page.
    fn jpeg_scale(&self, rest: u32) -> Option<(u32, u32)> {
        self.jpeg?;
        let aligned = |s: u32, chunk: u32, page: u32| chunk.is_multiple_of(s) || chunk >= page;
        [8, 4, 2]
            .into_iter()
            .find(|&s| {
                s <= rest
                    && aligned(s, self.chunk.0, self.width)
                    && aligned(s, self.chunk.1, self.height)
            })
            .map(|s| (s, rest / s))
    }

    /// Peak bytes of reading this page through the reduced JPEG decoder at 1/`scale`, then
    /// box-shrunk by `factor`: the output and its sums, the band of reduced tiles, one chunk in
    /// the decoder (as [`super::jpeg::reduced_bytes`] counts a file: its output, a plane per
    /// component, and a progressive file's coefficients, here padded to 32×32 MCUs, the
    /// largest sampling), and the chunk offsets and tables as read (the crate's tag values
    /// take 32 bytes an entry before they become integers).
    fn jpeg_bytes(&self, scale: u32, factor: u32) -> u64 {
        let s = u64::from(scale);
        let channels = self.model().channels() as u64;
        let (w, h) = (
            u64::from(self.width).div_ceil(s),
            u64::from(self.height).div_ceil(s),
        );
        let b = u64::from(factor.max(1));
        let out = if b == 1 {
            w * h * channels
        } else {
            w.div_ceil(b) * h.div_ceil(b) * channels + w.div_ceil(b) * channels * 4
        };
        let (cw, ch) = (u64::from(self.chunk.0), u64::from(self.chunk.1));
        let band = if self.tiled {
            w * ch.div_ceil(s) * channels
        } else {
            0
        };
        let padded = cw.div_ceil(32) * 32 * ch.div_ceil(32) * 32;
        let components = self.stride;
        let coefficients = 2 * components * if s == 8 { padded / 64 } else { padded };
        let reduced_chunk = cw.div_ceil(s) * ch.div_ceil(s) * channels;
        let mut decoder = reduced_chunk + components * padded / (s * s) + coefficients;
        // A chunk the page ends inside a reduced pixel of is decoded whole, then box-shrunk
        // (see `read_jpeg_page`): a strip's frame height is only known once it is read.
        let edge =
            (self.tiled && !self.width.is_multiple_of(scale)) || !self.height.is_multiple_of(scale);
        if edge {
            let whole = cw * ch * channels + components * padded + 2 * components * padded;
            decoder = decoder.max(whole + reduced_chunk + cw.div_ceil(s) * channels * 4);
        }
        let chunks =
            u64::from(self.width).div_ceil(cw.max(1)) * u64::from(self.height).div_ceil(ch.max(1));
        out + band + decoder + 64 * chunks + 40 * self.jpeg_tables + (64 << 10)
    }
}

/// The page to read at `shrink` and the reduction left for the box filter: the first page, or
/// the smallest pyramid level at least `ceil(side / shrink)`.
struct Plan {
    page: usize,
    layout: Layout,
    /// Shrink still to apply to the chosen page.
    rest: u32,
    /// (DCT scale, box factor) when the page is read through the reduced JPEG decoder.
    jpeg: Option<(u32, u32)>,
}

impl Plan {
    /// Peak bytes of the planned path. The reduced JPEG path counts the crate's too: a page
    /// it declines is then read by the crate within the same allowance (the worker re-reserves
    /// only for JPEG files' declines).
    fn bytes(&self) -> u64 {
        let crate_path = self.layout.bytes(self.rest);
        match self.jpeg {
            Some((scale, factor)) => crate_path.max(self.layout.jpeg_bytes(scale, factor)),
            None => crate_path,
        }
    }
}

fn plan(decoder: &mut Decoder<Cursor<&[u8]>>, shrink: u32) -> Result<Plan, Error> {
    let first = Layout::of(decoder)?;
    let mut best = Plan {
        page: 0,
        layout: first,
        rest: shrink.max(1),
        jpeg: None,
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
                jpeg: None,
            };
        }
    }
    if best.page != 0 {
        decoder.seek_to_image(best.page).map_err(map_error)?;
    }
    // The reduced JPEG path only where its peak stays below the full decode's, which is what
    // a caller that cannot afford the plan falls back to reserving.
    let full = first.bytes(1);
    best.jpeg = best
        .layout
        .jpeg_scale(best.rest)
        .filter(|&(s, b)| best.layout.jpeg_bytes(s, b) <= full);
    Ok(best)
}

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    decode_page(data, info, shrink, limits).map(|(decoded, _)| decoded)
}

/// How a page was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePath {
    /// Through the tiff crate, reduced by the box filter alone.
    Crate,
    /// Through the reduced JPEG decoder at 1/`scale`, then the box filter by `factor`.
    ReducedJpeg { scale: u32, factor: u32 },
}

/// [`decode`], and the path the page took.
fn decode_page(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<(Decoded, PagePath), Error> {
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
    let plan = plan(&mut decoder, shrink)?;
    limits.afford_decode(|| plan.bytes())?;
    let (layout, rest) = (plan.layout, plan.rest);
    let reduced = plan.jpeg.and_then(|(scale, factor)| {
        read_jpeg_page(&mut decoder, data, &layout, scale, factor)
            .map(|bitmap| (bitmap, PagePath::ReducedJpeg { scale, factor }))
    });
    let (bitmap, path) = match reduced {
        Some(done) => done,
        // Declined (or not planned): the crate reads the page, within the same bound.
        None => (read_page(&mut decoder, &layout, rest)?, PagePath::Crate),
    };
    Ok((
        Decoded {
            bitmap,
            icc,
            orientation,
        },
        path,
    ))
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
    // Rows are reduced as they arrive; at 1 the shrinker only collects them.
    let mut sink = BoxShrinker::new(width, height, shrink, model);
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
                sink.push_row(&row);
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
            sink.push_row(&band[r * row_out..(r + 1) * row_out]);
        }
    }
    Ok(sink.finish())
}

/// Reads a JPEG-compressed page ([`Layout::jpeg`]) through the reduced JPEG decoder at
/// 1/`scale`, each strip or tile from its raw bytes with the JPEGTables tables, placing the
/// reduced chunks into the page reduced by `scale`, then box-shrinks that by `factor`.
///
/// `None` when any chunk is not what the reduced decoder reads (offsets past the end, a frame
/// that does not fit its chunk, 12-bit or lossless coding, damage it declines): the caller
/// then reads the page through the crate, which reports what is wrong with it as before.
fn read_jpeg_page(
    decoder: &mut Decoder<Cursor<&[u8]>>,
    data: &[u8],
    layout: &Layout,
    scale: u32,
    factor: u32,
) -> Option<Bitmap> {
    let kind = layout.jpeg?;
    let (offsets, counts) = if layout.tiled {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    let offsets = decoder.find_tag_unsigned_vec::<u64>(offsets).ok()??;
    let counts = decoder.find_tag_unsigned_vec::<u64>(counts).ok()??;
    let tables = match decoder.find_tag(Tag::JPEGTables).ok()? {
        Some(value) => Some(value.into_u8_vec().ok()?),
        None => None,
    };
    let (width, height) = (layout.width, layout.height);
    let (chunk_w, chunk_h) = layout.chunk;
    if chunk_w == 0 || chunk_h == 0 {
        return None;
    }
    let (across, down) = (width.div_ceil(chunk_w), height.div_ceil(chunk_h));
    // The page at 1/scale, and each chunk's place in it (chunks are aligned: `jpeg_scale`).
    let reduce = |side: u32| side.div_ceil(scale) as usize;
    let (page_w, page_h) = (reduce(width), reduce(height));
    let model = layout.model();
    let channels = model.channels();
    let row_out = page_w * channels;
    let mut sink = BoxShrinker::new(page_w as u32, page_h as u32, factor, model);
    let band_rows = reduce(chunk_h);
    let mut band = vec![0u8; if layout.tiled { row_out * band_rows } else { 0 }];
    for band_index in 0..down {
        let rows_here = chunk_h.min(height - band_index * chunk_h);
        for chunk_x in 0..across {
            let index = (band_index * across + chunk_x) as usize;
            let (offset, count) = (*offsets.get(index)?, *counts.get(index)?);
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(count).ok()?)?;
            let stream = data.get(start..end)?;
            // The frame is the chunk's size; a last strip may be coded short or padded.
            let x0 = chunk_x * chunk_w;
            let cols_here = chunk_w.min(width - x0);
            let (fw, fh) = jpeg_scaled::frame_size(stream)?;
            if fw < cols_here || fh < rows_here || fw > chunk_w || fh > chunk_h {
                return None;
            }
            let decode = |scale| {
                jpeg_scaled::decode_with_tables(tables.as_deref(), stream, (fw, fh), scale, kind)
                    .ok()
            };
            // Where the page ends inside a reduced pixel of the frame (a clipped tile, or a
            // strip coded taller than its rows), that pixel would average in the padding the
            // writer filled the frame with: such a chunk is decoded whole and box-shrunk over
            // its own pixels. Only the last column or row of chunks, and only when the page
            // side is not a multiple of `scale`.
            let straddles = (fw > cols_here && !cols_here.is_multiple_of(scale))
                || (fh > rows_here && !rows_here.is_multiple_of(scale));
            let (image_w, pixels) = if straddles {
                let full = decode(1)?;
                let mut shrinker = BoxShrinker::new(cols_here, rows_here, scale, model);
                for row in full
                    .data
                    .chunks_exact(full.width * channels)
                    .take(rows_here as usize)
                {
                    shrinker.push_row(row);
                }
                let reduced = shrinker.finish();
                (reduced.width as usize, reduced.data)
            } else {
                let image = decode(scale)?;
                (image.width, image.data)
            };
            let src_row = image_w * channels;
            let (out_x, out_w) = (reduce(x0), reduce(x0 + cols_here) - reduce(x0));
            for r in 0..reduce(rows_here) {
                let src = pixels.get(r * src_row..r * src_row + out_w * channels)?;
                if layout.tiled {
                    let at = r * row_out + out_x * channels;
                    band[at..at + out_w * channels].copy_from_slice(src);
                } else {
                    sink.push_row(src);
                }
            }
        }
        if layout.tiled {
            for r in 0..reduce(rows_here) {
                sink.push_row(&band[r * row_out..(r + 1) * row_out]);
            }
        }
    }
    Some(sink.finish())
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
            planned: plan.bytes(),
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

    /// A file of `tests/fixtures/tiff/` (see the README there).
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/tiff/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Page `page` read by the crate and box-shrunk by `shrink`: the full-size decode reduced
    /// by the box filter alone, which a reduced JPEG read must match.
    fn crate_read(data: &[u8], page: usize, shrink: u32) -> Bitmap {
        let mut decoder = open(data).unwrap();
        decoder.seek_to_image(page).unwrap();
        let layout = Layout::of(&mut decoder).unwrap();
        read_page(&mut decoder, &layout, shrink).unwrap()
    }

    fn psnr(a: &Bitmap, b: &Bitmap) -> f64 {
        assert_eq!((a.width, a.height, a.model), (b.width, b.height, b.model));
        let se: f64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let mse = se / a.data.len() as f64;
        10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
    }

    /// Decodes `data` at `shrink`, asserts that the page went through the reduced JPEG decoder
    /// at `scale` (not the crate), and compares it with the crate's read of `page` box-shrunk
    /// by the same total factor.
    fn assert_reduced_read(name: &str, data: &[u8], shrink: u32, page: usize, scale: u32) {
        let info = probe(data).unwrap();
        let (decoded, path) = decode_page(data, &info, shrink, &Limits::default()).unwrap();
        let rest = match path {
            PagePath::ReducedJpeg { scale: s, factor } => {
                assert_eq!(s, scale, "{name} at {shrink}");
                s * factor
            }
            PagePath::Crate => panic!("{name} at {shrink}: the crate read the page"),
        };
        let reference = crate_read(data, page, rest);
        let db = psnr(&decoded.bitmap, &reference);
        // Measured 46–60 dB; a chunk misplaced by one reduced pixel, or the padding of a
        // clipped tile averaged in, falls under 30.
        assert!(db >= 40.0, "{name} at {shrink}: {db:.1} dB");
    }

    #[test]
    fn jpeg_pages_are_read_reduced_and_match_the_box_shrunk_full_decode() {
        let strips = corpus("derived_tiff_jpeg_ycbcr_BytheWater.tif");
        // 5 is a 256 px thumbnail's shrink: 1/4, nothing left for the box filter.
        for (shrink, scale) in [(2, 2), (3, 2), (5, 4), (8, 8), (16, 8), (24, 8)] {
            assert_reduced_read("BytheWater", &strips, shrink, 0, scale);
        }
        // Past the smallest level (256×128, a clipped tile): 2 left, read at 1/2.
        let pyramid = corpus("derived_tiff_tiled_pyramid_jpeg_moon.tif");
        assert_reduced_read("moon", &pyramid, 32, 4, 2);
        assert_reduced_read("moon", &pyramid, 64, 4, 4);
        // Gray and YCbCr with tiles and strips clipped at the right and bottom.
        for name in [
            "jpeg_gray_tiled64_333x201.tif",
            "jpeg_gray_strips128_333x201.tif",
            "jpeg_ycbcr_tiled32x48_301x187.tif",
        ] {
            let data = fixture(name);
            for (shrink, scale) in [(2, 2), (4, 4), (7, 4), (8, 8)] {
                assert_reduced_read(name, &data, shrink, 0, scale);
            }
        }
    }

    #[test]
    fn a_pyramid_level_tiles_the_reduced_page() {
        // The 4096×2048 first page in 256 px tiles, each reduced on its own, against the crate.
        let data = corpus("derived_tiff_tiled_pyramid_jpeg_moon.tif");
        let mut decoder = open(&data).unwrap();
        let layout = Layout::of(&mut decoder).unwrap();
        for (scale, factor) in [(8, 1), (4, 2)] {
            let reduced = read_jpeg_page(&mut decoder, &data, &layout, scale, factor).unwrap();
            assert_eq!((reduced.width, reduced.height), (512, 256));
            let db = psnr(&reduced, &crate_read(&data, 0, 8));
            assert!(db >= 40.0, "1/{scale} then {factor}: {db:.1} dB");
        }
    }

    /// Photometric RGB: the JPEG stream is taken as RGB, not converted (as libtiff and the
    /// crate read it). A YCbCr file relabelled RGB must then come out as its coded samples.
    #[test]
    fn photometric_rgb_jpeg_is_taken_as_coded() {
        let mut data = fixture("jpeg_ycbcr_tiled32x48_301x187.tif");
        patch_tag(&mut data, 262, 2);
        let info = probe(&data).unwrap();
        let (decoded, path) = decode_page(&data, &info, 4, &Limits::default()).unwrap();
        assert_eq!(
            path,
            PagePath::ReducedJpeg {
                scale: 4,
                factor: 1
            }
        );
        let reference = crate_read(&data, 0, 4);
        assert!(psnr(&decoded.bitmap, &reference) >= 40.0);
        // Not converted: far from the YCbCr reading of the same stream.
        let ycbcr = fixture("jpeg_ycbcr_tiled32x48_301x187.tif");
        let converted = crate_read(&ycbcr, 0, 4);
        assert!(psnr(&decoded.bitmap, &converted) < 20.0);
    }

    /// Sets the value of the first-IFD entry `tag` (a little-endian file, SHORT or LONG held in
    /// the entry) or, for an array, its first element.
    fn patch_tag(data: &mut [u8], tag: u16, value: u32) {
        assert_eq!(&data[..2], b"II");
        let u16_at = |d: &[u8], at: usize| u16::from_le_bytes([d[at], d[at + 1]]);
        let u32_at = |d: &[u8], at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap());
        let ifd = u32_at(data, 4) as usize;
        for i in 0..usize::from(u16_at(data, ifd)) {
            let entry = ifd + 2 + 12 * i;
            if u16_at(data, entry) != tag {
                continue;
            }
            let (kind, count) = (u16_at(data, entry + 2), u32_at(data, entry + 4));
            let size = if kind == 3 { 2 } else { 4 };
            let at = if count as usize * size <= 4 {
                entry + 8
            } else {
                u32_at(data, entry + 8) as usize
            };
            data[at..at + size].copy_from_slice(&value.to_le_bytes()[..size]);
            return;
        }
        panic!("no tag {tag}");
    }

    #[test]
    fn shrink_one_and_unreadable_chunks_take_the_crate() {
        let data = corpus("derived_tiff_jpeg_ycbcr_BytheWater.tif");
        let info = probe(&data).unwrap();
        let (_, path) = decode_page(&data, &info, 1, &Limits::default()).unwrap();
        assert_eq!(path, PagePath::Crate);
        // A strip past the end: declined, and the crate reports it as before.
        let mut cut = data.clone();
        patch_tag(&mut cut, 273, data.len() as u32 + 10);
        assert!(matches!(
            decode(&cut, &info, 8, &Limits::default()),
            Err(Error::Truncated { .. })
        ));
        // A first strip whose frame is taller than the strip: declined, typed error or image.
        let mut tall = data.clone();
        let sof = tall.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        tall[sof + 5..sof + 7].copy_from_slice(&200u16.to_be_bytes());
        let mut decoder = open(&tall).unwrap();
        let layout = Layout::of(&mut decoder).unwrap();
        assert!(read_jpeg_page(&mut decoder, &tall, &layout, 8, 1).is_none());
        let _ = decode(&tall, &info, 8, &Limits::default());
    }

    #[test]
    fn the_reduced_jpeg_plan_is_bounded_and_checked() {
        let data = corpus("derived_tiff_jpeg_ycbcr_BytheWater.tif");
        let info = probe(&data).unwrap();
        for shrink in [2, 5, 8, 16] {
            let bytes = decode_bytes(&data, &info, shrink);
            let mut decoder = open(&data).unwrap();
            let layout = Layout::of(&mut decoder).unwrap();
            let (scale, factor) = layout.jpeg_scale(shrink).unwrap();
            // Both paths are covered (a decline falls back within the allowance), and the
            // plan stays below the full decode.
            let crate_path = layout.bytes(shrink);
            assert!(bytes.planned >= crate_path, "{shrink}: {bytes:?}");
            assert!(
                bytes.planned >= layout.jpeg_bytes(scale, factor),
                "{shrink}"
            );
            assert!(bytes.planned <= bytes.full, "{shrink}: {bytes:?}");
            let tight = Limits {
                max_decode_bytes: bytes.planned - 1,
                ..Limits::default()
            };
            assert!(matches!(
                decode(&data, &info, shrink, &tight),
                Err(Error::OverBudget { .. })
            ));
            let enough = Limits {
                max_decode_bytes: bytes.planned,
                ..Limits::default()
            };
            let (_, path) = decode_page(&data, &info, shrink, &enough).unwrap();
            assert!(matches!(path, PagePath::ReducedJpeg { .. }), "{shrink}");
        }
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
