//! Progressive scans into a coefficient store.
//!
//! At 1/8 the store holds one DC value per block and only the DC scans (first and
//! successive-approximation refinements) are ever decoded; the AC scans are stepped over
//! without reading a bit of them. At 1/4 and 1/2 the exact cell-average IDCT needs the odd
//! (and at 1/2 most even) frequencies, so every band is read into a 64-coefficient store, as a
//! full decoder would; the savings there are the reduced IDCT, upsampling and colour work.

use super::huffman::{BitReader, HuffTable};
use super::scan::BlockDecoder;
use super::ScaledError;

/// One component's quantised coefficients, `per_block` values per block (1 = DC only, or 64 in
/// zigzag order), for the padded MCU grid. Zigzag order keeps a spectral band contiguous, so a
/// refinement pass walks a plain slice and the high frequencies that stay zero sit together at
/// the end, where [`super::idct::AnyBasis::reduce`] skips them.
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
                block[k & 63] = i32::from(value).wrapping_shl(self.al) as i16;
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
            block[k & 63] = r.receive_extend(s).wrapping_shl(self.al) as i16;
            k += 1;
        }
        Ok(())
    }

    /// Successive-approximation refinement, following libjpeg's `decode_mcu_AC_refine`. The
    /// band is a contiguous slice of the zigzag-ordered block, and instead of visiting every
    /// coefficient (a branch each) the pass works on bit masks of the non-zero ones: a run of
    /// zeros to skip is found by clearing set bits, and the coefficients passed over take
    /// their correction bits in one read.
    fn refine(&mut self, r: &mut BitReader<'_>, bx: usize, by: usize) -> Result<(), ScaledError> {
        let p1 = 1i16.wrapping_shl(self.al);
        let m1 = (-1i16).wrapping_shl(self.al);
        let (ss, se) = (self.ss, self.se);
        let block = self.coefs.block64(bx, by)?;
        let nonzero = nonzero_mask(block) >> ss;
        let band = block
            .get_mut(ss..=se)
            .ok_or(ScaledError::Corrupt("AC band outside the block"))?;
        let len = band.len();
        let mut k = 0;
        if self.eobrun == 0 {
            let table = self.table.ok_or(ScaledError::Corrupt("missing AC table"))?;
            while k < len {
                let sym = r.decode(table)?;
                let (run, s) = (sym >> 4, sym & 15);
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
                        self.eobrun += r.bits(u32::from(run));
                    }
                    break;
                }
                // Skip `run` zeros (refining the non-zero coefficients passed on the way) and
                // stop at the next zero, where the new coefficient goes (or, after ZRL, the
                // sixteenth zero, which stays zero).
                let mut zeros = !nonzero & span(k, len);
                for _ in 0..run {
                    zeros &= zeros.wrapping_sub(1);
                }
                let target = if zeros == 0 {
                    len
                } else {
                    zeros.trailing_zeros() as usize
                };
                correct_all(r, band, nonzero & span(k, target), p1);
                if value != 0 {
                    let Some(coef) = band.get_mut(target) else {
                        return Err(ScaledError::Corrupt("AC run past the end of the band"));
                    };
                    *coef = value;
                }
                k = target + 1;
            }
        }
        if self.eobrun > 0 {
            // Inside an end-of-band run only the non-zero coefficients take a correction bit.
            correct_all(r, band, nonzero & span(k, len), p1);
            self.eobrun -= 1;
        }
        Ok(())
    }
}

/// Bit `i` set for each `i` in `from..to` (both ≤ 64).
#[inline(always)]
fn span(from: usize, to: usize) -> u64 {
    let below = |n: usize| 1u64.checked_shl(n as u32).unwrap_or(0).wrapping_sub(1);
    below(to) & !below(from)
}

/// Bit `i` set where `block[i]` is non-zero.
#[inline(always)]
fn nonzero_mask(block: &[i16; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16,
            _mm_setzero_si128,
        };
        let mut zero = 0u64;
        for (i, sixteen) in block.chunks_exact(16).enumerate() {
            let p = sixteen.as_ptr().cast::<__m128i>();
            // SAFETY: SSE2 is part of every x86_64 CPU; both unaligned loads read 8 of the 16
            // coefficients of `sixteen`.
            let bits = unsafe {
                let z = _mm_setzero_si128();
                let low = _mm_cmpeq_epi16(_mm_loadu_si128(p), z);
                let high = _mm_cmpeq_epi16(_mm_loadu_si128(p.add(1)), z);
                // Packing keeps each lane's all-ones (-1) or zero; one mask bit per lane.
                _mm_movemask_epi8(_mm_packs_epi16(low, high))
            };
            zero |= u64::from(bits as u16) << (16 * i);
        }
        !zero
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        nonzero_mask_scalar(block)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn nonzero_mask_scalar(block: &[i16; 64]) -> u64 {
    block
        .iter()
        .rev()
        .fold(0u64, |m, &c| m << 1 | u64::from(c != 0))
}

/// Refines the coefficients of `band` marked in `mask` (all non-zero), in order, by one
/// correction bit each, checking the bit buffer once per 32 bits.
#[inline(always)]
fn correct_all(r: &mut BitReader<'_>, band: &mut [i16], mut mask: u64, p1: i16) {
    while mask != 0 {
        r.ensure();
        for _ in 0..32 {
            let i = mask.trailing_zeros() as usize;
            let bit = r.bits(1) == 1;
            if let Some(coef) = band.get_mut(i) {
                *coef = refined(*coef, bit, p1);
            }
            mask &= mask - 1;
            if mask == 0 {
                break;
            }
        }
    }
}

/// A non-zero coefficient refined by its correction bit: the bit adds `p1` to the magnitude
/// unless the coefficient already has it (libjpeg's rule), without branching on the bit.
#[inline(always)]
fn refined(coef: i16, bit: bool, p1: i16) -> i16 {
    let apply = bit & (coef & p1 == 0);
    let step = if coef >= 0 { p1 } else { p1.wrapping_neg() };
    coef.wrapping_add(if apply { step } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_mask_marks_every_non_zero_coefficient() {
        let mut block = [0i16; 64];
        assert_eq!(nonzero_mask(&block), 0);
        for (i, v) in [
            (0, 1),
            (7, -1),
            (8, i16::MIN),
            (15, 3),
            (16, 1),
            (40, -7),
            (63, i16::MAX),
        ] {
            block[i] = v;
        }
        let mask = nonzero_mask(&block);
        assert_eq!(mask, nonzero_mask_scalar(&block));
        assert_eq!(
            mask,
            1 | 1 << 7 | 1 << 8 | 1 << 15 | 1 << 16 | 1 << 40 | 1 << 63
        );
        assert_eq!(nonzero_mask(&[-1; 64]), u64::MAX);
    }

    #[test]
    fn span_covers_from_to() {
        assert_eq!(span(0, 0), 0);
        assert_eq!(span(3, 5), 0b11000);
        assert_eq!(span(0, 64), u64::MAX);
        assert_eq!(span(63, 64), 1 << 63);
        assert_eq!(span(64, 64), 0);
    }
}
