//! BMP through the image crate's decoder, with the header read here first.
//!
//! Handles the Windows headers (BITMAPCOREHEADER, BITMAPINFOHEADER and its V2–V5 extensions),
//! bottom-up and top-down rows, 1/2/4/8-bit palettes, 16/24/32-bit colour, BI_BITFIELDS
//! (with an alpha mask: RGBA), and RLE4/RLE8. A 32-bit BI_RGB file keeps its fourth byte as
//! alpha unless that byte is zero everywhere (the convention of browsers and ImageMagick, so
//! libvips, for files whose writers left it unset); likewise an alpha mask whose alpha is zero
//! everywhere is opaque.
//!
//! Refused: JPEG/PNG-compressed and CMYK BMPs, OS/2 2.x headers (unsupported); a size over
//! 65535 (the crate's limit, unsupported); an uncompressed file shorter than its declared rows
//! (truncated, from the header, before anything is allocated).

use std::io::{self, BufRead, Cursor, Read, Seek, SeekFrom};

use image::codecs::bmp::BmpDecoder;
use image::{ColorType, ImageDecoder, ImageError};

use super::{DecodeBytes, Decoded};
use crate::bitmap::{Bitmap, BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

const FORMAT: &str = "bmp";

/// The image crate refuses larger sides.
const MAX_SIDE: u32 = 0xFFFF;

/// The crate's buffers beside the pixels (palette, one row of indices or an RLE literal run),
/// generously.
const DECODER_BYTES: u64 = 64 << 10;

const BI_RGB: u32 = 0;
const BI_RLE8: u32 = 1;
const BI_RLE4: u32 = 2;
const BI_BITFIELDS: u32 = 3;

/// What the file and DIB headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    width: u32,
    height: u32,
    top_down: bool,
    bit_count: u16,
    compression: u32,
    /// Offset of the pixel data.
    data_offset: usize,
    /// BI_BITFIELDS with a non-zero alpha mask (in a V3+ header).
    alpha_mask: bool,
    /// Size of the DIB header (the palette follows it).
    dib_size: usize,
    /// biClrUsed: palette entries, 0 for all that the bit count allows.
    colors_used: u32,
}

impl Header {
    /// Bytes of one stored row (padded to 4 bytes) of an uncompressed file.
    fn stride(&self) -> u64 {
        (u64::from(self.width) * u64::from(self.bit_count)).div_ceil(32) * 4
    }

    fn compressed(&self) -> bool {
        matches!(self.compression, BI_RLE8 | BI_RLE4)
    }

    /// Whether the file can hold alpha: a 32-bit BI_RGB (its fourth byte) or an alpha mask.
    fn may_have_alpha(&self) -> bool {
        (self.compression == BI_RGB && self.bit_count == 32) || self.alpha_mask
    }
}

fn truncated(detail: impl Into<String>) -> Error {
    Error::Truncated {
        format: FORMAT,
        detail: detail.into(),
    }
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::Corrupt {
        format: FORMAT,
        detail: detail.into(),
    }
}

