//! Scale-aware JPEG decoding: the image comes out directly at 1/8, 1/4 or 1/2 of its size,
//! decoding only what that scale needs.
//!
//! * **1/8** — each 8×8 block becomes one pixel, its DC value. Sequential scans decode the DC
//!   difference and entropy-decode the AC symbols only to step over them (no dequantisation,
//!   no coefficient storage, no IDCT). Progressive files decode only their DC scans (first pass
//!   and successive-approximation refinements) and stop as soon as every component's DC is
//!   complete: the AC scans, most of the file, are never read.
//! * **1/4, 1/2** — exact cell-average IDCTs ([`idct`]) produce 2×2 or 4×4 pixels per block.
//!   Sequential blocks are reduced as they are decoded; progressive files read every scan
//!   into a coefficient store first (the cell average needs the high odd frequencies).
//!
//! Subsampled chroma gets a larger IDCT output than luma where its coefficients are decoded
//! anyway (up to 8×8 per block, as libjpeg's DCT scaling does: 4:2:0 chroma at 1/2 comes out
//! of an 8×8 IDCT at the output resolution), so the IDCT itself upsamples it; what remains
//! (and all chroma of a progressive 1/8 decode, which reads DC only) is upsampled with a
//! triangle filter, then converted to RGB ([`output`]); CMYK and YCCK
//! planes are handed back raw, as zune-jpeg's full decode hands them, so `decode/jpeg.rs`
//! normalises both paths identically. Headers, ICC and EXIF stay with zune-jpeg.
//!
//! * **1 (full size)** — the 8×8 basis is the plain IDCT. Not used for speed (zune-jpeg's SIMD
//!   decoder is faster) but as the lenient path for damaged files zune-jpeg rejects in strict
//!   mode: like libjpeg, this decoder resynchronises at the next restart marker after junk.
//!
//! # What falls back to the full decoder
//! Every [`ScaledError`] makes the caller use zune-jpeg's full decode instead, so an
//! unsupported or damaged file never yields a wrong picture from this path:
//!
//! * lossless and hierarchical processes (SOF3, SOF5–7, SOF11, SOF13–15), 12- and 16-bit
//!   precision, DNL-defined heights, a second frame header;
//! * 2-component frames and non-integer subsampling ratios (e.g. h = 3 next to h = 2);
//! * a colour space whose channel count disagrees with the frame (decided by zune-jpeg);
//! * corrupt data: bad tables, a block index outside the frame, a scan that names a missing
//!   table, a component in two sequential scans;
//! * a file that ends before some component's first scan.
//!
//! Arithmetic coding (SOF9, SOF10) is read here at every scale ([`arith`]): zune-jpeg has no
//! arithmetic decoder, so for those files this decoder is the only one (at full size too).
//!
//! Damage inside entropy-coded data is not a fallback; it is handled as libjpeg handles it: a
//! bit pattern that is no Huffman code reads as symbol 0, a run past the end of a block ends
//! it, and data that runs out early (a truncated file, junk, zeroed bytes, a stray marker)
//! leaves the blocks from there on missing: grey in a sequential or DC scan, unrefined in a
//! progressive AC scan. With restart markers that lasts to the next marker, where decoding
//! resumes (junk before it is skipped); without them, to the end of the scan. So a
//! progressive file cut after its DC scans still yields a full 1/8 thumbnail, and at 1/4 and
//! 1/2 a cut yields the coarser picture the scans before it make.
//!
//! # Memory
//! A sequential decode whose one scan holds every component (the usual layout) keeps its
//! planes as bands of two MCU rows: [`output::Assembler`] colour-converts each row as soon as
//! the planes hold what it reads, so the decode holds the output image plus a few rows. A
//! progressive decode keeps its coefficient store until the last scan, converts it into whole
//! planes, frees it, and only then allocates the output.
//!
//! Allocation is bounded by the frame size, which must equal the size the engine's probe
//! admitted under its limits; every loop is bounded by the block count of the frame.

mod arith;
mod baseline;
mod huffman;
mod idct;
mod markers;
mod output;
mod progressive;
mod scan;

use arith::ArithReader;
use huffman::{BitReader, HuffTable};
use markers::{Conditioning, Frame};
use progressive::Coefs;

