//! Sequential (baseline and extended 8-bit Huffman) scans.
//!
//! Each block is complete when its scan ends, so it goes straight to the reduced plane: at 1/8
//! only the DC difference is decoded and the AC symbols are entropy-decoded just far enough to
//! skip them (no dequantisation, no coefficient storage, no IDCT); at 1/4 and 1/2 the block is
//! decoded into a 64-coefficient scratch block and reduced at once, so no coefficient buffer
//! for the whole image is ever held.

use super::huffman::{BitReader, HuffTable};
use super::idct::{self, AnyBasis, Basis};
use super::output::Assembler;
use super::scan::BlockDecoder;
use super::{Plane, ScaledError};

/// Per-component state of a sequential scan.
pub(super) struct SeqComp<'a> {
    /// The component's index in the frame, and its vertical sampling factor.
    pub index: usize,
    pub v: usize,
    pub dc: &'a HuffTable,
    pub ac: &'a HuffTable,
    pub q: &'a [u16; 64],
    pub plane: &'a mut Plane,
    pub pred: i32,
    /// The reduced IDCT for this component's output size, or `None` for 1×1 (DC only).
    pub basis: Option<AnyBasis>,
}

pub(super) struct Sequential<'a> {
    pub comps: Vec<SeqComp<'a>>,
    /// Takes each finished MCU row (when the scan holds every component).
    pub sink: Option<&'a mut Assembler>,
}

impl<'r> BlockDecoder<BitReader<'r>> for Sequential<'_> {
    #[inline]
    fn block(
        &mut self,
        r: &mut BitReader<'r>,
        pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        let c = &mut self.comps[pos];
        let (nx, ny) = (c.plane.nx, c.plane.ny);
        let s = u32::from(r.decode(c.dc)?);
        if s > 15 {
            return Err(ScaledError::Corrupt("DC magnitude category over 15"));
        }
        c.pred = c.pred.wrapping_add(r.receive_extend(s));
        let dc = i32::from(c.pred as i16);
        let stride = c.plane.stride;
        let start = c.plane.row_start(by * ny) + bx * nx;
        let Some(out) = c.plane.data.get_mut(start..) else {
            return Err(ScaledError::Corrupt("block outside the component"));
        };
        match &c.basis {
            None => {
                skip_ac(r, c.ac)?;
                out[0] = idct::dc_pixel(dc as i16, c.q[0]);
                Ok(())
            }
            Some(AnyBasis::L4(b)) => reduce_block(r, c.ac, b, dc, out, stride),
            Some(AnyBasis::L8(b)) => reduce_block(r, c.ac, b, dc, out, stride),
            Some(AnyBasis::L16(b)) => reduce_block(r, c.ac, b, dc, out, stride),
            Some(AnyBasis::L64(b)) => reduce_block(r, c.ac, b, dc, out, stride),
        }
    }

    fn restart(&mut self) {
        for c in &mut self.comps {
            c.pred = 0;
        }
    }

    fn missing(&mut self, pos: usize, bx: usize, by: usize) -> Result<(), ScaledError> {
        fill_grey(self.comps[pos].plane, bx, by)
    }

    fn row_done(&mut self, rows: usize) {
        if let Some(sink) = self.sink.as_deref_mut() {
            let comps = self.comps.iter().map(|c| (c.index, c.v, &*c.plane));
            emit_rows(sink, comps, rows);
        }
    }
}

/// A missing block of a sequential scan: uniform grey, as libjpeg leaves it.
pub(super) fn fill_grey(plane: &mut Plane, bx: usize, by: usize) -> Result<(), ScaledError> {
    let (nx, ny) = (plane.nx, plane.ny);
    for y in 0..ny {
        let start = plane.row_start(by * ny + y) + bx * nx;
        plane
            .data
            .get_mut(start..start + nx)
            .ok_or(ScaledError::Corrupt("block outside the component"))?
            .fill(128);
    }
    Ok(())
}

/// Hands the first `rows` MCU rows of a scan that holds every component to the assembler:
/// `comps` gives each component's frame index, vertical sampling factor and plane.
pub(super) fn emit_rows<'p>(
    sink: &mut Assembler,
    comps: impl Iterator<Item = (usize, usize, &'p Plane)>,
    rows: usize,
) {
    // Frame order: the scan holds every component.
    let mut planes: [Option<&Plane>; 4] = [None; 4];
    let mut ready = [0; 4];
    for (index, v, plane) in comps {
        planes[index] = Some(plane);
        ready[index] = rows * v * plane.ny;
    }
    let planes: Vec<&Plane> = planes.iter().flatten().copied().collect();
    sink.emit(&planes, &ready[..planes.len()]);
}

/// Entropy-decodes a block's AC coefficients straight into its reduced IDCT: no coefficient
/// block is stored, each non-zero coefficient is added to the output as it is read.
#[inline(always)]
fn reduce_block<const L: usize>(
    r: &mut BitReader<'_>,
    ac: &HuffTable,
    basis: &Basis<L>,
    dc: i32,
    out: &mut [u8],
    stride: usize,
) -> Result<(), ScaledError> {
    let mut acc = [0f32; L];
    basis.add(&mut acc, 0, dc);
    let mut k = 1usize;
    while k < 64 {
        r.ensure();
        if let Some((bits, run, value)) = ac.fast_ac(r.peek()) {
            k += run;
            basis.add(&mut acc, k, i32::from(value));
            r.skip(bits);
            k += 1;
            continue;
        }
        let sym = r.decode(ac)?;
        let (run, s) = (usize::from(sym >> 4), u32::from(sym & 15));
        if s == 0 {
            if run != 15 {
                break;
            }
            k += 16;
            continue;
        }
        k += run;
        basis.add(&mut acc, k, r.receive_extend(s));
        k += 1;
    }
    basis.store(&acc, out, stride);
    Ok(())
}

/// Entropy-decodes a block's AC symbols only to step over them.
#[inline(always)]
fn skip_ac(r: &mut BitReader<'_>, ac: &HuffTable) -> Result<(), ScaledError> {
    let mut k = 1usize;
    while k < 64 {
        r.ensure();
        if let Some((bits, run, _)) = ac.fast_ac(r.peek()) {
            r.skip(bits);
            k += run + 1;
            continue;
        }
        let sym = r.decode(ac)?;
        let (run, s) = (usize::from(sym >> 4), u32::from(sym & 15));
        if s == 0 {
            if run != 15 {
                return Ok(());
            }
            k += 16;
        } else {
            r.skip(s);
            k += run + 1;
        }
    }
    Ok(())
}
