//! GIF through the gif crate: the first frame only, composited at its offset on the logical
//! screen, which is the image size.
//!
//! Handles GIF87a/GIF89a, global and local palettes, interlaced frames, a transparent index,
//! and frames that do not cover the screen or stick out of it (clipped). The result is RGBA
//! when the first frame has a transparent index or leaves part of the screen uncovered (that
//! part is transparent, as in browsers and libnsgif: the background colour index is ignored),
//! RGB otherwise. Later frames of an animation are never read, so ten thousand frames cost
//! what the first costs.
//!
//! The header (dimensions, channels) is read here without the crate: the 13-byte logical
//! screen descriptor, then the blocks up to the first image descriptor, skipping extension data
//! without copying it. The decode hands the crate the screen descriptor and palette followed
//! directly by the first frame's control extension, so metadata before it (XMP, ICC, comments)
//! is never gathered, and allocates nothing larger than the screen (plus the visible part of an
//! interlaced frame) after `Limits::afford_decode` agreed. A frame whose data ends early is
//! `truncated`; a file without an image or with an unknown block is `corrupt`.
//!
//! Embedded ICC profiles (ImageMagick's ICCRGBG1012 extension) are ignored: see
//! [`decode`] for why.

use std::io::Read;
use std::num::NonZeroU64;

use gif::{ColorOutput, DecodeOptions, DecodingError, MemoryLimit};

use super::{DecodeBytes, Decoded};
use crate::bitmap::{BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

const FORMAT: &str = "gif";

/// The crate's own allocations in our path are a palette, a 255-byte sub-block and its LZW
/// tables; metadata never reaches it. A limit far above that and far below any harm.
const CRATE_MEMORY_LIMIT: u64 = 1 << 20;

/// Decoder state beside the pixels: the LZW tables (4096 codes), the crate's read buffer
/// (8 KiB), palettes, the current sub-block; generously rounded up.
const DECODER_BYTES: u64 = 256 << 10;

/// What the blocks before the first image say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    screen_width: u16,
    screen_height: u16,
    /// Bytes of the header and global palette: what the crate reads before any block.
    header_len: usize,
    /// Where the first frame's blocks start: its graphic control extension when one directly
    /// governs it, else its image descriptor.
    frame_start: usize,
    left: u16,
    top: u16,
    width: u16,
    height: u16,
    interlaced: bool,
    transparent: bool,
}

impl Layout {
    /// The part of the frame on the screen: (columns, rows); zero when it is off screen.
    fn visible(&self) -> (u64, u64) {
        let cols = u64::from(self.screen_width.saturating_sub(self.left)).min(self.width.into());
        let rows = u64::from(self.screen_height.saturating_sub(self.top)).min(self.height.into());
        (cols, rows)
    }

    fn covers_screen(&self) -> bool {
        self.left == 0
            && self.top == 0
            && self.width >= self.screen_width
            && self.height >= self.screen_height
    }

    fn model(&self) -> ColorModel {
        if self.transparent || !self.covers_screen() {
            ColorModel::Rgba
        } else {
            ColorModel::Rgb
        }
    }
}