/// Why the reduced decoder declined a file (the caller then decodes it in full).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScaledError {
    /// A valid feature this decoder leaves to the full decoder.
    #[error("not supported by the reduced decoder: {0}")]
    Unsupported(&'static str),
    /// The data violates the format.
    #[error("corrupt JPEG data: {0}")]
    Corrupt(&'static str),
    /// The data ends inside a scan the reduced decoder needs.
    #[error("JPEG data ends inside a needed scan")]
    Truncated,
}

/// The colour interpretation of the components, as the full decoder decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColorKind {
    /// One component.
    Gray,
    /// Three components, converted to RGB.
    YCbCr,
    /// Three components already RGB (Adobe transform 0 or 'R','G','B' ids).
    Rgb,
    /// Four components handed back raw (CMYK or YCCK, normalised by the caller).
    Raw4,
}

impl ColorKind {
    fn channels(self) -> usize {
        match self {
            ColorKind::Gray => 1,
            ColorKind::YCbCr | ColorKind::Rgb => 3,
            ColorKind::Raw4 => 4,
        }
    }
}

/// A decoded image at reduced scale, interleaved, 8 bits per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScaledImage {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// One component at the reduced scale, padded to whole MCUs: whole, or as a band of two MCU
/// rows reused as a ring while [`output::Assembler`] turns finished rows into pixels.
pub(crate) struct Plane {
    pub stride: usize,
    /// Samples per block across and down (1, 2, 4 or 8). Subsampled chroma gets more than luma
    /// where its coefficients are decoded anyway, so its IDCT does the upsampling (as libjpeg's
    /// DCT scaling does) and the result keeps the chroma detail a filter would blur.
    pub nx: usize,
    pub ny: usize,
    /// Rows held: all of them, or a band of a power of two rows, a multiple of `ny` (so a
    /// block's rows never wrap).
    pub rows: usize,
    /// Row `y` of the plane is stored at row `y & row_mask` (`usize::MAX` for a whole plane;
    /// a mask, not a modulo, because it is computed for every block).
    row_mask: usize,
    pub data: Vec<u8>,
}

impl Plane {
    /// Offset in `data` of plane row `y`.
    #[inline(always)]
    pub fn row_start(&self, y: usize) -> usize {
        (y & self.row_mask) * self.stride
    }

    /// Whether the plane holds all its rows (not a band).
    pub fn is_whole(&self) -> bool {
        self.row_mask == usize::MAX
    }
}

/// Decodes `data` at 1/`scale` (`scale` ∈ {1, 2, 4, 8}) of `expect` = (width, height), the size
/// the engine's probe read and admitted. The output is `ceil(width / scale)` ×
/// `ceil(height / scale)`.
pub(crate) fn decode(
    data: &[u8],
    expect: (u32, u32),
    scale: u32,
    kind: ColorKind,
) -> Result<ScaledImage, ScaledError> {
    decode_with_tables(None, data, expect, scale, kind)
}

/// [`decode`] of an abbreviated stream whose tables may come first from `tables`, a
/// tables-only stream (SOI, DQT/DHT/DRI/DAC, EOI) as JPEG-in-TIFF keeps in its JPEGTables
/// tag. The tables are read before `data`'s own segments, which is what inserting them after
/// `data`'s SOI (libtiff's reading) amounts to, without copying each strip or tile.
pub(crate) fn decode_with_tables(
    tables: Option<&[u8]>,
    data: &[u8],
    expect: (u32, u32),
    scale: u32,
    kind: ColorKind,
) -> Result<ScaledImage, ScaledError> {
    let mut d = Decoder::run(tables, data, expect, scale, Some(kind))?;
    d.assembler
        .take()
        .and_then(output::Assembler::finish)
        .ok_or(ScaledError::Corrupt(
            "the scans left rows of the image undecoded",
        ))
}

/// The tables scans use, as the segments before them define them.
#[derive(Default)]
struct Tables {
    qt: [Option<[u16; 64]>; 4],
    dc: [Option<HuffTable>; 4],
    ac: [Option<HuffTable>; 4],
    /// Arithmetic coding's conditioning (DAC), in place of Huffman tables.
    cond: Conditioning,
    restart_interval: usize,
}

