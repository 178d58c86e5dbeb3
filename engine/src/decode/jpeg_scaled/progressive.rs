//! Progressive scans into a coefficient store.
//!
//! At 1/8 the store holds one DC value per block and only the DC scans (first and
//! successive-approximation refinements) are ever decoded; the AC scans are stepped over
//! without reading a bit of them. At 1/4 and 1/2 the exact cell-average IDCT needs the odd
//! (and at 1/2 most even) frequencies, so every band is read into a 64-coefficient store, as a
//! full decoder would; the savings there are the reduced IDCT, upsampling and colour work.

use super::huffman::{BitReader, HuffTable};
use super::markers::ZIGZAG;
use super::scan::BlockDecoder;
use super::ScaledError;

/// One component's quantised coefficients, `per_block` values per block (1 = DC only, or 64 in
/// natural order), for the padded MCU grid.
pub(super) struct Coefs {
    pub per_block: usize,
    pub alloc_x: usize,
    pub data: Vec<i16>,
}

impl Coefs {
    #[inline(always)]
    pub(super) fn block(&mut self, bx: usize, by: usize) -> Result<&mut [i16], ScaledError> {
        let start = (by * self.alloc_x + bx) * self.per_block;
        self.data
            .get_mut(start..start + self.per_block)
            .ok_or(ScaledError::Corrupt("block outside the component"))
    }

    /// A whole block of a 64-coefficient store (AC scans; at 1/8 they are never decoded).
    #[inline(always)]
    pub(super) fn block64(&mut self, bx: usize, by: usize) -> Result<&mut [i16; 64], ScaledError> {
        self.block(bx, by)?
            .try_into()
            .map_err(|_| ScaledError::Corrupt("AC scan into a DC-only store"))
    }
}

/// A DC scan (first pass or refinement) over one or more components.
pub(super) struct DcScan<'a> {
    /// Per scan component: its store, its DC table (first pass only) and predictor.
    pub comps: Vec<(&'a mut Coefs, Option<&'a HuffTable>, i32)>,
    pub refine: bool,
    pub al: u32,
}

impl<'r> BlockDecoder<BitReader<'r>> for DcScan<'_> {
    #[inline]
    fn block(
        &mut self,
        r: &mut BitReader<'r>,
        pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        let (al, refine) = (self.al, self.refine);
        let (coefs, table, pred) = &mut self.comps[pos];
        if refine {
            let bit = r.bit();
            let block = coefs.block(bx, by)?;
            if bit {
                block[0] |= 1 << al;
            }
            return Ok(());
        }
        let table = table.ok_or(ScaledError::Corrupt("missing DC table"))?;
        let s = u32::from(r.decode(table)?);
        if s > 15 {
            return Err(ScaledError::Corrupt("DC magnitude category over 15"));
        }
        *pred = pred.wrapping_add(r.receive_extend(s));
        coefs.block(bx, by)?[0] = pred.wrapping_shl(al) as i16;
        Ok(())
    }

    fn restart(&mut self) {
        for c in &mut self.comps {
            c.2 = 0;
        }
    }
}

/// An AC scan (first pass or refinement) of band `ss..=se` of one component.
pub(super) struct AcScan<'a> {
    pub coefs: &'a mut Coefs,
    pub table: Option<&'a HuffTable>,
    pub ss: usize,
    pub se: usize,
    pub ah: u8,
    pub al: u32,
    pub eobrun: u32,
}

impl<'r> BlockDecoder<BitReader<'r>> for AcScan<'_> {
    #[inline]
    fn block(
        &mut self,
        r: &mut BitReader<'r>,
        _pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        if self.ah == 0 {
            self.first(r, bx, by)
        } else {
            self.refine(r, bx, by)
        }
    }

    fn restart(&mut self) {
        self.eobrun = 0;
    }
}

