//! Marker segments: the frame header (SOF), quantisation tables (DQT), Huffman tables (DHT),
//! arithmetic conditioning (DAC), restart interval (DRI) and scan headers (SOS), plus the walk
//! from one segment to the next.
//!
//! Every read is bounds-checked against the segment; anything outside what the reduced decoder
//! supports is reported as [`ScaledError::Unsupported`] so the caller falls back to the full
//! decoder.

use super::huffman::HuffTable;
use super::ScaledError;

/// Zigzag index → natural (row-major) index.
pub(super) const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// One image component as declared by the frame header, with its derived geometry.
#[derive(Debug, Clone)]
pub(super) struct Component {
    pub id: u8,
    pub h: usize,
    pub v: usize,
    pub tq: usize,
    /// Full-resolution size of this component's plane (before upsampling).
    pub width: usize,
    pub height: usize,
    /// Blocks a non-interleaved scan of this component covers.
    pub blocks_x: usize,
    pub blocks_y: usize,
    /// Blocks allocated: the interleaved MCU grid, which pads past `blocks_x`×`blocks_y`.
    pub alloc_x: usize,
    pub alloc_y: usize,
}

/// The frame header (SOF0/1/2 Huffman, SOF9/10 arithmetic), validated.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub progressive: bool,
    /// Arithmetic coding (T.81 annex D) instead of Huffman.
    pub arithmetic: bool,
    pub width: usize,
    pub height: usize,
    pub comps: Vec<Component>,
    pub hmax: usize,
    pub vmax: usize,
    pub mcus_x: usize,
    pub mcus_y: usize,
}

/// A scan header (SOS).
#[derive(Debug, Clone)]
pub(super) struct Scan {
    /// Indices into [`Frame::comps`], with their DC and AC table selectors.
    pub comps: Vec<ScanComp>,
    pub ss: usize,
    pub se: usize,
    pub ah: u8,
    pub al: u8,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ScanComp {
    pub index: usize,
    pub td: usize,
    pub ta: usize,
}

/// A marker and its payload (without the length bytes), or a standalone marker.
pub(super) struct Segment<'a> {
    pub marker: u8,
    pub payload: &'a [u8],
}

fn corrupt(what: &'static str) -> ScaledError {
    ScaledError::Corrupt(what)
}

/// Reads the marker segment starting at or after `pos` (skipping junk and fill bytes as
/// libjpeg does). Returns the segment and the position just past it; `None` at end of data.
pub(super) fn next_segment(data: &[u8], mut pos: usize) -> Option<(Segment<'_>, usize)> {
    loop {
        // Find the next 0xFF, then skip fill bytes.
        pos += data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            // Stuffed zero (junk in the middle of nowhere), TEM, stray RSTn, SOI, EOI: no length.
            0x00 => continue,
            0x01 | 0xD0..=0xD9 => {
                return Some((
                    Segment {
                        marker,
                        payload: &[],
                    },
                    pos,
                ))
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*data.get(pos)?, *data.get(pos + 1)?]));
        if len < 2 {
            // A broken length: treat as end of the usable data.
            return None;
        }
        let payload = data.get(pos + 2..pos + len)?;
        return Some((Segment { marker, payload }, pos + len));
    }
}

/// Position of the first marker (other than RSTn and stuffed zeros) at or after `pos`: the end
/// of an entropy-coded segment. Returns `data.len()` when the data ends first.
pub(super) fn skip_entropy_data(data: &[u8], mut pos: usize) -> usize {
    while let Some(off) = data.get(pos..).and_then(|d| memchr::memchr(0xFF, d)) {
        pos += off;
        match data.get(pos + 1) {
            Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => pos += 1,
            Some(_) => return pos,
            None => return data.len(),
        }
    }
    data.len()
}