impl Tables {
    /// Reads a segment that is neither a frame header, a scan nor EOI: a table goes into
    /// `self`, the declines every reader shares are errors, the rest (APPn, COM, stray RSTn:
    /// nothing for the pixels) is skipped.
    fn read(&mut self, seg: &markers::Segment<'_>) -> Result<(), ScaledError> {
        match seg.marker {
            0xD8 => Err(ScaledError::Unsupported("second SOI before EOI")),
            0xDB => markers::parse_dqt(seg.payload, &mut self.qt),
            0xC4 => markers::parse_dht(seg.payload, &mut self.dc, &mut self.ac),
            0xDD => {
                self.restart_interval = markers::parse_dri(seg.payload)?;
                Ok(())
            }
            0xCC => markers::parse_dac(seg.payload, &mut self.cond),
            0xDC => Err(ScaledError::Unsupported("DNL marker")),
            _ => Ok(()),
        }
    }
}

/// SOF0–SOF15, except the codes in that range that are not frame headers (DHT, JPG, DAC).
fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Parses a frame header, which must be the file's first (`seen`: one was read before).
fn read_frame(
    seg: &markers::Segment<'_>,
    expect: (usize, usize),
    seen: bool,
) -> Result<Frame, ScaledError> {
    if seen {
        return Err(ScaledError::Unsupported("more than one frame header"));
    }
    markers::parse_sof(seg.marker, seg.payload, expect)
}

/// The (width, height) of `data`'s first frame header, or `None` when there is none before
/// the first scan (or the data ends first). For a stream whose size is not known beforehand,
/// such as a JPEG-in-TIFF strip.
pub(crate) fn frame_size(data: &[u8]) -> Option<(u32, u32)> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    while let Some((seg, next)) = markers::next_segment(data, pos) {
        pos = next;
        match seg.marker {
            0xD9 | 0xDA => return None,
            m if is_frame_header(m) => {
                let p = seg.payload.get(..5)?;
                let height = u16::from_be_bytes([p[1], p[2]]);
                let width = u16::from_be_bytes([p[3], p[4]]);
                return Some((u32::from(width), u32::from(height)));
            }
            _ => {}
        }
    }
    None
}

/// Whether [`decode`] would take `data`, judged without decoding: the frame and scan headers
/// and the tables they name, with each scan's entropy-coded data skipped marker to marker.
/// It finds the header-level declines of the list above and a file that ends before some
/// component's first scan. It does not judge entropy-coded data (the decoder renders damage
/// there) or the order of progressive refinements, so a file it passes can still be declined
/// by the decode; one it declines may still decode (a 1/8 decode stops reading once the DC
/// is complete). For predicting a decode's memory before it runs.
pub(crate) fn check_headers(data: &[u8], expect: (u32, u32)) -> Result<(), ScaledError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(ScaledError::Corrupt("no SOI marker"));
    }
    let expect = (expect.0 as usize, expect.1 as usize);
    let mut tables = Tables::default();
    let mut frame: Option<Frame> = None;
    let mut scanned = Vec::new();
    let mut pos = 2;
    while let Some((seg, next)) = markers::next_segment(data, pos) {
        pos = next;
        match seg.marker {
            0xD9 => break,
            m if is_frame_header(m) => {
                let f = read_frame(&seg, expect, frame.is_some())?;
                scanned = vec![false; f.comps.len()];
                frame = Some(f);
            }
            0xDA => {
                let f = frame
                    .as_ref()
                    .ok_or(ScaledError::Corrupt("scan before the frame header"))?;
                let scan = markers::parse_sos(seg.payload, f)?;
                // The tables a component's first scan uses, as `Decoder::scan` requires them.
                if !f.progressive || scan.ss == 0 {
                    for sc in &scan.comps {
                        let undefined = ScaledError::Corrupt("scan uses an undefined table");
                        let huffman = !f.arithmetic;
                        if tables.qt[f.comps[sc.index].tq].is_none()
                            || (huffman
                                && (!f.progressive || scan.ah == 0)
                                && tables.dc[sc.td].is_none())
                            || (huffman && !f.progressive && tables.ac[sc.ta].is_none())
                        {
                            return Err(undefined);
                        }
                        if !f.progressive && scanned[sc.index] {
                            return Err(ScaledError::Corrupt(
                                "a component in two sequential scans",
                            ));
                        }
                        scanned[sc.index] = true;
                    }
                }
                pos = markers::skip_entropy_data(data, pos);
            }
            _ => tables.read(&seg)?,
        }
    }
    if frame.is_none() || scanned.contains(&false) {
        return Err(ScaledError::Truncated);
    }
    Ok(())
}