impl AcScan<'_> {
    fn first(&mut self, r: &mut BitReader<'_>, bx: usize, by: usize) -> Result<(), ScaledError> {
        if self.eobrun > 0 {
            self.eobrun -= 1;
            return Ok(());
        }
        let table = self.table.ok_or(ScaledError::Corrupt("missing AC table"))?;
        let block = self.coefs.block64(bx, by)?;
        let mut k = self.ss;
        while k <= self.se {
            r.ensure();
            if let Some((bits, run, value)) = table.fast_ac(r.peek()) {
                k += run;
                if k > self.se {
                    return Err(ScaledError::Corrupt("AC run past the end of the band"));
                }
                block[ZIGZAG[k & 63]] = i32::from(value).wrapping_shl(self.al) as i16;
                r.skip(bits);
                k += 1;
                continue;
            }
            let sym = r.decode(table)?;
            let (run, s) = (u32::from(sym >> 4), u32::from(sym & 15));
            if s == 0 {
                if run < 15 {
                    self.eobrun = (1 << run) - 1;
                    if run > 0 {
                        r.ensure();
                        self.eobrun += r.bits(run);
                    }
                    break;
                }
                k += 16;
                continue;
            }
            k += run as usize;
            if k > self.se {
                return Err(ScaledError::Corrupt("AC run past the end of the band"));
            }
            block[ZIGZAG[k & 63]] = r.receive_extend(s).wrapping_shl(self.al) as i16;
            k += 1;
        }
        Ok(())
    }

    /// Successive-approximation refinement, following libjpeg's `decode_mcu_AC_refine`.
    fn refine(&mut self, r: &mut BitReader<'_>, bx: usize, by: usize) -> Result<(), ScaledError> {
        let p1 = 1i16.wrapping_shl(self.al);
        let m1 = (-1i16).wrapping_shl(self.al);
        let (se, mut k) = (self.se, self.ss);
        let block = self.coefs.block64(bx, by)?;
        if self.eobrun == 0 {
            let table = self.table.ok_or(ScaledError::Corrupt("missing AC table"))?;
            while k <= se {
                let sym = r.decode(table)?;
                let (mut run, s) = (i32::from(sym >> 4), sym & 15);
                let mut value = 0i16;
                if s != 0 {
                    if s != 1 {
                        return Err(ScaledError::Corrupt("refinement coefficient larger than 1"));
                    }
                    value = if r.bit() { p1 } else { m1 };
                } else if run != 15 {
                    self.eobrun = 1 << run;
                    if run > 0 {
                        r.ensure();
                        self.eobrun += r.bits(run as u32);
                    }
                    break;
                }
                // Step over already-nonzero coefficients (refining them) and `run` zeros.
                while k <= se {
                    let coef = &mut block[ZIGZAG[k & 63]];
                    if *coef == 0 {
                        if run == 0 {
                            break;
                        }
                        run -= 1;
                    } else {
                        *coef = correct(r, *coef, p1);
                    }
                    k += 1;
                }
                if value != 0 {
                    let Some(&nat) = ZIGZAG.get(k).filter(|_| k <= se) else {
                        return Err(ScaledError::Corrupt("AC run past the end of the band"));
                    };
                    block[nat] = value;
                }
                k += 1;
            }
        }
        if self.eobrun > 0 {
            while k <= se {
                let coef = &mut block[ZIGZAG[k & 63]];
                if *coef != 0 {
                    *coef = correct(r, *coef, p1);
                }
                k += 1;
            }
            self.eobrun -= 1;
        }
        Ok(())
    }
}

/// Refines a non-zero coefficient by one correction bit, without branching on the bit.
#[inline(always)]
fn correct(r: &mut BitReader<'_>, coef: i16, p1: i16) -> i16 {
    let bit = r.bit();
    let apply = bit & (coef & p1 == 0);
    let step = if coef >= 0 { p1 } else { p1.wrapping_neg() };
    coef.wrapping_add(if apply { step } else { 0 })
}