fn truncated(detail: &str) -> Error {
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

/// Reads the logical screen descriptor and walks the blocks up to the first image descriptor
/// (no allocation, no LZW).
fn scan(data: &[u8]) -> Result<Layout, Error> {
    if data.len() < 13 {
        return Err(truncated("file ends inside the logical screen descriptor"));
    }
    if &data[..6] != b"GIF87a" && &data[..6] != b"GIF89a" {
        return Err(corrupt("no GIF87a/GIF89a signature"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let (screen_width, screen_height) = (u16_at(6), u16_at(8));
    let flags = data[10];
    let palette = |flags: u8| {
        if flags & 0x80 != 0 {
            3usize << ((flags & 7) + 1)
        } else {
            0
        }
    };
    let header_len = 13 + palette(flags);
    let mut pos = header_len;
    // The last graphic control extension seen and its transparency flag; it governs the next
    // image (GIF89a §23), as in the crate, which keeps the last one read.
    let mut control: Option<(usize, bool)> = None;
    loop {
        let Some(&introducer) = data.get(pos) else {
            return Err(truncated("file ends before the first image"));
        };
        match introducer {
            0x21 => {
                let label = *data
                    .get(pos + 1)
                    .ok_or_else(|| truncated("file ends inside an extension"))?;
                let start = pos;
                let first_block = pos + 2;
                pos = skip_sub_blocks(data, first_block)?;
                if label == 0xF9 {
                    // Block size 4: packed flags, delay (2), transparent index.
                    let flags = data.get(first_block + 1).copied().unwrap_or(0);
                    let transparent = data[first_block] >= 4 && flags & 1 != 0;
                    control = Some((start, transparent));
                }
            }
            0x2C => {
                let d = data
                    .get(pos + 1..pos + 10)
                    .ok_or_else(|| truncated("file ends inside the image descriptor"))?;
                let field = |i: usize| u16::from_le_bytes([d[i], d[i + 1]]);
                return Ok(Layout {
                    screen_width,
                    screen_height,
                    header_len,
                    frame_start: control.map_or(pos, |(start, _)| start),
                    left: field(0),
                    top: field(2),
                    width: field(4),
                    height: field(6),
                    interlaced: d[8] & 0x40 != 0,
                    transparent: control.is_some_and(|(_, t)| t),
                });
            }
            0x3B => return Err(corrupt("no image before the trailer")),
            other => {
                return Err(corrupt(format!(
                    "unknown block 0x{other:02x} before the first image"
                )))
            }
        }
    }
}

/// Skips a chain of data sub-blocks starting at `pos` (its length byte); returns the position
/// after the terminating zero-length block.
fn skip_sub_blocks(data: &[u8], mut pos: usize) -> Result<usize, Error> {
    loop {
        let len = *data
            .get(pos)
            .ok_or_else(|| truncated("file ends inside an extension"))? as usize;
        pos += 1 + len;
        if len == 0 {
            return Ok(pos);
        }
    }
}

pub(super) fn header(data: &[u8]) -> Result<ImageInfo, Error> {
    let layout = scan(data)?;
    Ok(ImageInfo {
        format: InputFormat::Gif,
        width: layout.screen_width.into(),
        height: layout.screen_height.into(),
        channels: layout.model().channels() as u8,
        jpeg_coding: None,
        adobe_transform: None,
    })
}

/// Peak bytes of decoding `layout` reduced by `shrink`: the output (the screen, or its
/// reduction and box sums), one frame row, the visible part of an interlaced frame (its rows
/// arrive out of order), and the decoder's state.
fn bytes_for(layout: &Layout, shrink: u32) -> u64 {
    let (w, h) = (
        u64::from(layout.screen_width),
        u64::from(layout.screen_height),
    );
    let channels = layout.model().channels() as u64;
    let shrink = u64::from(shrink.max(1));
    let output = if shrink == 1 {
        w * h * channels
    } else {
        let rw = w.div_ceil(shrink);
        rw * h.div_ceil(shrink) * channels + rw * channels * 4
    };
    let (cols, rows) = layout.visible();
    let frame = if layout.interlaced { cols * rows } else { 0 };
    // The screen row being composited, the frame row being read.
    let rows_bytes = w * channels + u64::from(layout.width);
    output + frame + rows_bytes + DECODER_BYTES
}

/// The worst case of [`bytes_for`] for a screen of this size: RGBA, an interlaced frame
/// covering it.
fn worst_layout(info: &ImageInfo) -> Layout {
    let (w, h) = (
        info.width.min(u16::MAX.into()) as u16,
        info.height.min(u16::MAX.into()) as u16,
    );
    Layout {
        screen_width: w,
        screen_height: h,
        header_len: 0,
        frame_start: 0,
        left: 0,
        top: 0,
        width: w,
        height: h,
        interlaced: true,
        transparent: true,
    }
}

pub(super) fn decode_bytes(data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    let layout = scan(data).unwrap_or_else(|_| worst_layout(info));
    DecodeBytes {
        planned: bytes_for(&layout, shrink),
        full: bytes_for(&layout, 1),
    }
}

pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    bytes_for(&worst_layout(info), 1)
}

/// Decodes the first frame onto the screen, reduced by `shrink` row by row when > 1.
///
/// An ICC profile in the file is not returned: GIF has no colour management in its
/// specification, browsers and libvips (libnsgif) ignore the ICCRGBG1012 extension, and
/// ImageMagick writes its source's profile there after quantising (the corpus's
/// derived_gif_static_rocket.gif carries Adobe RGB): applying it would make our thumbnails
/// differ from every viewer's rendering of the same file.
pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    let layout = scan(data)?;
    if (
        u32::from(layout.screen_width),
        u32::from(layout.screen_height),
    ) != (info.width, info.height)
    {
        return Err(corrupt("logical screen changed between reads"));
    }
    let shrink = shrink.max(1);
    limits.afford_decode(|| bytes_for(&layout, shrink))?;

    let mut options = DecodeOptions::new();
    options.set_color_output(ColorOutput::Indexed);
    if let Some(limit) = NonZeroU64::new(CRATE_MEMORY_LIMIT) {
        options.set_memory_limit(MemoryLimit::Bytes(limit));
    }
    // The header and palette, then straight to the first frame: extensions before it are
    // metadata, which the crate would otherwise gather.
    let stream = data[..layout.header_len].chain(&data[layout.frame_start..]);
    let mut decoder = options.read_info(stream).map_err(map_error)?;
    let frame = decoder
        .next_frame_info()
        .map_err(map_error)?
        .ok_or_else(|| corrupt("no image"))?;
    let read = Layout {
        left: frame.left,
        top: frame.top,
        width: frame.width,
        height: frame.height,
        interlaced: frame.interlaced,
        transparent: frame.transparent.is_some(),
        ..layout
    };
    if read != layout {
        return Err(Error::Internal(
            "gif: the crate read another first frame than the header scan".into(),
        ));
    }
    let transparent = frame.transparent;
    let palette = expand_palette(decoder.palette().map_err(map_error)?, transparent);

    let model = layout.model();
    let ch = model.channels();
    let (sw, sh) = (
        usize::from(layout.screen_width),
        usize::from(layout.screen_height),
    );
    let (left, top) = (usize::from(layout.left), usize::from(layout.top));
    let (cols, rows) = layout.visible();
    let (cols, rows) = (cols as usize, rows as usize);

    // Indices of the visible part of the frame, row by row in screen order.
    let mut line = vec![0u8; usize::from(layout.width)];
    let mut visible = Vec::new();
    if layout.interlaced && rows > 0 {
        visible = vec![0u8; cols * rows];
        let mut filled = 0;
        for y in interlaced_rows(usize::from(layout.height)) {
            if filled == rows {
                break;
            }
            read_row(&mut decoder, &mut line)?;
            if y < rows {
                visible[y * cols..(y + 1) * cols].copy_from_slice(&line[..cols]);
                filled += 1;
            }
        }
    }

    // Each screen row goes through the shrinker, which at factor 1 only appends it.
    let mut shrinker = BoxShrinker::new(sw as u32, sh as u32, shrink, model);
    let mut screen_row = vec![0u8; sw * ch];
    for y in 0..sh {
        screen_row.fill(0);
        // A frame right of the screen has rows on it but no columns: nothing to place.
        if cols > 0 && y >= top && y - top < rows {
            let fy = y - top;
            let indices = if layout.interlaced {
                &visible[fy * cols..(fy + 1) * cols]
            } else {
                read_row(&mut decoder, &mut line)?;
                &line[..cols]
            };
            let out = &mut screen_row[left * ch..(left + cols) * ch];
            match model {
                ColorModel::Rgba => expand::<4>(out, indices, &palette),
                _ => expand::<3>(out, indices, &palette),
            }
        }
        shrinker.push_row(&screen_row);
    }
    let bitmap = shrinker.finish();
    Ok(Decoded {
        bitmap,
        icc: None,
        orientation: Orientation::default(),
    })
}

/// The palette as 256 RGBA entries; indices past its end are opaque black, the transparent
/// index is transparent black.
fn expand_palette(palette: &[u8], transparent: Option<u8>) -> [[u8; 4]; 256] {
    let mut out = [[0, 0, 0, 255]; 256];
    for (entry, rgb) in out.iter_mut().zip(palette.chunks_exact(3)) {
        *entry = [rgb[0], rgb[1], rgb[2], 255];
    }
    if let Some(t) = transparent {
        out[usize::from(t)] = [0, 0, 0, 0];
    }
    out
}

/// Writes the palette entries of `indices` into `out` as `CH`-byte pixels; the constant size
/// makes each a fixed-length copy rather than a call to memcpy.
fn expand<const CH: usize>(out: &mut [u8], indices: &[u8], palette: &[[u8; 4]; 256]) {
    for (px, &i) in out.chunks_exact_mut(CH).zip(indices) {
        px.copy_from_slice(&palette[usize::from(i)][..CH]);
    }
}

/// Reads the next stored row of the frame's indices.
fn read_row<R: Read>(decoder: &mut gif::Decoder<R>, line: &mut [u8]) -> Result<(), Error> {
    if line.is_empty() {
        return Ok(());
    }
    match decoder.fill_buffer(line) {
        Ok(true) => Ok(()),
        Ok(false) => Err(truncated("image data ends inside the first frame")),
        Err(e) => Err(map_error(e)),
    }
}

/// Frame rows in the order an interlaced frame stores them: every 8th from 0, every 8th from
/// 4, every 4th from 2, every 2nd from 1.
fn interlaced_rows(height: usize) -> impl Iterator<Item = usize> {
    [(0, 8), (4, 8), (2, 4), (1, 2)]
        .into_iter()
        .flat_map(move |(start, step)| (start..height).step_by(step))
}

fn map_error(err: DecodingError) -> Error {
    match err {
        DecodingError::UnexpectedEof => truncated("file ends inside the first frame"),
        DecodingError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated("file ends inside the first frame")
        }
        DecodingError::MemoryLimit | DecodingError::OutOfMemory => {
            Error::Unsupported("GIF needs more memory than the decoder's limit".into())
        }
        other => corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitmap::Bitmap;
    use crate::probe::probe;

    use super::super::formats_corpus as corpus;

    fn decode_file(data: &[u8], shrink: u32) -> Result<Bitmap, Error> {
        let info = header(data)?;
        decode(data, &info, shrink, &Limits::default()).map(|d| d.bitmap)
    }

    /// A GIF of one frame, written by the crate's encoder.
    fn gif_bytes(
        screen: (u16, u16),
        frame: (u16, u16, u16, u16),
        interlaced: bool,
        transparent: Option<u8>,
        frames: usize,
    ) -> Vec<u8> {
        let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
        let mut out = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut out, screen.0, screen.1, &palette).unwrap();
            for n in 0..frames {
                let (left, top, w, h) = frame;
                let (w_, h_) = (usize::from(w), usize::from(h));
                // The encoder writes rows as given: an interlaced frame stores them in pass
                // order.
                let order: Vec<usize> = if interlaced {
                    interlaced_rows(h_).collect()
                } else {
                    (0..h_).collect()
                };
                let pixels: Vec<u8> = order
                    .iter()
                    .flat_map(|&y| (0..w_).map(move |x| (x * 7 + y * 3 + n) as u8))
                    .collect();
                let mut f = gif::Frame::from_indexed_pixels(w, h, pixels, transparent);
                f.left = left;
                f.top = top;
                f.interlaced = interlaced;
                enc.write_frame(&f).unwrap();
            }
        }
        out
    }

    #[test]
    fn corpus_files_decode_as_their_manifest_says() {
        // (file, width, height, channels)
        for (name, w, h, ch) in [
            ("derived_gif_static_rocket.gif", 640, 427, 3),
            ("derived_gif_interlaced_truck.gif", 768, 512, 3),
            ("derived_gif_transparent_astronaut.gif", 512, 512, 4),
            ("derived_gif_anim4_BytheWater.gif", 640, 400, 3),
            // The manifest says "first 153x212", but that is frame 2 onwards: the first frame
            // covers the 660x666 screen, with transparent index 255.
            ("gdkpixbuf_1_partyanimsm2.gif", 660, 666, 4),
            // 56 frames with local 16-colour tables; the first covers the screen, index 0
            // transparent.
            ("gdkpixbuf_aero.gif", 350, 189, 4),
        ] {
            let data = corpus(name);
            let info = probe(&data, &Limits::default()).unwrap();
            assert_eq!(
                (info.width, info.height, info.channels),
                (w, h, ch),
                "{name}"
            );
            let full = decode_file(&data, 1).unwrap();
            assert_eq!((full.width, full.height), (w, h), "{name}");
            assert_eq!(full.model.channels(), usize::from(ch), "{name}");
            let reduced = decode_file(&data, 4).unwrap();
            assert_eq!(
                (reduced.width, reduced.height),
                (w.div_ceil(4), h.div_ceil(4)),
                "{name}"
            );
        }
    }

    #[test]
    fn transparent_index_is_transparent() {
        let data = corpus("derived_gif_transparent_astronaut.gif");
        let bitmap = decode_file(&data, 1).unwrap();
        let alphas: Vec<u8> = bitmap.data.chunks_exact(4).map(|p| p[3]).collect();
        assert!(alphas.contains(&0) && alphas.contains(&255));
        assert!(alphas.iter().all(|&a| a == 0 || a == 255));
    }

    #[test]
    fn huge_screen_is_refused_from_the_header() {
        let data = corpus("derived_bad_gif_screen65535_rocket16.gif");
        let info = header(&data).unwrap();
        assert_eq!((info.width, info.height, info.channels), (65535, 65535, 4));
        // The probe's max_pixels refuses it before any decode.
        assert!(matches!(
            probe(&data, &Limits::default()),
            Err(Error::TooManyPixels { .. })
        ));
        // And the decode asks the limits before allocating the screen.
        let limits = Limits {
            max_decode_bytes: 64 << 20,
            ..Limits::default()
        };
        match decode(&data, &info, 1, &limits) {
            Err(Error::OverBudget { needed, .. }) => assert!(needed > 65535 * 65535 * 4),
            other => panic!("{:?}", other.map(|d| d.bitmap.width)),
        }
    }

    #[test]
    fn frame_is_composited_at_its_offset() {
        let data = gif_bytes((10, 8), (3, 2, 4, 5), false, None, 1);
        let info = header(&data).unwrap();
        assert_eq!(info.channels, 4);
        let b = decode_file(&data, 1).unwrap();
        assert_eq!((b.width, b.height, b.model), (10, 8, ColorModel::Rgba));
        let px = |x: usize, y: usize| &b.data[(y * 10 + x) * 4..][..4];
        assert_eq!(px(0, 0), [0, 0, 0, 0]);
        assert_eq!(px(2, 2), [0, 0, 0, 0]);
        // Frame pixel (0,0) has index 0: palette [0, 255, 0].
        assert_eq!(px(3, 2), [0, 255, 0, 255]);
        // Frame pixel (1,1): index 7 + 3 = 10.
        assert_eq!(px(4, 3), [10, 245, 5, 255]);
        assert_eq!(px(7, 2), [0, 0, 0, 0]);
        assert_eq!(px(3, 7), [0, 0, 0, 0]);
    }

    #[test]
    fn frame_sticking_out_is_clipped() {
        let data = gif_bytes((6, 5), (4, 3, 7, 9), true, None, 1);
        let b = decode_file(&data, 1).unwrap();
        assert_eq!((b.width, b.height), (6, 5));
        let px = |x: usize, y: usize| &b.data[(y * 6 + x) * 4..][..4];
        // Frame pixel (1,1) at screen (5,4): index 10.
        assert_eq!(px(5, 4), [10, 245, 5, 255]);
        assert_eq!(px(3, 4), [0, 0, 0, 0]);
        // Entirely off screen: all transparent, no panic.
        let data = gif_bytes((6, 5), (60, 50, 7, 9), true, None, 1);
        let b = decode_file(&data, 1).unwrap();
        assert!(b.data.iter().all(|&v| v == 0));
        // Right of the screen but level with it (found by the `gif` fuzz target: it sliced
        // the screen row from past its end), both row orders.
        for interlaced in [false, true] {
            let data = gif_bytes((6, 5), (60, 1, 7, 3), interlaced, None, 1);
            let b = decode_file(&data, 1).unwrap();
            assert!(b.data.iter().all(|&v| v == 0));
        }
    }

    #[test]
    fn interlaced_equals_progressive_order() {
        for (w, h) in [(13, 1), (13, 2), (13, 5), (13, 8), (13, 9), (7, 37)] {
            let plain = gif_bytes((w, h), (0, 0, w, h), false, Some(3), 1);
            let inter = gif_bytes((w, h), (0, 0, w, h), true, Some(3), 1);
            assert_eq!(
                decode_file(&plain, 1).unwrap(),
                decode_file(&inter, 1).unwrap(),
                "{w}x{h}"
            );
            assert_eq!(
                decode_file(&plain, 3).unwrap(),
                decode_file(&inter, 3).unwrap(),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn only_the_first_frame_is_decoded() {
        let one = gif_bytes((20, 20), (0, 0, 20, 20), false, None, 1);
        let many = gif_bytes((20, 20), (0, 0, 20, 20), false, None, 10_000);
        assert!(many.len() > 100 * one.len());
        let b = decode_file(&many, 1).unwrap();
        assert_eq!(b, decode_file(&one, 1).unwrap());
        assert_eq!(b.model, ColorModel::Rgb);
        // And the rest of the file may be garbage: it is never read.
        let mut cut = many[..many.len() / 2].to_vec();
        cut.extend_from_slice(&[0xAB; 100]);
        assert_eq!(decode_file(&cut, 1).unwrap(), b);
    }

    #[test]
    fn bounds_cover_the_paths() {
        let data = corpus("derived_gif_interlaced_truck.gif");
        let info = header(&data).unwrap();
        let b = decode_bytes(&data, &info, 4);
        assert!(b.planned < b.full);
        assert!(b.full <= full_bytes(&info));
        assert!(b.full >= 768 * 512 * 3 + 768 * 512);
        // An allowance of exactly the planned bound is enough.
        let limits = Limits {
            max_decode_bytes: b.planned,
            ..Limits::default()
        };
        decode(&data, &info, 4, &limits).unwrap();
    }

    #[test]
    fn hostile_inputs_get_typed_errors() {
        let good = corpus("derived_gif_static_rocket.gif");
        let whole = decode_file(&good, 1).unwrap();
        // Every truncation: a typed error from the header or the decode, never a panic; only
        // a cut past the last pixel's code (in the last few bytes) still decodes, completely.
        for cut in (0..good.len())
            .step_by(97)
            .chain(0..40)
            .chain(good.len() - 8..good.len())
        {
            let data = &good[..cut];
            match decode_file(data, 1) {
                Err(Error::Truncated { .. } | Error::Corrupt { .. }) => {}
                Err(e) => panic!("cut {cut}: {e:?}"),
                Ok(b) => assert!(cut + 8 > good.len() && b == whole, "cut {cut}: decoded"),
            }
        }
        assert!(matches!(
            header(b"GIF89a\x01\x00"),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            header(b"GIF88a\x01\x00\x01\x00\x00\x00\x00"),
            Err(Error::Corrupt { .. })
        ));
        // No image before the trailer; an unknown block.
        assert!(matches!(
            header(b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x3b"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            header(b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x99"),
            Err(Error::Corrupt { .. })
        ));
        // Damaged bytes anywhere after the header: no panic.
        for i in (13..good.len()).step_by(331) {
            let mut data = good.clone();
            data[i] ^= 0x5A;
            if let Ok(info) = header(&data) {
                let _ = decode(&data, &info, 2, &Limits::default());
            }
        }
        // No palette at all.
        let mut data = gif_bytes((4, 4), (0, 0, 4, 4), false, None, 1);
        data[10] &= 0x7F;
        let mut fixed = data[..13].to_vec();
        fixed.extend_from_slice(&data[13 + 768..]);
        let info = header(&fixed).unwrap();
        assert!(matches!(
            decode(&fixed, &info, 1, &Limits::default()),
            Err(Error::Corrupt { .. })
        ));
    }
}
