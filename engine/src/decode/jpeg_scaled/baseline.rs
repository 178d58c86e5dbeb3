//! Sequential (baseline and extended 8-bit Huffman) scans.
//!
//! Each block is complete when its scan ends, so it goes straight to the reduced plane: at 1/8
//! only the DC difference is decoded and the AC symbols are entropy-decoded just far enough to
//! skip them (no dequantisation, no coefficient storage, no IDCT); at 1/4 and 1/2 the block is
//! decoded into a 64-coefficient scratch block and reduced at once, so no coefficient buffer
//! for the whole image is ever held.

use super::huffman::{BitReader, HuffTable};
use super::idct::{self, Reduced};
use super::markers::ZIGZAG;
use super::scan::BlockDecoder;
use super::{Plane, ScaledError};

/// Per-component state of a sequential scan.
pub(super) struct SeqComp<'a> {
    pub dc: &'a HuffTable,
    pub ac: &'a HuffTable,
    pub q: &'a [u16; 64],
    pub plane: &'a mut Plane,
    pub pred: i32,
    /// The IDCT for this component's output size, or `None` for 1×1 (DC only).
    pub reduced: Option<Reduced>,
}

pub(super) struct Sequential<'a> {
    pub comps: Vec<SeqComp<'a>>,
}

impl BlockDecoder for Sequential<'_> {
    #[inline]
    fn block(
        &mut self,
        r: &mut BitReader<'_>,
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
        let dc = c.pred as i16;
        let stride = c.plane.stride;
        let Some(out) = c.plane.data.get_mut(by * ny * stride + bx * nx..) else {
            return Err(ScaledError::Corrupt("block outside the component"));
        };
        let Some(reduced) = &c.reduced else {
            skip_ac(r, c.ac)?;
            out[0] = idct::dc_pixel(dc, c.q[0]);
            return Ok(());
        };
        let mut coefs = [0i16; 64];
        coefs[0] = dc;
        let mut any_ac = false;
        let mut k = 1usize;
        while k < 64 {
            r.ensure();
            if let Some((bits, run, value)) = c.ac.fast_ac(r.peek()) {
                k += run;
                let Some(&nat) = ZIGZAG.get(k) else {
                    return Err(ScaledError::Corrupt("AC run past the end of the block"));
                };
                coefs[nat] = value;
                r.skip(bits);
                any_ac = true;
                k += 1;
                continue;
            }
            let sym = r.decode(c.ac)?;
            let (run, s) = (usize::from(sym >> 4), u32::from(sym & 15));
            if s == 0 {
                if run != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            k += run;
            let Some(&nat) = ZIGZAG.get(k) else {
                return Err(ScaledError::Corrupt("AC run past the end of the block"));
            };
            coefs[nat] = r.receive_extend(s) as i16;
            any_ac = true;
            k += 1;
        }
        if any_ac {
            reduced.block(&coefs, c.q, out, stride);
        } else {
            idct::fill(idct::dc_pixel(dc, c.q[0]), (nx, ny), out, stride);
        }
        Ok(())
    }

    fn restart(&mut self) {
        for c in &mut self.comps {
            c.pred = 0;
        }
    }
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