/// Reads BITMAPFILEHEADER and the DIB header and checks them against the data: nothing is
/// allocated, and an uncompressed file too short for its rows is refused here.
fn parse(data: &[u8]) -> Result<Header, Error> {
    if data.len() < 18 {
        return Err(truncated("file ends inside the file header"));
    }
    if &data[..2] != b"BM" {
        return Err(corrupt("no BM signature"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let data_offset = u32_at(10) as usize;
    let dib_size = u32_at(14);
    let need = |end: usize| {
        if data.len() < end {
            Err(truncated("file ends inside the DIB header"))
        } else {
            Ok(())
        }
    };
    let (width, height, top_down, planes, bit_count, compression, colors_used);
    match dib_size {
        12 => {
            need(26)?;
            width = u32::from(u16_at(18));
            height = u32::from(u16_at(20));
            top_down = false;
            planes = u16_at(22);
            bit_count = u16_at(24);
            compression = BI_RGB;
            colors_used = 0;
        }
        40 | 52 | 56 | 108 | 124 => {
            need(14 + 40)?;
            let w = u32_at(18) as i32;
            let h = u32_at(22) as i32;
            if w < 0 || h == i32::MIN {
                return Err(corrupt(format!("impossible size {w}x{h}")));
            }
            width = w as u32;
            height = h.unsigned_abs();
            top_down = h < 0;
            planes = u16_at(26);
            bit_count = u16_at(28);
            compression = u32_at(30);
            colors_used = u32_at(46);
        }
        16 | 64 => return Err(Error::Unsupported("OS/2 2.x BMP header".into())),
        other => return Err(corrupt(format!("unknown DIB header size {other}"))),
    }
    if planes != 1 {
        return Err(corrupt(format!("{planes} planes")));
    }
    match (compression, bit_count) {
        (BI_RGB, 1 | 2 | 4 | 8 | 16 | 24 | 32)
        | (BI_RLE8, 8)
        | (BI_RLE4, 4)
        | (BI_BITFIELDS, 16 | 32) => {}
        (4, _) => return Err(Error::Unsupported("JPEG-compressed BMP".into())),
        (5, _) => return Err(Error::Unsupported("PNG-compressed BMP".into())),
        (6 | 11..=13, _) => {
            return Err(Error::Unsupported(format!(
                "BMP compression {compression} (alpha bitfields or CMYK)"
            )))
        }
        _ => {
            return Err(corrupt(format!(
                "{bit_count} bits per pixel with compression {compression}"
            )))
        }
    }
    if dib_size == 12 && !matches!(bit_count, 1 | 4 | 8 | 24) {
        return Err(corrupt(format!(
            "{bit_count} bits per pixel in a core header"
        )));
    }
    if top_down && !matches!(compression, BI_RGB | BI_BITFIELDS) {
        return Err(corrupt("top-down rows with RLE compression"));
    }
    // The alpha mask is part of V3+ headers (after the colour masks at 54..66).
    let alpha_mask = compression == BI_BITFIELDS && dib_size >= 56 && {
        need(70)?;
        u32_at(66) != 0
    };
    let header = Header {
        width,
        height,
        top_down,
        bit_count,
        compression,
        data_offset,
        alpha_mask,
        dib_size: dib_size as usize,
        colors_used,
    };
    if width == 0 || height == 0 {
        // The probe refuses zero sizes with its own message.
        return Ok(header);
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::Unsupported(format!(
            "BMP of {width}x{height} (the decoder's limit is {MAX_SIDE} per side)"
        )));
    }
    let header_end = 14 + dib_size as usize;
    if data_offset < header_end {
        return Err(corrupt(format!(
            "pixel data at {data_offset}, inside the headers"
        )));
    }
    if data_offset >= data.len() {
        return Err(truncated("file ends before the pixel data"));
    }
    if !header.compressed() {
        let needed = header.stride() * u64::from(height);
        let available = (data.len() - data_offset) as u64;
        if available < needed {
            return Err(truncated(format!(
                "{width}x{height} at {bit_count} bits needs {needed} bytes of pixels, the file has {available}"
            )));
        }
    }
    Ok(header)
}

pub(super) fn header(data: &[u8]) -> Result<ImageInfo, Error> {
    let h = parse(data)?;
    Ok(ImageInfo {
        format: InputFormat::Bmp,
        width: h.width,
        height: h.height,
        channels: if h.may_have_alpha() { 4 } else { 3 },
        jpeg_coding: None,
        adobe_transform: None,
    })
}

/// Peak bytes: the full image (RGB or RGBA: the crate has no row-by-row interface), its
/// reduction and box sums when `shrink` > 1, the crate's buffers.
fn bytes_for(width: u32, height: u32, channels: u64, shrink: u32) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    let shrink = u64::from(shrink.max(1));
    let full = w * h * channels;
    let reduced = if shrink > 1 {
        let rw = w.div_ceil(shrink);
        rw * h.div_ceil(shrink) * channels + rw * channels * 4
    } else {
        0
    };
    // A row of stored bytes (up to 4 per pixel).
    full + reduced + w * 4 + DECODER_BYTES
}

pub(super) fn decode_bytes(_data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    let channels = u64::from(info.channels.clamp(3, 4));
    DecodeBytes {
        planned: bytes_for(info.width, info.height, channels, shrink),
        full: bytes_for(info.width, info.height, channels, 1),
    }
}

pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    bytes_for(info.width, info.height, 4, 1)
}

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    let h = parse(data)?;
    if (h.width, h.height) != (info.width, info.height) {
        return Err(corrupt("header changed between reads"));
    }
    let channels = if h.may_have_alpha() { 4 } else { 3 };
    limits.afford_decode(|| bytes_for(h.width, h.height, channels, shrink))?;
    let full = if h.compression == BI_RGB && h.bit_count == 32 {
        decode_bgrx(data, &h)
    } else if h.compressed() {
        decode_rle(data, &h)?
    } else {
        decode_with_crate(Cursor::new(data), &h)?
    };
    let full = opaque_if_alpha_unset(full);
    let bitmap = if shrink > 1 {
        let mut shrinker = BoxShrinker::new(full.width, full.height, shrink, full.model);
        for row in full.data.chunks_exact(full.row_bytes()) {
            shrinker.push_row(row);
        }
        shrinker.finish()
    } else {
        full
    };
    Ok(Decoded {
        bitmap,
        icc: None,
        orientation: Orientation::default(),
    })
}