/// A copy of the segments up to and including the first scan header, with an arithmetic frame
/// header relabelled as its Huffman counterpart (SOF9 → SOF1, SOF10 → SOF2) and DAC segments
/// turned into comments, for a header reader that refuses arithmetic coding.
pub(crate) fn huffman_labelled_headers(data: &[u8]) -> Vec<u8> {
    let mut copy = vec![0xFF, 0xD8];
    let mut pos = 2;
    while let Some((seg, next)) = markers::next_segment(data, pos) {
        pos = next;
        let marker = match seg.marker {
            0xC9 => 0xC1,
            0xCA => 0xC2,
            0xCC => 0xFE,
            other => other,
        };
        copy.extend_from_slice(&[0xFF, marker]);
        // Standalone markers (TEM, RSTn) carry no length.
        if !matches!(seg.marker, 0x01 | 0xD0..=0xD9) {
            copy.extend_from_slice(&(seg.payload.len() as u16 + 2).to_be_bytes());
            copy.extend_from_slice(seg.payload);
        }
        if seg.marker == 0xDA {
            break;
        }
    }
    copy
}

/// Whether the first scan holds every component of the frame, read from the headers before it.
/// A sequential file whose components come in separate scans (or a file cut before its first
/// scan) makes a full-size decoder keep every component whole until the last scan.
pub(crate) fn first_scan_has_every_component(data: &[u8]) -> bool {
    let mut components = None;
    let mut pos = 2;
    while let Some((seg, next)) = markers::next_segment(data, pos) {
        pos = next;
        match seg.marker {
            0xD9 => break,
            0xDA => return components.is_some() && seg.payload.first() == components,
            m if is_frame_header(m) => components = seg.payload.get(5),
            _ => {}
        }
    }
    false
}

/// The component planes at 1/`scale`, before upsampling and colour conversion (each padded to
/// whole MCUs; [`markers::Component`] has their valid size). Whole planes, for the oracle.
#[cfg(test)]
fn decode_planes(
    data: &[u8],
    expect: (u32, u32),
    scale: u32,
) -> Result<(Frame, Vec<Plane>), ScaledError> {
    let mut d = Decoder::run(None, data, expect, scale, None)?;
    let frame = d.frame.take().ok_or(ScaledError::Truncated)?;
    Ok((frame, d.planes))
}

struct Decoder {
    scale: u32,
    n: usize,
    expect: (usize, usize),
    /// The colour interpretation when the decode produces pixels (`None`: planes only, whole).
    kind: Option<ColorKind>,
    tables: Tables,
    frame: Option<Frame>,
    /// Allocated at the first sequential scan, or after the progressive scans.
    planes: Vec<Plane>,
    /// Turns plane rows into pixels as they are finished (when `kind` is set).
    assembler: Option<output::Assembler>,
    /// Progressive only: coefficient store per component.
    coefs: Vec<Coefs>,
    /// Quantisation table of each component, latched at its first scan (as libjpeg does).
    latched_q: Vec<Option<[u16; 64]>>,
    /// Whether each component has appeared in a scan (DC scan for progressive).
    scanned: Vec<bool>,
    /// Progressive: DC bits still to come per component (its last DC scan's Al).
    dc_missing_bits: Vec<u8>,
}