/// Parses a frame header. `max_pixels` is the number of pixels the engine's probe admitted
/// (dimensions must agree with it, so the allocations sized from this header stay bounded).
pub(super) fn parse_sof(
    marker: u8,
    p: &[u8],
    expect: (usize, usize),
) -> Result<Frame, ScaledError> {
    let (progressive, arithmetic) = match marker {
        0xC0 | 0xC1 => (false, false),
        0xC2 => (true, false),
        0xC9 => (false, true),
        0xCA => (true, true),
        _ => {
            return Err(ScaledError::Unsupported(
                "lossless or hierarchical coding process",
            ))
        }
    };
    if p.len() < 6 {
        return Err(corrupt("short SOF"));
    }
    if p[0] != 8 {
        return Err(ScaledError::Unsupported(
            "sample precision other than 8 bits",
        ));
    }
    let height = usize::from(u16::from_be_bytes([p[1], p[2]]));
    let width = usize::from(u16::from_be_bytes([p[3], p[4]]));
    if (width, height) != expect {
        // Height 0 (DNL) or a second, different frame header.
        return Err(ScaledError::Unsupported(
            "frame size differs from the probed header",
        ));
    }
    let n = usize::from(p[5]);
    if !matches!(n, 1 | 3 | 4) {
        return Err(ScaledError::Unsupported(
            "component count other than 1, 3 or 4",
        ));
    }
    if p.len() < 6 + 3 * n {
        return Err(corrupt("short SOF component list"));
    }
    let mut comps = Vec::with_capacity(n);
    for c in p[6..6 + 3 * n].chunks_exact(3) {
        let (h, v, tq) = (
            usize::from(c[1] >> 4),
            usize::from(c[1] & 15),
            usize::from(c[2]),
        );
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
            return Err(corrupt("bad sampling factor or table index"));
        }
        if comps.iter().any(|o: &Component| o.id == c[0]) {
            return Err(ScaledError::Unsupported("duplicate component id"));
        }
        comps.push(Component {
            id: c[0],
            h,
            v,
            tq,
            width: 0,
            height: 0,
            blocks_x: 0,
            blocks_y: 0,
            alloc_x: 0,
            alloc_y: 0,
        });
    }
    let (hmax, vmax) = if n == 1 {
        // A single-component frame is never interleaved: its sampling factors do not matter.
        comps[0].h = 1;
        comps[0].v = 1;
        (1, 1)
    } else {
        (
            comps.iter().map(|c| c.h).max().unwrap_or(1),
            comps.iter().map(|c| c.v).max().unwrap_or(1),
        )
    };
    if comps.iter().any(|c| hmax % c.h != 0 || vmax % c.v != 0) {
        return Err(ScaledError::Unsupported(
            "non-integer chroma subsampling ratio",
        ));
    }
    let mcus_x = width.div_ceil(8 * hmax);
    let mcus_y = height.div_ceil(8 * vmax);
    for c in &mut comps {
        c.width = (width * c.h).div_ceil(hmax);
        c.height = (height * c.v).div_ceil(vmax);
        c.blocks_x = c.width.div_ceil(8);
        c.blocks_y = c.height.div_ceil(8);
        c.alloc_x = mcus_x * c.h;
        c.alloc_y = mcus_y * c.v;
    }
    Ok(Frame {
        progressive,
        arithmetic,
        width,
        height,
        comps,
        hmax,
        vmax,
        mcus_x,
        mcus_y,
    })
}

/// Parses a DQT segment into `tables` (natural order).
pub(super) fn parse_dqt(
    mut p: &[u8],
    tables: &mut [Option<[u16; 64]>; 4],
) -> Result<(), ScaledError> {
    while let Some((&pq_tq, rest)) = p.split_first() {
        let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
        if id > 3 || precision > 1 {
            return Err(corrupt("bad DQT table"));
        }
        let size = 64 << precision;
        let body = rest.get(..size).ok_or(corrupt("short DQT"))?;
        let mut table = [0u16; 64];
        for (k, &nat) in ZIGZAG.iter().enumerate() {
            table[nat] = if precision == 0 {
                u16::from(body[k])
            } else {
                u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
            };
        }
        tables[id] = Some(table);
        p = &rest[size..];
    }
    Ok(())
}

/// Parses a DHT segment into the DC and AC table slots.
pub(super) fn parse_dht(
    mut p: &[u8],
    dc: &mut [Option<HuffTable>; 4],
    ac: &mut [Option<HuffTable>; 4],
) -> Result<(), ScaledError> {
    while let Some((&tc_th, rest)) = p.split_first() {
        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
        if class > 1 || id > 3 {
            return Err(corrupt("bad DHT table"));
        }
        let counts: [u8; 16] = rest
            .get(..16)
            .ok_or(corrupt("short DHT"))?
            .try_into()
            .map_err(|_| corrupt("short DHT"))?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = rest.get(16..16 + total).ok_or(corrupt("short DHT"))?;
        let table = HuffTable::new(&counts, values)?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        p = &rest[16 + total..];
    }
    Ok(())
}