/// 32-bit BI_RGB: B, G, R and a fourth byte kept as alpha (see [`opaque_if_alpha_unset`]).
/// The crate drops that byte, so these rows are read here; [`parse`] checked their length.
fn decode_bgrx(data: &[u8], h: &Header) -> Bitmap {
    let (w, rows) = (h.width as usize, h.height as usize);
    let stride = w * 4;
    let pixels = &data[h.data_offset..][..stride * rows];
    let mut out = Vec::with_capacity(stride * rows);
    for y in 0..rows {
        let stored = if h.top_down { y } else { rows - 1 - y };
        for px in pixels[stored * stride..][..stride].chunks_exact(4) {
            out.extend_from_slice(&[px[2], px[1], px[0], px[3]]);
        }
    }
    Bitmap::new(h.width, h.height, ColorModel::Rgba, out)
}

/// An alpha channel that is zero everywhere was never written (old 32-bit writers leave the
/// fourth byte at 0): the image is opaque.
fn opaque_if_alpha_unset(bitmap: Bitmap) -> Bitmap {
    if bitmap.model != ColorModel::Rgba || bitmap.data.chunks_exact(4).any(|p| p[3] != 0) {
        return bitmap;
    }
    let rgb: Vec<u8> = bitmap
        .data
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Bitmap::new(bitmap.width, bitmap.height, ColorModel::Rgb, rgb)
}

fn decode_with_crate<R: BufRead + Seek>(reader: R, h: &Header) -> Result<Bitmap, Error> {
    let decoder = BmpDecoder::new(reader).map_err(map_error)?;
    let (width, height) = decoder.dimensions();
    if (width, height) != (h.width, h.height) {
        return Err(Error::Internal(format!(
            "bmp: the crate read {width}x{height}, the header {}x{}",
            h.width, h.height
        )));
    }
    let model = match decoder.color_type() {
        ColorType::Rgb8 => ColorModel::Rgb,
        ColorType::Rgba8 => ColorModel::Rgba,
        other => return Err(Error::Internal(format!("bmp: crate gave {other:?}"))),
    };
    let size = usize::try_from(decoder.total_bytes())
        .map_err(|_| Error::Internal("bmp: size overflows".into()))?;
    let mut pixels = vec![0u8; size];
    decoder.read_image(&mut pixels).map_err(map_error)?;
    Ok(Bitmap::new(width, height, model, pixels))
}