impl Decoder {
    /// Decodes the file, after the tables of a tables-only stream if there is one: the planes
    /// are filled (and, with a `kind`, the assembler has every row).
    fn run(
        tables: Option<&[u8]>,
        data: &[u8],
        expect: (u32, u32),
        scale: u32,
        kind: Option<ColorKind>,
    ) -> Result<Decoder, ScaledError> {
        if !matches!(scale, 1 | 2 | 4 | 8) {
            return Err(ScaledError::Unsupported(
                "scale other than 1, 1/2, 1/4, 1/8",
            ));
        }
        if !data.starts_with(&[0xFF, 0xD8]) {
            return Err(ScaledError::Corrupt("no SOI marker"));
        }
        let mut d = Decoder {
            scale,
            n: idct::side(scale),
            expect: (expect.0 as usize, expect.1 as usize),
            kind,
            tables: Tables::default(),
            frame: None,
            planes: Vec::new(),
            assembler: None,
            coefs: Vec::new(),
            latched_q: Vec::new(),
            scanned: Vec::new(),
            dc_missing_bits: Vec::new(),
        };
        if let Some(tables) = tables {
            d.tables_only(tables)?;
        }
        d.segments(data)?;
        let frame = d.frame.take().ok_or(ScaledError::Truncated)?;
        if d.scanned.iter().any(|&s| !s) {
            return Err(ScaledError::Truncated);
        }
        if frame.progressive {
            d.coefs_to_planes(&frame)?;
        } else if let Some(assembler) = &mut d.assembler {
            // Components of separate scans: every plane is whole and complete now (bands
            // were assembled during their one scan).
            if d.planes.iter().all(Plane::is_whole) {
                assembler.emit_whole(&d.planes);
            }
        }
        d.frame = Some(frame);
        Ok(d)
    }

    /// Reads the tables of a tables-only stream; a frame or scan in it is declined.
    fn tables_only(&mut self, tables: &[u8]) -> Result<(), ScaledError> {
        if !tables.starts_with(&[0xFF, 0xD8]) {
            return Err(ScaledError::Corrupt("no SOI marker in the tables"));
        }
        let mut pos = 2;
        while let Some((seg, next)) = markers::next_segment(tables, pos) {
            pos = next;
            match seg.marker {
                0xD9 => break,
                m if m == 0xDA || is_frame_header(m) => {
                    return Err(ScaledError::Unsupported(
                        "image data in a tables-only stream",
                    ))
                }
                _ => self.tables.read(&seg)?,
            }
        }
        Ok(())
    }