/// Parses and validates a scan header against the frame.
pub(super) fn parse_sos(p: &[u8], frame: &Frame) -> Result<Scan, ScaledError> {
    let n = usize::from(*p.first().ok_or(corrupt("short SOS"))?);
    if n == 0 || n > 4 || p.len() < 4 + 2 * n {
        return Err(corrupt("bad SOS component count"));
    }
    let mut comps = Vec::with_capacity(n);
    for c in p[1..1 + 2 * n].chunks_exact(2) {
        let index = frame
            .comps
            .iter()
            .position(|fc| fc.id == c[0])
            .ok_or(corrupt("scan names an unknown component"))?;
        if comps.iter().any(|s: &ScanComp| s.index == index) {
            return Err(corrupt("component twice in one scan"));
        }
        let (td, ta) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if td > 3 || ta > 3 {
            return Err(corrupt("bad entropy table selector"));
        }
        comps.push(ScanComp { index, td, ta });
    }
    if n > 1
        && comps
            .iter()
            .map(|s| blocks_in_mcu(frame, s.index))
            .sum::<usize>()
            > 10
    {
        return Err(corrupt("more than 10 blocks per MCU"));
    }
    let tail = &p[1 + 2 * n..];
    let (ss, se, ah, al) = (
        usize::from(tail[0]),
        usize::from(tail[1]),
        tail[2] >> 4,
        tail[2] & 15,
    );
    if frame.progressive {
        let dc = ss == 0;
        if (dc && se != 0) || (!dc && (se < ss || se > 63 || n != 1)) || al > 13 || ah > 13 {
            return Err(corrupt("bad progressive scan parameters"));
        }
        Ok(Scan {
            comps,
            ss,
            se,
            ah,
            al,
        })
    } else {
        // Sequential scans always carry the whole band; libjpeg ignores Ss/Se/Ah/Al here.
        Ok(Scan {
            comps,
            ss: 0,
            se: 63,
            ah: 0,
            al: 0,
        })
    }
}

fn blocks_in_mcu(frame: &Frame, index: usize) -> usize {
    frame.comps[index].h * frame.comps[index].v
}

/// Arithmetic-coding conditioning per table (T.81 F.1.4.4): the DC bounds L and U of a "small"
/// difference and the AC band split K, as DAC segments set them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Conditioning {
    pub dc_l: [u8; 4],
    pub dc_u: [u8; 4],
    pub ac_k: [u8; 4],
}

impl Default for Conditioning {
    /// The defaults T.81 gives when no DAC segment sets a table: L = 0, U = 1, K = 5.
    fn default() -> Self {
        Conditioning {
            dc_l: [0; 4],
            dc_u: [1; 4],
            ac_k: [5; 4],
        }
    }
}

/// Parses a DAC segment into `cond`.
pub(super) fn parse_dac(p: &[u8], cond: &mut Conditioning) -> Result<(), ScaledError> {
    if !p.len().is_multiple_of(2) {
        return Err(corrupt("short DAC"));
    }
    for entry in p.chunks_exact(2) {
        let (class, id, value) = (entry[0] >> 4, usize::from(entry[0] & 15), entry[1]);
        if id > 3 {
            return Err(corrupt("bad DAC table index"));
        }
        match class {
            0 => {
                let (l, u) = (value & 15, value >> 4);
                if l > u {
                    return Err(corrupt("DAC DC bounds with L above U"));
                }
                cond.dc_l[id] = l;
                cond.dc_u[id] = u;
            }
            1 if (1..=63).contains(&value) => cond.ac_k[id] = value,
            _ => return Err(corrupt("bad DAC entry")),
        }
    }
    Ok(())
}

/// Position just past the next restart marker (RSTn) at or after `pos`, stepping over junk,
/// stuffing and fill bytes before it as libjpeg's resynchronisation does; `None` when a real
/// marker (such as EOI) or the end of the data comes first.
pub(super) fn seek_restart(data: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        pos += memchr::memchr(0xFF, data.get(pos..)?)?;
        match data.get(pos + 1) {
            Some(0xD0..=0xD7) => return Some(pos + 2),
            Some(0x00..=0xBF) | Some(0xFF) => pos += 1,
            _ => return None,
        }
    }
}

/// Parses a DRI segment.
pub(super) fn parse_dri(p: &[u8]) -> Result<usize, ScaledError> {
    match p {
        [a, b, ..] => Ok(usize::from(u16::from_be_bytes([*a, *b]))),
        _ => Err(corrupt("short DRI")),
    }
}