/// RLE4/RLE8, whose codes may skip pixels (delta, early end of line or of bitmap). libvips
/// reads BMP through ImageMagick, which paints skipped pixels with palette entry 0 (its index
/// buffer starts zeroed), as do out-of-range indices; the crate paints them black, which
/// differs from vipsthumbnail's output by 7 dB on the corpus's bmp-js files (entry 0 white).
/// So the crate decodes the file with an identity palette (entry i = grey i) laid over the
/// real one, which turns its output into indices (skipped = 0), mapped here through the
/// real palette.
fn decode_rle(data: &[u8], h: &Header) -> Result<Bitmap, Error> {
    let start = 14 + h.dib_size;
    let entries = if h.colors_used == 0 {
        1usize << h.bit_count
    } else {
        h.colors_used as usize
    };
    if entries > 1 << h.bit_count {
        return Err(corrupt(format!(
            "{entries} palette entries at {} bits",
            h.bit_count
        )));
    }
    let stored = data
        .get(start..start + entries * 4)
        .ok_or_else(|| truncated("file ends inside the palette"))?;
    let mut palette = [[0u8; 3]; 256];
    for (entry, bgr) in palette.iter_mut().zip(stored.chunks_exact(4)) {
        *entry = [bgr[2], bgr[1], bgr[0]];
    }
    let first = palette[0];
    palette[entries..].fill(first);
    let identity: Vec<u8> = (0..entries)
        .flat_map(|i| [i as u8, i as u8, i as u8, 0])
        .collect();
    let reader = Patched {
        data,
        at: start,
        patch: &identity,
        pos: 0,
    };
    let mut bitmap = decode_with_crate(reader, h)?;
    if bitmap.model != ColorModel::Rgb {
        return Err(Error::Internal("bmp: RLE decoded with alpha".into()));
    }
    for px in bitmap.data.chunks_exact_mut(3) {
        px.copy_from_slice(&palette[usize::from(px[0])]);
    }
    Ok(bitmap)
}

/// `data` read with `patch` in place of `data[at..at + patch.len()]`, without copying it.
struct Patched<'a> {
    data: &'a [u8],
    at: usize,
    patch: &'a [u8],
    pos: u64,
}

impl Read for Patched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Patched<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let len = self.data.len();
        let pos = usize::try_from(self.pos).unwrap_or(usize::MAX).min(len);
        let patch_end = self.at + self.patch.len();
        Ok(if pos < self.at {
            &self.data[pos..self.at.min(len)]
        } else if pos < patch_end {
            &self.patch[pos - self.at..]
        } else {
            &self.data[pos..]
        })
    }

    fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n as u64);
    }
}

impl Seek for Patched<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => (self.data.len() as u64).checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

