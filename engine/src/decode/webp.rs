//! WebP through libwebp (libwebp-sys), with its scaled decoding as shrink-on-load.
//!
//! Handles lossy (VP8), lossless (VP8L), alpha (ALPH or VP8L's own), the extended format
//! (VP8X) with its ICC profile and EXIF orientation, and of an animation the first frame,
//! composited at its offset on a transparent canvas (as libvips shows frame 1).
//!
//! The RIFF chunks are walked here, bounded by the data, before libwebp sees anything: a RIFF
//! size past the end of the data is `truncated` (libwebp would refuse it as well: a partial
//! image is not a thumbnail), a chunk that overruns its container or a VP8X canvas that
//! disagrees with its frame is `corrupt`, before any canvas is allocated.

use super::{DecodeBytes, Decoded};
use crate::bitmap::{Bitmap, BoxShrinker, ColorModel};
use crate::orient::Orientation;
use crate::probe::{ImageInfo, InputFormat};
use crate::{Error, Limits};

use libwebp_sys as sys;

const FORMAT: &str = "webp";

fn corrupt(detail: impl Into<String>) -> Error {
    Error::Corrupt {
        format: FORMAT,
        detail: detail.into(),
    }
}

fn truncated(detail: impl Into<String>) -> Error {
    Error::Truncated {
        format: FORMAT,
        detail: detail.into(),
    }
}

fn le16(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8
}

fn le24(b: &[u8]) -> u32 {
    le16(b) | u32::from(b[2]) << 16
}

fn le32(b: &[u8]) -> u32 {
    le24(b) | u32::from(b[3]) << 24
}

/// One RIFF chunk: its tag and payload (without the pad byte).
#[derive(Clone, Copy)]
struct Chunk<'a> {
    tag: [u8; 4],
    payload: &'a [u8],
    /// The chunk from its header to the end of the payload.
    whole: &'a [u8],
}

/// The chunks of `body`, in order; an overrun is an error. Each step consumes at least the
/// 8-byte header, so the walk ends within `body.len() / 8` steps.
fn chunks(body: &[u8]) -> impl Iterator<Item = Result<Chunk<'_>, Error>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 8 {
            rest = &[];
            return Some(Err(corrupt("chunk header cut by the end of its container")));
        }
        let tag = [rest[0], rest[1], rest[2], rest[3]];
        let size = le32(&rest[4..8]) as usize;
        let Some(payload) = rest.get(8..8usize.saturating_add(size)) else {
            rest = &[];
            return Some(Err(corrupt(format!(
                "chunk {} says {size} bytes, past the end of its container",
                String::from_utf8_lossy(&tag)
            ))));
        };
        let whole = &rest[..8 + size];
        // Chunks are padded to even sizes; a last chunk without its pad byte is tolerated.
        rest = rest.get(8 + size + (size & 1)..).unwrap_or(&[]);
        Some(Ok(Chunk {
            tag,
            payload,
            whole,
        }))
    })
}

/// The coded image of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Lossy { alpha: bool },
    Lossless,
}

/// A coded image (VP8 or VP8L, possibly with ALPH before it) and its size.
#[derive(Clone, Copy)]
struct Frame<'a> {
    width: u32,
    height: u32,
    coding: Coding,
    /// Bytes libwebp decodes: the whole file, or an animation frame's ALPH and VP8/VP8L.
    bytes: &'a [u8],
    /// Alpha: ALPH chunk, VP8L alpha bit or VP8X alpha flag.
    alpha: bool,
    /// The VP8L stream after its header (the image's, or a lossless ALPH's), whose Huffman
    /// groups bound libwebp's tables.
    lossless: Option<&'a [u8]>,
}

/// What the container says.
struct Container<'a> {
    width: u32,
    height: u32,
    /// A still image (`x`, `y` 0 and the canvas size) or an animation's first frame.
    frame: Frame<'a>,
    x: u32,
    y: u32,
    animated: bool,
    icc: Option<&'a [u8]>,
    exif: Option<&'a [u8]>,
}

impl Container<'_> {
    fn channels(&self) -> u8 {
        if self.animated || self.frame.alpha {
            4
        } else {
            3
        }
    }
}

/// Width and height of a VP8 key frame (RFC 6386, 9.1), checked as libwebp does.
fn vp8_size(payload: &[u8]) -> Result<(u32, u32), Error> {
    let head = payload
        .get(..10)
        .ok_or_else(|| corrupt("VP8 chunk shorter than its frame header"))?;
    let bits = le24(head);
    if bits & 1 != 0 {
        return Err(corrupt("VP8 frame is not a key frame"));
    }
    if (bits >> 1) & 7 > 3 {
        return Err(corrupt("VP8 profile over 3"));
    }
    if (bits >> 4) & 1 == 0 {
        return Err(corrupt("VP8 frame is not shown"));
    }
    if head[3..6] != [0x9d, 0x01, 0x2a] {
        return Err(corrupt("VP8 start code missing"));
    }
    if (bits >> 5) as usize >= payload.len() {
        return Err(corrupt("VP8 first partition larger than its chunk"));
    }
    Ok((le16(&head[6..8]) & 0x3fff, le16(&head[8..10]) & 0x3fff))
}