    fn segments(&mut self, data: &[u8]) -> Result<(), ScaledError> {
        let mut pos = 2;
        while let Some((seg, next)) = markers::next_segment(data, pos) {
            pos = next;
            match seg.marker {
                0xD9 => break,
                m if is_frame_header(m) => {
                    self.start_frame(read_frame(&seg, self.expect, self.frame.is_some())?)?;
                }
                0xDA => {
                    let frame = self
                        .frame
                        .take()
                        .ok_or(ScaledError::Corrupt("scan before the frame header"))?;
                    let result = self.scan(&frame, seg.payload, data, pos);
                    self.frame = Some(frame);
                    pos = result?;
                    if self.dc_complete() {
                        break;
                    }
                }
                _ => self.tables.read(&seg)?,
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, frame: Frame) -> Result<(), ScaledError> {
        let count = frame.comps.len();
        if self.kind.is_some_and(|kind| kind.channels() != count) {
            return Err(ScaledError::Unsupported(
                "colour space does not match the component count",
            ));
        }
        self.latched_q = vec![None; count];
        self.scanned = vec![false; count];
        self.dc_missing_bits = vec![u8::MAX; count];
        if frame.progressive {
            let per_block = if self.scale == 8 { 1 } else { 64 };
            self.coefs = frame
                .comps
                .iter()
                .map(|c| Coefs {
                    per_block,
                    alloc_x: c.alloc_x,
                    data: vec![0; c.alloc_x * c.alloc_y * per_block],
                })
                .collect();
        }
        self.frame = Some(frame);
        Ok(())
    }

    /// Allocates the planes: whole, or as two-MCU-row bands when `band`.
    fn alloc_planes(&mut self, frame: &Frame, band: bool) {
        let n = self.n;
        // Progressive at 1/8 reads DC only, so chroma cannot get a larger IDCT there.
        let dc_only = frame.progressive && self.scale == 8;
        self.planes = frame
            .comps
            .iter()
            .map(|c| {
                let grow = |ratio: usize| {
                    if dc_only {
                        n
                    } else {
                        (n * ratio).min(8)
                    }
                };
                let (nx, ny) = (grow(frame.hmax / c.h), grow(frame.vmax / c.v));
                let whole = c.alloc_y * ny;
                // Two MCU rows: the one being decoded and the one before it, whose last row
                // the upsampling filter still reads.
                let ring = (2 * c.v * ny).next_power_of_two();
                let (rows, row_mask) = if band && ring < whole {
                    (ring, ring - 1)
                } else {
                    (whole, usize::MAX)
                };
                Plane {
                    stride: c.alloc_x * nx,
                    nx,
                    ny,
                    rows,
                    row_mask,
                    data: vec![0; c.alloc_x * nx * rows],
                }
            })
            .collect();
    }

    /// Allocates the assembler (and with it the output image) when the decode makes pixels.
    fn start_assembly(&mut self, frame: &Frame) {
        if let Some(kind) = self.kind {
            let samples: Vec<(usize, usize)> = self.planes.iter().map(|p| (p.nx, p.ny)).collect();
            self.assembler = Some(output::Assembler::new(frame, &samples, self.n, kind));
        }
    }

    /// At 1/8 a progressive decode is done once every component's DC is exact.
    fn dc_complete(&self) -> bool {
        self.scale == 8
            && self.frame.as_ref().is_some_and(|f| f.progressive)
            && self.dc_missing_bits.iter().all(|&b| b == 0)
    }

    /// Decodes (or skips) the scan whose header is `header` and whose entropy-coded data starts
    /// at `data[pos]`. Returns the position of the marker after the scan.
    fn scan(
        &mut self,
        frame: &Frame,
        header: &[u8],
        data: &[u8],
        pos: usize,
    ) -> Result<usize, ScaledError> {
        let scan = markers::parse_sos(header, frame)?;
        if frame.progressive && scan.ss > 0 && self.scale == 8 {
            // An AC band: the 1/8 picture needs none of it.
            return Ok(markers::skip_entropy_data(data, pos));
        }
        for sc in &scan.comps {
            if self.latched_q[sc.index].is_none() {
                let q = self.tables.qt[frame.comps[sc.index].tq].ok_or(ScaledError::Corrupt(
                    "scan uses an undefined quantisation table",
                ))?;
                self.latched_q[sc.index] = Some(q);
            }
        }
        let entropy = &data[pos..];
        let ri = self.tables.restart_interval;
        let read = if frame.arithmetic {
            let mut reader = ArithReader::new(entropy);
            if frame.progressive {
                self.arith_progressive_scan(frame, &scan, ri, &mut reader)?;
            } else {
                self.arith_sequential_scan(frame, &scan, ri, &mut reader)?;
            }
            reader.position()
        } else {
            let mut reader = BitReader::new(entropy);
            if frame.progressive {
                self.progressive_scan(frame, &scan, ri, &mut reader)?;
            } else {
                self.sequential_scan(frame, &scan, ri, &mut reader)?;
            }
            reader.position()
        };
        Ok(markers::skip_entropy_data(data, pos + read))
    }

    /// The start of a sequential scan: the planes are allocated at the first one, and each
    /// component may appear in one scan only. Returns whether the scan holds every component,
    /// when bands suffice (always, in practice): rows are finished MCU row by MCU row.
    fn start_sequential(
        &mut self,
        frame: &Frame,
        scan: &markers::Scan,
    ) -> Result<bool, ScaledError> {
        let all_in_one = scan.comps.len() == frame.comps.len();
        if self.planes.is_empty() {
            self.alloc_planes(frame, self.kind.is_some() && all_in_one);
            self.start_assembly(frame);
        }
        for sc in &scan.comps {
            if std::mem::replace(&mut self.scanned[sc.index], true) {
                return Err(ScaledError::Corrupt("a component in two sequential scans"));
            }
        }
        Ok(all_in_one)
    }

    fn sequential_scan(
        &mut self,
        frame: &Frame,
        scan: &markers::Scan,
        ri: usize,
        reader: &mut BitReader<'_>,
    ) -> Result<(), ScaledError> {
        let all_in_one = self.start_sequential(frame, scan)?;
        let targets = block_targets(frame, scan, &self.tables.qt, &mut self.planes)?;
        let mut comps = Vec::with_capacity(targets.len());
        for (sc, q, plane) in targets {
            let missing = ScaledError::Corrupt("scan uses an undefined Huffman table");
            comps.push(baseline::SeqComp {
                index: sc.index,
                v: frame.comps[sc.index].v,
                dc: self.tables.dc[sc.td].as_ref().ok_or(missing.clone())?,
                ac: self.tables.ac[sc.ta].as_ref().ok_or(missing)?,
                q,
                basis: idct::AnyBasis::new(plane.nx, plane.ny, q),
                plane,
                pred: 0,
            });
        }
        let sink = self.assembler.as_mut().filter(|_| all_in_one);
        let mut dec = baseline::Sequential { comps, sink };
        scan::run(frame, scan, ri, reader, &mut dec)
    }

    fn arith_sequential_scan(
        &mut self,
        frame: &Frame,
        scan: &markers::Scan,
        ri: usize,
        reader: &mut ArithReader<'_>,
    ) -> Result<(), ScaledError> {
        let all_in_one = self.start_sequential(frame, scan)?;
        let targets = block_targets(frame, scan, &self.tables.qt, &mut self.planes)?;
        let comps = targets
            .into_iter()
            .map(|(sc, q, plane)| arith::SeqComp {
                index: sc.index,
                v: frame.comps[sc.index].v,
                td: sc.td,
                ta: sc.ta,
                q,
                basis: idct::AnyBasis::new(plane.nx, plane.ny, q),
                plane,
                pred: 0,
                context: 0,
            })
            .collect();
        let sink = self.assembler.as_mut().filter(|_| all_in_one);
        let mut dec = arith::Sequential {
            comps,
            sink,
            cond: self.tables.cond,
            bins: arith::Bins::new(),
        };
        scan::run(frame, scan, ri, reader, &mut dec)
    }

    /// Checks a progressive scan against the ones before it: one DC first pass per component,
    /// then refinements one bit at a time, and AC bands only after the component's DC.
    fn check_progressive(&mut self, scan: &markers::Scan) -> Result<(), ScaledError> {
        if scan.ss > 0 {
            if self.dc_missing_bits[scan.comps[0].index] == u8::MAX {
                return Err(ScaledError::Corrupt(
                    "AC scan before the component's DC scan",
                ));
            }
            return Ok(());
        }
        for sc in &scan.comps {
            let expected_ah = self.dc_missing_bits[sc.index];
            if scan.ah == 0 {
                if expected_ah != u8::MAX {
                    return Err(ScaledError::Corrupt("DC first pass repeated"));
                }
            } else if scan.ah != expected_ah || scan.al + 1 != scan.ah {
                return Err(ScaledError::Corrupt("DC refinement out of sequence"));
            }
            self.dc_missing_bits[sc.index] = scan.al;
            self.scanned[sc.index] = true;
        }
        Ok(())
    }

    fn progressive_scan(
        &mut self,
        frame: &Frame,
        scan: &markers::Scan,
        ri: usize,
        reader: &mut BitReader<'_>,
    ) -> Result<(), ScaledError> {
        self.check_progressive(scan)?;
        if scan.ss == 0 {
            let stores = scan_stores(scan, &mut self.coefs)?;
            let mut comps = Vec::with_capacity(stores.len());
            for (sc, store) in scan.comps.iter().zip(stores) {
                let table = if scan.ah == 0 {
                    Some(
                        self.tables.dc[sc.td]
                            .as_ref()
                            .ok_or(ScaledError::Corrupt("undefined DC table"))?,
                    )
                } else {
                    None
                };
                comps.push((store, table, 0));
            }
            let mut dec = progressive::DcScan {
                comps,
                refine: scan.ah != 0,
                al: u32::from(scan.al),
            };
            return scan::run(frame, scan, ri, reader, &mut dec);
        }
        let sc = scan.comps[0];
        let table = self.tables.ac[sc.ta].as_ref();
        if scan.ah == 0 && table.is_none() {
            return Err(ScaledError::Corrupt("undefined AC table"));
        }
        let mut dec = progressive::AcScan {
            coefs: &mut self.coefs[sc.index],
            table,
            ss: scan.ss,
            se: scan.se,
            ah: scan.ah,
            al: u32::from(scan.al),
            eobrun: 0,
        };
        scan::run(frame, scan, ri, reader, &mut dec)
    }

    fn arith_progressive_scan(
        &mut self,
        frame: &Frame,
        scan: &markers::Scan,
        ri: usize,
        reader: &mut ArithReader<'_>,
    ) -> Result<(), ScaledError> {
        self.check_progressive(scan)?;
        if scan.ss == 0 {
            let stores = scan_stores(scan, &mut self.coefs)?;
            let comps = scan
                .comps
                .iter()
                .zip(stores)
                .map(|(sc, coefs)| arith::DcComp {
                    coefs,
                    td: sc.td,
                    pred: 0,
                    context: 0,
                })
                .collect();
            let mut dec = arith::DcScan {
                comps,
                refine: scan.ah != 0,
                al: u32::from(scan.al),
                cond: self.tables.cond,
                bins: arith::Bins::new(),
            };
            return scan::run(frame, scan, ri, reader, &mut dec);
        }
        let sc = scan.comps[0];
        let mut dec = arith::AcScan {
            coefs: &mut self.coefs[sc.index],
            ss: scan.ss,
            se: scan.se,
            ah: scan.ah,
            al: u32::from(scan.al),
            kx: usize::from(self.tables.cond.ac_k[sc.ta]),
            bins: Box::new([0; 256]),
        };
        scan::run(frame, scan, ri, reader, &mut dec)
    }

    /// Progressive: the reduced IDCT of every stored block into whole planes, then the store
    /// is freed before the output image is allocated. The planes are never larger than the
    /// output (half of it for 4:2:0 at 1/8), so the peak is the store plus the planes, or the
    /// planes plus the output, whichever is larger.
    fn coefs_to_planes(&mut self, frame: &Frame) -> Result<(), ScaledError> {
        self.alloc_planes(frame, false);
        for (ci, c) in frame.comps.iter().enumerate() {
            let q = self.latched_q[ci].ok_or(ScaledError::Truncated)?;
            let plane = &mut self.planes[ci];
            let (stride, nx, ny) = (plane.stride, plane.nx, plane.ny);
            let basis = idct::AnyBasis::new(nx, ny, &q);
            let store = &self.coefs[ci];
            let row_len = c.alloc_x * store.per_block;
            for (by, blocks) in store.data.chunks_exact(row_len).enumerate() {
                let row = plane.row_start(by * ny);
                match &basis {
                    // One pixel per block (DC only): a plain row-to-row map.
                    None => {
                        let out = &mut plane.data[row..row + c.alloc_x];
                        for (o, block) in out.iter_mut().zip(blocks.chunks_exact(store.per_block)) {
                            *o = idct::dc_pixel(block[0], q[0]);
                        }
                    }
                    Some(basis) => {
                        for (bx, block) in blocks.chunks_exact(64).enumerate() {
                            let block: &[i16; 64] = block
                                .try_into()
                                .map_err(|_| ScaledError::Corrupt("coefficient store"))?;
                            basis.reduce(block, &mut plane.data[row + bx * nx..], stride);
                        }
                    }
                }
            }
        }
        self.coefs = Vec::new();
        self.start_assembly(frame);
        if let Some(assembler) = &mut self.assembler {
            assembler.emit_whole(&self.planes);
        }
        Ok(())
    }
}

/// A component of a sequential scan, the quantisation table its blocks are reduced with (the
/// current one: a sequential block is complete within its scan) and its plane.
type BlockTarget<'a> = (markers::ScanComp, &'a [u16; 64], &'a mut Plane);

/// The [`BlockTarget`] of each component of a sequential scan.
fn block_targets<'a>(
    frame: &Frame,
    scan: &markers::Scan,
    qt: &'a [Option<[u16; 64]>; 4],
    planes: &'a mut [Plane],
) -> Result<Vec<BlockTarget<'a>>, ScaledError> {
    let mut planes: Vec<Option<&mut Plane>> = planes.iter_mut().map(Some).collect();
    scan.comps
        .iter()
        .map(|sc| {
            let q = qt[frame.comps[sc.index].tq]
                .as_ref()
                .ok_or(ScaledError::Corrupt("undefined quantisation table"))?;
            let plane = planes[sc.index]
                .take()
                .ok_or(ScaledError::Corrupt("component twice in one scan"))?;
            Ok((*sc, q, plane))
        })
        .collect()
}

/// The coefficient stores of a progressive DC scan's components, in scan order.
fn scan_stores<'a>(
    scan: &markers::Scan,
    coefs: &'a mut [Coefs],
) -> Result<Vec<&'a mut Coefs>, ScaledError> {
    let mut stores: Vec<Option<&mut Coefs>> = coefs.iter_mut().map(Some).collect();
    scan.comps
        .iter()
        .map(|sc| {
            stores[sc.index]
                .take()
                .ok_or(ScaledError::Corrupt("component twice in one scan"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