fn map_error(err: ImageError) -> Error {
    match err {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated("file ends inside the pixel data")
        }
        ImageError::Unsupported(e) => Error::Unsupported(format!("BMP: {e}")),
        ImageError::Limits(e) => Error::Unsupported(format!("BMP: {e}")),
        other => corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::probe;

    use super::super::formats_corpus as corpus;

    fn decode_file(data: &[u8], shrink: u32) -> Result<Bitmap, Error> {
        let info = header(data)?;
        decode(data, &info, shrink, &Limits::default()).map(|d| d.bitmap)
    }

    /// A bottom-up BMP with a BITMAPINFOHEADER.
    fn bmp(width: i32, height: i32, bit_count: u16, compression: u32, pixels: &[u8]) -> Vec<u8> {
        let palette: Vec<u8> = if bit_count <= 8 {
            (0..1u32 << bit_count)
                .flat_map(|i| [i as u8, 0, 255 - i as u8, 0])
                .collect()
        } else {
            Vec::new()
        };
        let offset = 14 + 40 + palette.len() as u32;
        let mut out = Vec::new();
        out.extend_from_slice(b"BM");
        out.extend_from_slice(&(offset + pixels.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&40u32.to_le_bytes());
        out.extend_from_slice(&width.to_le_bytes());
        out.extend_from_slice(&height.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&bit_count.to_le_bytes());
        out.extend_from_slice(&compression.to_le_bytes());
        out.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&palette);
        out.extend_from_slice(pixels);
        out
    }

    #[test]
    fn corpus_files_decode() {
        // (file, width, height, model)
        for (name, w, h, model) in [
            ("bmpjs_bit1.bmp", 100, 100, ColorModel::Rgb),
            ("bmpjs_bit16_565.bmp", 100, 100, ColorModel::Rgb),
            ("bmpjs_bit32_alpha.bmp", 100, 100, ColorModel::Rgba),
            ("bmpjs_bit4_RLE.bmp", 100, 100, ColorModel::Rgb),
            ("bmpjs_bit8_RLE.bmp", 100, 100, ColorModel::Rgb),
            (
                "derived_bmp_24bit_bottomup_coffee.bmp",
                600,
                400,
                ColorModel::Rgb,
            ),
            (
                "gdkpixbuf_mandatory-bitmasks.bmp",
                350,
                400,
                ColorModel::Rgba,
            ),
        ] {
            let data = corpus(name);
            let info = probe(&data, &Limits::default()).unwrap();
            assert_eq!((info.width, info.height), (w, h), "{name}");
            let full = decode_file(&data, 1).unwrap();
            assert_eq!(
                (full.width, full.height, full.model),
                (w, h, model),
                "{name}"
            );
            let reduced = decode_file(&data, 3).unwrap();
            assert_eq!(
                (reduced.width, reduced.height),
                (w.div_ceil(3), h.div_ceil(3)),
                "{name}"
            );
        }
    }

    #[test]
    fn top_down_equals_bottom_up() {
        let up = decode_file(&corpus("derived_bmp_24bit_bottomup_coffee.bmp"), 1).unwrap();
        let down = decode_file(&corpus("derived_bmp_24bit_topdown_coffee.bmp"), 1).unwrap();
        assert_eq!(up, down);
    }

    #[test]
    fn lying_size_is_truncated_from_the_header() {
        let data = corpus("derived_bad_bmp_declared_50000x50000_coffee.bmp");
        // The header refuses it, before the probe's pixel limit would.
        assert!(matches!(
            probe(&data, &Limits::default()),
            Err(Error::Truncated { .. })
        ));
        // Under the crate's side limit: still refused before decoding.
        let mut small = data.clone();
        small[18..22].copy_from_slice(&1000i32.to_le_bytes());
        small[22..26].copy_from_slice(&1000i32.to_le_bytes());
        assert!(matches!(header(&small), Err(Error::Truncated { .. })));
    }

    #[test]
    fn bgrx_alpha_is_kept_unless_all_zero() {
        // 2x1, bottom-up is the only row.
        let with = bmp(2, 1, 32, BI_RGB, &[1, 2, 3, 0, 4, 5, 6, 128]);
        let b = decode_file(&with, 1).unwrap();
        assert_eq!(b.model, ColorModel::Rgba);
        assert_eq!(b.data, [3, 2, 1, 0, 6, 5, 4, 128]);
        let without = bmp(2, 1, 32, BI_RGB, &[1, 2, 3, 0, 4, 5, 6, 0]);
        let b = decode_file(&without, 1).unwrap();
        assert_eq!(b.model, ColorModel::Rgb);
        assert_eq!(b.data, [3, 2, 1, 6, 5, 4]);
        // Rows bottom-up.
        let two = bmp(1, 2, 32, BI_RGB, &[1, 1, 1, 255, 2, 2, 2, 255]);
        assert_eq!(
            decode_file(&two, 1).unwrap().data,
            [2, 2, 2, 255, 1, 1, 1, 255]
        );
    }

    #[test]
    fn palette_and_padding() {
        // 3x2 at 8 bits: rows padded to 4 bytes; index i is (255 - i, 0, i) in RGB.
        let data = bmp(3, 2, 8, BI_RGB, &[0, 1, 2, 0, 3, 4, 5, 0]);
        let b = decode_file(&data, 1).unwrap();
        assert_eq!((b.width, b.height, b.model), (3, 2, ColorModel::Rgb));
        assert_eq!(
            b.data,
            [252, 0, 3, 251, 0, 4, 250, 0, 5, 255, 0, 0, 254, 0, 1, 253, 0, 2]
        );
    }

    #[test]
    fn hostile_inputs_get_typed_errors() {
        for name in [
            "derived_bmp_24bit_bottomup_coffee.bmp",
            "bmpjs_bit8_RLE.bmp",
            "bmpjs_bit4_RLE.bmp",
            "bmpjs_bit1.bmp",
            "gdkpixbuf_mandatory-bitmasks.bmp",
        ] {
            let good = corpus(name);
            // Every truncation: typed errors, no panic.
            for cut in (0..good.len()).step_by(good.len() / 150 + 1).chain(0..80) {
                match decode_file(&good[..cut], 1) {
                    Err(Error::Truncated { .. } | Error::Corrupt { .. }) => {}
                    Err(e) => panic!("{name} cut {cut}: {e:?}"),
                    // RLE data may end with its end-of-bitmap code before the file does.
                    Ok(_) => assert!(name.contains("RLE"), "{name} cut {cut}: decoded"),
                }
            }
            // Damaged bytes: no panic.
            for i in (0..good.len().min(4000)).step_by(7) {
                let mut data = good.clone();
                data[i] ^= 0xA5;
                let _ = decode_file(&data, 2);
            }
        }
        // Lies in the header.
        let ok = bmp(2, 2, 24, BI_RGB, &[0; 16]);
        decode_file(&ok, 1).unwrap();
        let mut planes = ok.clone();
        planes[26] = 2;
        assert!(matches!(header(&planes), Err(Error::Corrupt { .. })));
        let mut depth = ok.clone();
        depth[28] = 7;
        assert!(matches!(header(&depth), Err(Error::Corrupt { .. })));
        let mut jpeg = ok.clone();
        jpeg[30] = 4;
        assert!(matches!(header(&jpeg), Err(Error::Unsupported(_))));
        let mut offset = ok.clone();
        offset[10..14].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(header(&offset), Err(Error::Corrupt { .. })));
        let mut past = ok.clone();
        past[10..14].copy_from_slice(&4000u32.to_le_bytes());
        assert!(matches!(header(&past), Err(Error::Truncated { .. })));
        let mut huge = ok.clone();
        huge[18..22].copy_from_slice(&70000i32.to_le_bytes());
        assert!(matches!(header(&huge), Err(Error::Unsupported(_))));
        let mut negative = ok.clone();
        negative[18..22].copy_from_slice(&(-2i32).to_le_bytes());
        assert!(matches!(header(&negative), Err(Error::Corrupt { .. })));
        let mut min = ok.clone();
        min[22..26].copy_from_slice(&i32::MIN.to_le_bytes());
        assert!(matches!(header(&min), Err(Error::Corrupt { .. })));
        // A palette index past the colours used is black, not a panic.
        let mut used = bmp(2, 1, 8, BI_RGB, &[0, 200, 0, 0]);
        used[46..50].copy_from_slice(&4u32.to_le_bytes());
        let _ = decode_file(&used, 1);
    }

    #[test]
    fn bounds_cover_the_decode() {
        let data = corpus("gdkpixbuf_mandatory-bitmasks.bmp");
        let info = header(&data).unwrap();
        let b = decode_bytes(&data, &info, 2);
        assert!(b.planned >= 350 * 400 * 4);
        assert!(b.full <= full_bytes(&info));
        let limits = Limits {
            max_decode_bytes: b.planned,
            ..Limits::default()
        };
        decode(&data, &info, 2, &limits).unwrap();
        let limits = Limits {
            max_decode_bytes: b.planned - 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&data, &info, 2, &limits),
            Err(Error::OverBudget { .. })
        ));
    }
}