/// Width, height and alpha hint of a VP8L image (its 5-byte header).
fn vp8l_size(payload: &[u8]) -> Result<(u32, u32, bool), Error> {
    let head = payload
        .get(..5)
        .ok_or_else(|| corrupt("VP8L chunk shorter than its header"))?;
    if head[0] != 0x2f {
        return Err(corrupt("VP8L signature missing"));
    }
    let bits = le32(&head[1..5]);
    if bits >> 29 != 0 {
        return Err(corrupt("VP8L version is not 0"));
    }
    Ok((
        (bits & 0x3fff) + 1,
        ((bits >> 14) & 0x3fff) + 1,
        (bits >> 28) & 1 == 1,
    ))
}

/// The frame among `chunks` (a VP8X file's or an ANMF's): the first VP8/VP8L chunk and the
/// ALPH before it. `bytes` runs from the first of those to the end of `within`.
fn find_frame<'a>(
    chunks: &[Chunk<'a>],
    within: &'a [u8],
    vp8x_alpha: bool,
) -> Result<Option<Frame<'a>>, Error> {
    let mut alph: Option<&Chunk<'a>> = None;
    for chunk in chunks {
        match &chunk.tag {
            b"ALPH" if alph.is_none() => alph = Some(chunk),
            b"VP8 " | b"VP8L" => {
                let start =
                    alph.unwrap_or(chunk).whole.as_ptr() as usize - within.as_ptr() as usize;
                let bytes = &within[start..];
                let frame = if &chunk.tag == b"VP8 " {
                    let (width, height) = vp8_size(chunk.payload)?;
                    // ALPH: one header byte, compression 1 is a VP8L stream without header.
                    let lossless = alph
                        .and_then(|a| a.payload.split_first())
                        .filter(|(head, _)| *head & 3 == 1)
                        .map(|(_, stream)| stream);
                    Frame {
                        lossless,
                        width,
                        height,
                        coding: Coding::Lossy {
                            alpha: alph.is_some(),
                        },
                        bytes,
                        alpha: alph.is_some() || vp8x_alpha,
                    }
                } else {
                    let (width, height, alpha) = vp8l_size(chunk.payload)?;
                    Frame {
                        lossless: chunk.payload.get(5..),
                        width,
                        height,
                        coding: Coding::Lossless,
                        bytes,
                        alpha: alpha || vp8x_alpha,
                    }
                };
                return Ok(Some(frame));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// A file of one VP8 or VP8L chunk.
fn simple(frame: Frame<'_>) -> Container<'_> {
    Container {
        width: frame.width,
        height: frame.height,
        frame,
        x: 0,
        y: 0,
        animated: false,
        icc: None,
        exif: None,
    }
}

/// Walks the RIFF container: header fields, the still image or first frame, ICC and EXIF.
fn parse(data: &[u8]) -> Result<Container<'_>, Error> {
    let head = data
        .get(..12)
        .ok_or_else(|| truncated("file ends inside the RIFF header"))?;
    if &head[..4] != b"RIFF" || &head[8..12] != b"WEBP" {
        return Err(corrupt("not a RIFF WEBP container"));
    }
    let riff_size = le32(&head[4..8]) as usize;
    if riff_size < 12 {
        return Err(corrupt(format!("RIFF size {riff_size} holds no chunk")));
    }
    let end = riff_size.saturating_add(8);
    let body = data.get(12..end).ok_or_else(|| {
        truncated(format!(
            "RIFF says {end} bytes, the data has {}",
            data.len()
        ))
    })?;
    let mut walk = chunks(body);
    let first = walk
        .next()
        .ok_or_else(|| corrupt("no chunk in the RIFF container"))??;
    match &first.tag {
        b"VP8 " => {
            let (width, height) = vp8_size(first.payload)?;
            Ok(simple(Frame {
                width,
                height,
                coding: Coding::Lossy { alpha: false },
                bytes: data,
                alpha: false,
                lossless: None,
            }))
        }
        b"VP8L" => {
            let (width, height, alpha) = vp8l_size(first.payload)?;
            Ok(simple(Frame {
                width,
                height,
                coding: Coding::Lossless,
                bytes: data,
                alpha,
                lossless: first.payload.get(5..),
            }))
        }
        b"VP8X" => extended(first.payload, walk, data),
        other => Err(corrupt(format!(
            "first chunk is {}, not VP8, VP8L or VP8X",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// The extended format: a canvas from VP8X, then metadata and either one image or frames.
fn extended<'a>(
    vp8x: &[u8],
    walk: impl Iterator<Item = Result<Chunk<'a>, Error>>,
    data: &'a [u8],
) -> Result<Container<'a>, Error> {
    if vp8x.len() < 10 {
        return Err(corrupt("VP8X chunk shorter than 10 bytes"));
    }
    let flags = vp8x[0];
    let (alpha_flag, animated) = (flags & 0x10 != 0, flags & 0x02 != 0);
    let width = le24(&vp8x[4..7]) + 1;
    let height = le24(&vp8x[7..10]) + 1;
    if u64::from(width) * u64::from(height) >= 1 << 32 {
        return Err(corrupt(format!("VP8X canvas {width}x{height} too large")));
    }
    let mut icc = None;
    let mut exif = None;
    let mut top = Vec::new();
    let mut first_anmf = None;
    for chunk in walk {
        let chunk = chunk?;
        match &chunk.tag {
            b"ICCP" if icc.is_none() => icc = Some(chunk.payload),
            b"EXIF" if exif.is_none() => exif = Some(chunk.payload),
            b"ANMF" if first_anmf.is_none() => first_anmf = Some(chunk.payload),
            _ => {}
        }
        // Only the chunks a still image's frame is looked for in; a file has a handful.
        if !animated && top.len() < 64 {
            top.push(chunk);
        }
    }
    let (frame, x, y) = if animated {
        let anmf = first_anmf.ok_or_else(|| corrupt("animation without an ANMF frame"))?;
        if anmf.len() < 16 {
            return Err(corrupt("ANMF chunk shorter than its header"));
        }
        let (x, y) = (le24(&anmf[0..3]) * 2, le24(&anmf[3..6]) * 2);
        let (fw, fh) = (le24(&anmf[6..9]) + 1, le24(&anmf[9..12]) + 1);
        if u64::from(x) + u64::from(fw) > u64::from(width)
            || u64::from(y) + u64::from(fh) > u64::from(height)
        {
            return Err(corrupt(format!(
                "first frame {fw}x{fh} at {x},{y} outside the {width}x{height} canvas"
            )));
        }
        let inner = &anmf[16..];
        let subs = chunks(inner).take(64).collect::<Result<Vec<_>, _>>()?;
        let frame =
            find_frame(&subs, inner, false)?.ok_or_else(|| corrupt("ANMF frame without image"))?;
        if (frame.width, frame.height) != (fw, fh) {
            return Err(corrupt(format!(
                "ANMF says {fw}x{fh}, its bitstream {}x{}",
                frame.width, frame.height
            )));
        }
        (frame, x, y)
    } else {
        let body = &data[12..];
        let frame = find_frame(&top, body, alpha_flag)?
            .ok_or_else(|| corrupt("VP8X file without VP8 or VP8L image"))?;
        if (frame.width, frame.height) != (width, height) {
            return Err(corrupt(format!(
                "VP8X canvas {width}x{height} does not match the {}x{} frame",
                frame.width, frame.height
            )));
        }
        // libwebp decodes the whole file (it reads VP8X and ALPH itself).
        (
            Frame {
                bytes: data,
                ..frame
            },
            0,
            0,
        )
    };
    Ok(Container {
        width,
        height,
        frame,
        x,
        y,
        animated,
        icc,
        exif,
    })
}

pub(super) fn header(data: &[u8]) -> Result<ImageInfo, Error> {
    let c = parse(data)?;
    Ok(ImageInfo {
        format: InputFormat::Webp,
        width: c.width,
        height: c.height,
        channels: c.channels(),
        jpeg_coding: None,
        adobe_transform: None,
    })
}

pub(super) fn decode(
    data: &[u8],
    info: &ImageInfo,
    shrink: u32,
    limits: &Limits,
) -> Result<Decoded, Error> {
    let c = parse(data)?;
    if (c.width, c.height) != (info.width, info.height) {
        return Err(corrupt("header changed between reads"));
    }
    let decoder = frame_bytes(&c.frame);
    let shrink = plan_shrink(&c, shrink, decoder);
    limits.afford_decode(|| planned_bytes(&c, shrink, decoder))?;
    let model = if c.channels() == 4 {
        ColorModel::Rgba
    } else {
        ColorModel::Rgb
    };
    let bitmap = if c.animated {
        // The first frame at full size, then the canvas row by row into the shrinker: the
        // canvas itself is never held.
        let frame = decode_frame(&c.frame, 1, ColorModel::Rgba)?;
        let mut shrinker = BoxShrinker::new(c.width, c.height, shrink, ColorModel::Rgba);
        let mut row = vec![0u8; c.width as usize * 4];
        let (x, fw) = (c.x as usize * 4, frame.row_bytes());
        for y in 0..c.height {
            let inside = y
                .checked_sub(c.y)
                .filter(|fy| *fy < frame.height)
                .map(|fy| fy as usize);
            match inside {
                Some(fy) => {
                    row[x..x + fw].copy_from_slice(&frame.data[fy * fw..(fy + 1) * fw]);
                    shrinker.push_row(&row);
                    row[x..x + fw].fill(0);
                }
                None => shrinker.push_row(&row),
            }
        }
        shrinker.finish()
    } else {
        decode_frame(&c.frame, shrink, model)?
    };
    Ok(Decoded {
        bitmap,
        icc: c.icc.map(<[u8]>::to_vec),
        orientation: c.exif.map(Orientation::from_exif).unwrap_or_default(),
    })
}

/// Decodes `frame` with libwebp into a buffer of ours, scaled to ceil(side / `shrink`).
fn decode_frame(frame: &Frame<'_>, shrink: u32, model: ColorModel) -> Result<Bitmap, Error> {
    let (ow, oh) = (frame.width.div_ceil(shrink), frame.height.div_ceil(shrink));
    let channels = model.channels();
    let stride = ow as usize * channels;
    let mut pixels = vec![0u8; stride * oh as usize];
    let mut config =
        sys::WebPDecoderConfig::new().map_err(|()| Error::Internal("libwebp ABI".into()))?;
    if shrink > 1 {
        config.options.use_scaling = 1;
        config.options.scaled_width = ow as i32;
        config.options.scaled_height = oh as i32;
    }
    config.output.colorspace = if channels == 4 {
        sys::WEBP_CSP_MODE::MODE_RGBA
    } else {
        sys::WEBP_CSP_MODE::MODE_RGB
    };
    config.output.is_external_memory = 1;
    config.output.u.RGBA = sys::WebPRGBABuffer {
        rgba: pixels.as_mut_ptr(),
        stride: stride as i32,
        size: pixels.len(),
    };
    // SAFETY: `frame.bytes` and `pixels` outlive the call; libwebp writes only within the
    // external buffer it was given (it checks stride and size against the output size) and
    // allocates nothing in `output` for external memory, so the free is a no-op kept for form.
    let status = unsafe {
        let status = sys::WebPDecode(frame.bytes.as_ptr(), frame.bytes.len(), &mut config);
        sys::WebPFreeDecBuffer(&mut config.output);
        status
    };
    status_to_result(status)?;
    Ok(Bitmap::new(ow, oh, model, pixels))
}

fn status_to_result(status: sys::VP8StatusCode) -> Result<(), Error> {
    use sys::VP8StatusCode as S;
    match status {
        S::VP8_STATUS_OK => Ok(()),
        S::VP8_STATUS_NOT_ENOUGH_DATA => Err(truncated("data ends inside the image")),
        S::VP8_STATUS_BITSTREAM_ERROR => Err(corrupt("libwebp: bitstream error")),
        // libwebp refuses an allocation over its own cap (16 GiB) or one that failed; what a
        // well-formed file needs was checked against the limits before.
        S::VP8_STATUS_OUT_OF_MEMORY => Err(corrupt("libwebp: out of memory")),
        S::VP8_STATUS_UNSUPPORTED_FEATURE => Err(Error::Unsupported(
            "WebP feature libwebp does not decode".into(),
        )),
        other => Err(Error::Internal(format!("libwebp: {other:?}"))),
    }
}

/// Fixed structures of libwebp's decoders (VP8/VP8L decoder state, probability tables, code
/// lengths, one sub-image's Huffman tables, colour caches), rounded up.
const FIXED: u64 = 256 << 10;

/// libwebp's rescaler for an output `out_width` wide: two 32-bit work rows and one 8-bit row
/// per channel (at most 4), plus its state.
fn rescaler_bytes(out_width: u64) -> u64 {
    out_width * 4 * (2 * 4 + 1) + 1024
}

/// VP8 (lossy) decoder buffers for `width`×`height`, pixels excluded: per macroblock column
/// the intra modes, top samples, macroblock info, filter info, coefficients and the cache
/// rows (24 luma + 12 chroma lines of 16 px); with ALPH, the alpha plane twice (the frame's
/// share of `mem` and the alpha decoder's plane) and the lossless decoder of the alpha.
fn vp8_bytes(width: u64, height: u64, alpha: Option<Option<(u64, u32)>>) -> u64 {
    let mb_w = width.div_ceil(16);
    let alpha = alpha.map_or(0, |groups| {
        2 * width * height + vp8l_bytes(width, height, groups)
    });
    mb_w * 4096 + alpha
}

/// libwebp's `kTableSize`: Huffman table entries of one group, by colour-cache bits.
const TABLE_SIZE: [u64; 12] = [
    2954, 2956, 2958, 2962, 2970, 2986, 3018, 3082, 3212, 3468, 3980, 5004,
];

/// VP8L (lossless) decoder buffers for `width`×`height`, pixels excluded: the ARGB image
/// and its 16-row cache, at most three sub-images (predictor and cross-colour transforms,
/// entropy image: at least 4×4 px per entry), the group mapping, and the Huffman tables:
/// libwebp allocates them, before reading any, for every group the entropy image uses.
///
/// `groups` ([`lossless::groups`]: groups and colour-cache bits) comes from decoding the
/// stream's small sub-images; without it (a stream that ends or breaks there, which libwebp
/// refuses too, or no stream at hand) this counts the worst a crafted file can ask for: one
/// group per entropy-image entry, at most 65 536, of 5 004 entries of 4 bytes (~20 KiB each).
fn vp8l_bytes(width: u64, height: u64, groups: Option<(u64, u32)>) -> u64 {
    let pixels = (width * height + 17 * width) * 4;
    let sub = width.div_ceil(4) * height.div_ceil(4);
    let (groups, cache_bits) =
        groups.unwrap_or_else(|| (sub.max((width * height).min(1000)).min(65_536), 11));
    let table = TABLE_SIZE[(cache_bits as usize).min(11)] * 4;
    pixels + 3 * sub * 4 + 65_536 * 4 + groups * (table + 640)
}

/// The decoder of one frame, its output excluded.
fn frame_bytes(frame: &Frame<'_>) -> u64 {
    let (w, h) = (u64::from(frame.width), u64::from(frame.height));
    let groups = || {
        frame
            .lossless
            .and_then(|stream| lossless::groups(stream, frame.width, frame.height))
    };
    match frame.coding {
        Coding::Lossy { alpha } => vp8_bytes(w, h, alpha.then(groups)),
        Coding::Lossless => vp8l_bytes(w, h, groups()),
    }
}

/// The shrink the decode uses: `shrink`, unless libwebp's rescaler would cost more than the
/// smaller output saves (tiny images), when the frame is decoded at full size instead.
fn plan_shrink(c: &Container<'_>, shrink: u32, decoder: u64) -> u32 {
    let shrink = shrink.max(1);
    if planned_bytes(c, shrink, decoder) > planned_bytes(c, 1, decoder) {
        1
    } else {
        shrink
    }
}

/// The peak of a decode at `shrink` whose frame decoder needs `decoder` bytes
/// ([`frame_bytes`]).
fn planned_bytes(c: &Container<'_>, shrink: u32, decoder: u64) -> u64 {
    let s = u64::from(shrink.max(1));
    let (w, h) = (u64::from(c.width), u64::from(c.height));
    let (ow, oh) = (w.div_ceil(s), h.div_ceil(s));
    let decoder = FIXED + decoder;
    if c.animated {
        // The frame at full size, one canvas row, the reduced canvas and its sums.
        let (fw, fh) = (u64::from(c.frame.width), u64::from(c.frame.height));
        decoder + fw * fh * 4 + w * 4 + ow * oh * 4 + ow * 16
    } else {
        let out = ow * oh * u64::from(c.channels());
        let rescaler = if s > 1 { rescaler_bytes(ow) } else { 0 };
        decoder + out + rescaler
    }
}

pub(super) fn decode_bytes(data: &[u8], info: &ImageInfo, shrink: u32) -> DecodeBytes {
    match parse(data) {
        Ok(c) if (c.width, c.height) == (info.width, info.height) => {
            let decoder = frame_bytes(&c.frame);
            DecodeBytes {
                planned: planned_bytes(&c, plan_shrink(&c, shrink, decoder), decoder),
                full: planned_bytes(&c, 1, decoder),
            }
        }
        // The decode refuses such data before allocating anything.
        _ => {
            let full = full_bytes(info);
            DecodeBytes {
                planned: full,
                full,
            }
        }
    }
}

/// The worst of every path for this canvas: an animation whose first frame fills it, held
/// at full size next to the unreduced canvas, decoded by the larger of the two decoders.
pub(super) fn full_bytes(info: &ImageInfo) -> u64 {
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    FIXED + 2 * w * h * 4 + w * 20 + vp8_bytes(w, h, Some(None)).max(vp8l_bytes(w, h, None))
}

/// Reads a VP8L stream's headers up to its Huffman codes, decoding the transform and entropy
/// sub-images (small: at least 4×4 px per entry) as libwebp does, to learn how many Huffman
/// groups libwebp will allocate tables for and at which colour-cache size. `None` when the
/// stream is damaged or ends early: the caller then counts the worst case.
mod lossless {
    /// libwebp's `kCodeToPlane`: short distance codes as (dy, 8 - dx) pairs.
    const CODE_TO_PLANE: [u8; 120] = [
        0x18, 0x07, 0x17, 0x19, 0x28, 0x06, 0x27, 0x29, 0x16, 0x1a, 0x26, 0x2a, 0x38, 0x05, 0x37,
        0x39, 0x15, 0x1b, 0x36, 0x3a, 0x25, 0x2b, 0x48, 0x04, 0x47, 0x49, 0x14, 0x1c, 0x35, 0x3b,
        0x46, 0x4a, 0x24, 0x2c, 0x58, 0x45, 0x4b, 0x34, 0x3c, 0x03, 0x57, 0x59, 0x13, 0x1d, 0x56,
        0x5a, 0x23, 0x2d, 0x44, 0x4c, 0x55, 0x5b, 0x33, 0x3d, 0x68, 0x02, 0x67, 0x69, 0x12, 0x1e,
        0x66, 0x6a, 0x22, 0x2e, 0x54, 0x5c, 0x43, 0x4d, 0x65, 0x6b, 0x32, 0x3e, 0x78, 0x01, 0x77,
        0x79, 0x53, 0x5d, 0x11, 0x1f, 0x64, 0x6c, 0x42, 0x4e, 0x76, 0x7a, 0x21, 0x2f, 0x75, 0x7b,
        0x31, 0x3f, 0x63, 0x6d, 0x52, 0x5e, 0x00, 0x74, 0x7c, 0x41, 0x4f, 0x10, 0x20, 0x62, 0x6e,
        0x30, 0x73, 0x7d, 0x51, 0x5f, 0x40, 0x72, 0x7e, 0x61, 0x6f, 0x50, 0x71, 0x7f, 0x60, 0x70,
    ];
    const CODE_LENGTH_ORDER: [usize; 19] = [
        17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ];

    /// LSB-first bit reader; reading past the end fails (libwebp then reports end of stream).
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl Bits<'_> {
        fn read(&mut self, n: u32) -> Option<u32> {
            let mut v = 0;
            for i in 0..n {
                let byte = *self.data.get(self.pos >> 3)?;
                v |= u32::from(byte >> (self.pos & 7) & 1) << i;
                self.pos += 1;
            }
            Some(v)
        }
    }

    /// A canonical Huffman code, decoded bit by bit (codes arrive most significant bit first).
    struct Code {
        counts: [u16; 16],
        symbols: Vec<u16>,
    }

    impl Code {
        /// As libwebp's `BuildHuffmanTable` accepts: one used symbol (read with no bits) or a
        /// complete code.
        fn new(lengths: &[u8]) -> Option<Code> {
            let mut counts = [0u16; 16];
            for &l in lengths {
                counts[usize::from(l)] += 1;
            }
            counts[0] = 0;
            let mut symbols = Vec::new();
            for len in 1..16u8 {
                for (s, &l) in lengths.iter().enumerate() {
                    if l == len {
                        symbols.push(s as u16);
                    }
                }
            }
            match symbols.len() {
                0 => return None,
                1 => {
                    return Some(Code {
                        counts: [0; 16],
                        symbols,
                    })
                }
                _ => {}
            }
            let mut open: i64 = 1;
            for &c in &counts[1..] {
                open = open * 2 - i64::from(c);
                if open < 0 {
                    return None;
                }
            }
            (open == 0).then_some(Code { counts, symbols })
        }

        fn read(&self, bits: &mut Bits<'_>) -> Option<u16> {
            if self.symbols.len() == 1 {
                return Some(self.symbols[0]);
            }
            let (mut code, mut first, mut index) = (0i64, 0i64, 0i64);
            for &count in &self.counts[1..] {
                code |= i64::from(bits.read(1)?);
                let count = i64::from(count);
                if code - first < count {
                    return self.symbols.get((index + code - first) as usize).copied();
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            None
        }
    }

    fn read_code(bits: &mut Bits<'_>, alphabet: usize) -> Option<Code> {
        let mut lengths = vec![0u8; alphabet];
        if bits.read(1)? == 1 {
            let two = bits.read(1)? == 1;
            let first_len = if bits.read(1)? == 0 { 1 } else { 8 };
            let mut mark = |s: u32| {
                if let Some(l) = lengths.get_mut(s as usize) {
                    *l = 1;
                }
            };
            mark(bits.read(first_len)?);
            if two {
                mark(bits.read(8)?);
            }
        } else {
            let mut cl = [0u8; 19];
            let n = bits.read(4)? as usize + 4;
            for &i in &CODE_LENGTH_ORDER[..n] {
                cl[i] = bits.read(3)? as u8;
            }
            let cl = Code::new(&cl)?;
            let mut max_symbol = if bits.read(1)? == 1 {
                let nbits = 2 + 2 * bits.read(3)?;
                let m = 2 + bits.read(nbits)? as usize;
                if m > alphabet {
                    return None;
                }
                m
            } else {
                alphabet
            };
            let (mut symbol, mut prev) = (0usize, 8u8);
            while symbol < alphabet {
                if max_symbol == 0 {
                    break;
                }
                max_symbol -= 1;
                let len = cl.read(bits)?;
                if len < 16 {
                    lengths[symbol] = len as u8;
                    symbol += 1;
                    if len != 0 {
                        prev = len as u8;
                    }
                } else {
                    let slot = usize::from(len - 16);
                    let repeat = bits.read([2, 3, 7][slot])? as usize + [3, 3, 11][slot];
                    if symbol + repeat > alphabet {
                        return None;
                    }
                    let fill = if len == 16 { prev } else { 0 };
                    lengths[symbol..symbol + repeat].fill(fill);
                    symbol += repeat;
                }
            }
        }
        Code::new(&lengths)
    }

    fn prefix_value(bits: &mut Bits<'_>, symbol: u16) -> Option<usize> {
        let symbol = u32::from(symbol);
        if symbol < 4 {
            return Some(symbol as usize + 1);
        }
        let extra = (symbol - 2) >> 1;
        let offset = (2 + (symbol & 1)) << extra;
        Some((offset + bits.read(extra)?) as usize + 1)
    }

    fn cache_bits(bits: &mut Bits<'_>) -> Option<u32> {
        if bits.read(1)? == 0 {
            return Some(0);
        }
        let b = bits.read(4)?;
        (1..=11).contains(&b).then_some(b)
    }

    /// An entropy-coded sub-image (no transforms, no meta codes), as ARGB.
    fn sub_image(bits: &mut Bits<'_>, width: usize, height: usize) -> Option<Vec<u32>> {
        let cache_bits = cache_bits(bits)?;
        let cache_size = if cache_bits > 0 {
            1usize << cache_bits
        } else {
            0
        };
        let green = read_code(bits, 256 + 24 + cache_size)?;
        let red = read_code(bits, 256)?;
        let blue = read_code(bits, 256)?;
        let alpha = read_code(bits, 256)?;
        let dist = read_code(bits, 40)?;
        let total = width.checked_mul(height)?;
        let mut out: Vec<u32> = Vec::with_capacity(total);
        let mut cache = vec![0u32; cache_size];
        let mut cached = 0;
        while out.len() < total {
            let g = green.read(bits)?;
            if g < 256 {
                let (r, b, a) = (red.read(bits)?, blue.read(bits)?, alpha.read(bits)?);
                out.push(
                    u32::from(a) << 24 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b),
                );
            } else if g < 280 {
                let len = prefix_value(bits, g - 256)?;
                let dist_symbol = dist.read(bits)?;
                let code = prefix_value(bits, dist_symbol)?;
                let d = if code > 120 {
                    code - 120
                } else {
                    let p = CODE_TO_PLANE[code - 1];
                    let d = i64::from(p >> 4) * width as i64 + 8 - i64::from(p & 0xf);
                    d.max(1) as usize
                };
                if d > out.len() || out.len() + len > total {
                    return None;
                }
                for _ in 0..len {
                    out.push(out[out.len() - d]);
                }
            } else {
                while cached < out.len() {
                    insert(&mut cache, cache_bits, out[cached]);
                    cached += 1;
                }
                out.push(*cache.get(usize::from(g - 280))?);
            }
            if cache_size > 0 {
                while cached < out.len() {
                    insert(&mut cache, cache_bits, out[cached]);
                    cached += 1;
                }
            }
        }
        Some(out)
    }

    fn insert(cache: &mut [u32], bits: u32, argb: u32) {
        let key = (argb.wrapping_mul(0x1e35_a7bd) >> (32 - bits)) as usize;
        cache[key] = argb;
    }

    fn subsample(size: usize, bits: u32) -> usize {
        (size + (1 << bits) - 1) >> bits
    }

    /// (Huffman groups libwebp allocates tables for, colour-cache bits) of the level-0 image
    /// of a VP8L stream whose transforms start at `data` (after the 5-byte header, or an
    /// ALPH chunk's stream), `width`×`height`.
    pub(super) fn groups(data: &[u8], width: u32, height: u32) -> Option<(u64, u32)> {
        let bits = &mut Bits { data, pos: 0 };
        let (mut xsize, ysize) = (width as usize, height as usize);
        let mut seen = 0u32;
        while bits.read(1)? == 1 {
            let kind = bits.read(2)?;
            if seen & (1 << kind) != 0 {
                return None;
            }
            seen |= 1 << kind;
            match kind {
                0 | 1 => {
                    let b = bits.read(3)? + 2;
                    sub_image(bits, subsample(xsize, b), subsample(ysize, b))?;
                }
                3 => {
                    let colors = bits.read(8)? as usize + 1;
                    let b = match colors {
                        0..=2 => 3,
                        3..=4 => 2,
                        5..=16 => 1,
                        _ => 0,
                    };
                    sub_image(bits, colors, 1)?;
                    xsize = subsample(xsize, b);
                }
                _ => {}
            }
        }
        let cache_bits = cache_bits(bits)?;
        if bits.read(1)? == 0 {
            return Some((1, cache_bits));
        }
        let b = bits.read(3)? + 2;
        let image = sub_image(bits, subsample(xsize, b), subsample(ysize, b))?;
        let groups = image.iter().map(|p| (p >> 8) & 0xffff);
        let max = u64::from(groups.clone().max().unwrap_or(0)) + 1;
        if max > 1000 || max > (xsize * ysize) as u64 {
            // libwebp maps the used groups onto [0, n).
            let mut used = vec![false; 1 << 16];
            Some((
                groups
                    .filter(|&g| !std::mem::replace(&mut used[g as usize], true))
                    .count() as u64,
                cache_bits,
            ))
        } else {
            Some((max, cache_bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    use super::super::formats_corpus as corpus;

    fn run(data: &[u8], shrink: u32) -> Result<Decoded, Error> {
        let info = header(data)?;
        decode(data, &info, shrink, &Limits::default())
    }

    #[test]
    fn corpus_files_decode_at_their_size() {
        for (name, w, h, model) in [
            ("libwebp_test.webp", 128, 128, ColorModel::Rgb),
            (
                "derived_webp_lossless_coffee.webp",
                600,
                400,
                ColorModel::Rgb,
            ),
            (
                "derived_webp_lossy_q80_icc_Kite.webp",
                2560,
                1600,
                ColorModel::Rgb,
            ),
            (
                "derived_webp_alpha_astronaut.webp",
                512,
                512,
                ColorModel::Rgba,
            ),
            (
                "derived_webp_anim4_BytheWater.webp",
                640,
                400,
                ColorModel::Rgba,
            ),
            ("webppixbufloader_t3.webp", 300, 300, ColorModel::Rgba),
        ] {
            let data = corpus(name);
            let info = header(&data).unwrap();
            assert_eq!((info.width, info.height), (w, h), "{name}");
            for shrink in [1, 3, 8] {
                let d = run(&data, shrink).unwrap_or_else(|e| panic!("{name}: {e}"));
                let b = &d.bitmap;
                assert_eq!(
                    (b.width, b.height, b.model),
                    (w.div_ceil(shrink), h.div_ceil(shrink), model),
                    "{name} /{shrink}"
                );
                assert_eq!(b.data.len(), b.row_bytes() * b.height as usize);
                let bytes = decode_bytes(&data, &info, shrink);
                assert!(bytes.planned <= bytes.full && bytes.full <= full_bytes(&info));
            }
        }
    }

    /// Found by the `webp` fuzz target: on a strip 3 px high, libwebp's rescaler costs more
    /// than the reduced output saves, so the plan must decode at full size, never promise more
    /// than the full-size decode.
    #[test]
    fn thin_images_decode_at_full_size_when_scaling_costs_more() {
        let data: Vec<u8> = (0..128 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let strip = crate::bitmap::Bitmap::new(128, 3, ColorModel::Rgb, data);
        let request = crate::Request {
            format: crate::OutputFormat::Webp,
            ..Default::default()
        };
        let file = crate::encode::encode(&strip, &request).unwrap();
        let info = header(&file).unwrap();
        for shrink in [2, 3, 8] {
            let bytes = decode_bytes(&file, &info, shrink);
            assert!(bytes.planned <= bytes.full, "/{shrink}: {bytes:?}");
            let decoded = run(&file, shrink).unwrap().bitmap;
            assert!(decoded.width >= 128u32.div_ceil(shrink) && decoded.height >= 1);
            assert!(decoded.data.len() as u64 <= bytes.planned);
        }
    }

    #[test]
    fn icc_and_alpha_are_kept() {
        let d = run(&corpus("derived_webp_lossy_q80_icc_Kite.webp"), 8).unwrap();
        assert_eq!(d.icc.map(|p| p.len()), Some(3144));
        let d = run(&corpus("derived_webp_alpha_astronaut.webp"), 1).unwrap();
        let alpha: Vec<u8> = d.bitmap.data.chunks_exact(4).map(|p| p[3]).collect();
        // Radial alpha: opaque centre, transparent corners.
        assert_eq!(alpha[256 * 512 + 256], 255);
        assert!(alpha[0] < 16, "corner alpha {}", alpha[0]);
    }

    #[test]
    fn scaled_decode_matches_full_decode() {
        let data = corpus("derived_webp_lossy_q80_icc_Kite.webp");
        let full = run(&data, 1).unwrap().bitmap;
        let scaled = run(&data, 4).unwrap().bitmap;
        let mut shrinker = BoxShrinker::new(full.width, full.height, 4, full.model);
        for row in full.data.chunks_exact(full.row_bytes()) {
            shrinker.push_row(row);
        }
        let boxed = shrinker.finish();
        let mse = boxed
            .data
            .iter()
            .zip(&scaled.data)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / boxed.data.len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
        assert!(psnr > 35.0, "PSNR {psnr}");
    }

    #[test]
    fn bad_corpus_files_give_typed_errors() {
        let err = header(&corpus("derived_bad_webp_vp8x_canvas16384_astronaut.webp"))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        let err = run(&corpus("derived_bad_trunc50_webp_lossy_Kite.webp"), 1)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    }

    #[test]
    fn a_complete_riff_with_cut_image_data_is_truncated() {
        // The RIFF and chunk sizes fixed up to the cut: only the VP8 data is short.
        let data = corpus("libwebp_test.webp");
        let mut cut = data[..data.len() / 2].to_vec();
        let n = cut.len() as u32;
        cut[4..8].copy_from_slice(&(n - 8).to_le_bytes());
        cut[16..20].copy_from_slice(&(n - 20).to_le_bytes());
        let err = run(&cut, 1).err().unwrap();
        assert!(
            matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Corrupt),
            "{err}"
        );
    }

    #[test]
    fn hostile_headers_give_typed_errors() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
            b"RIFF\x04\0\0\0WEBP".to_vec(),
            b"RIFF\xff\xff\xff\xffWEBPVP8 \x10\0\0\0".to_vec(),
            // A chunk that says more than its RIFF holds.
            b"RIFF\x14\0\0\0WEBPVP8L\xff\xff\xff\x7f\x2f\0\0\0\0\0\0\0".to_vec(),
            // VP8L version 7, and a VP8X shorter than 10 bytes.
            b"RIFF\x12\0\0\0WEBPVP8L\x05\0\0\0\x2f\0\0\0\xe0\0".to_vec(),
            b"RIFF\x10\0\0\0WEBPVP8X\x04\0\0\0\0\0\0\0".to_vec(),
            // An animation whose canvas has no frame.
            b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\x02\0\0\0\0\0\0\0\0\0".to_vec(),
        ];
        // Every prefix of real files: a truncated RIFF.
        for name in ["libwebp_test.webp", "webppixbufloader_t3.webp"] {
            let data = corpus(name);
            for len in (0..data.len()).step_by(97) {
                cases.push(data[..len].to_vec());
            }
        }
        for case in &cases {
            match run(case, 2) {
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Truncated | ErrorKind::Corrupt),
                    "{e} for {:?}",
                    &case[..case.len().min(24)]
                ),
                Ok(_) => panic!("decoded {:?}", &case[..case.len().min(24)]),
            }
        }
    }

    #[test]
    fn lying_chunk_sizes_never_panic() {
        // Every chunk-size byte of real files set to extreme values.
        for name in [
            "webppixbufloader_t3.webp",
            "derived_webp_alpha_astronaut.webp",
            "derived_webp_lossless_coffee.webp",
        ] {
            let data = corpus(name);
            for pos in 4..data.len().min(400) {
                for v in [0u8, 1, 0x7f, 0xff] {
                    let mut bad = data.clone();
                    bad[pos] = v;
                    let _ = run(&bad, 3);
                }
            }
        }
    }

    #[test]
    fn lossless_groups_are_read_from_the_stream() {
        let data = corpus("derived_webp_lossless_coffee.webp");
        let c = parse(&data).unwrap();
        let (groups, cache_bits) =
            lossless::groups(c.frame.lossless.unwrap(), 600, 400).expect("stream parses");
        assert!((1..=150 * 100).contains(&groups), "{groups}");
        assert!(cache_bits <= 11);
        // Far below the worst case of one group per entropy-image entry.
        assert!(frame_bytes(&c.frame) < vp8l_bytes(600, 400, None) / 4);
        // Lossless ALPH streams parse too.
        let data = corpus("derived_webp_alpha_astronaut.webp");
        let c = parse(&data).unwrap();
        if let Some(stream) = c.frame.lossless {
            assert!(lossless::groups(stream, 512, 512).is_some());
        }
        // Cut streams fall back to the worst case instead of guessing.
        let data = corpus("derived_webp_lossless_coffee.webp");
        let stream = parse(&data).unwrap().frame.lossless.unwrap();
        assert_eq!(lossless::groups(&stream[..40], 600, 400), None);
    }

    #[test]
    fn budget_covers_the_planned_path() {
        let data = corpus("derived_webp_lossy_q80_icc_Kite.webp");
        let info = header(&data).unwrap();
        let bytes = decode_bytes(&data, &info, 8);
        let tight = Limits {
            max_decode_bytes: bytes.planned - 1,
            ..Limits::default()
        };
        let err = decode(&data, &info, 8, &tight).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::OverBudget);
        let enough = Limits {
            max_decode_bytes: bytes.planned,
            ..Limits::default()
        };
        decode(&data, &info, 8, &enough).unwrap();
    }
}
