//! The walk over one scan's blocks: MCU order for interleaved scans, raster order over the
//! component's own blocks for single-component scans, and restart intervals.

use super::huffman::BitReader;
use super::markers::{Frame, Scan};
use super::ScaledError;

/// What a scan does with each of its blocks.
pub(super) trait BlockDecoder {
    /// Decodes one block of the scan's `pos`-th component at block (`bx`, `by`) of that
    /// component's grid.
    fn block(
        &mut self,
        r: &mut BitReader<'_>,
        pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError>;
    /// Resets the DC predictors and the EOB run at a restart marker.
    fn restart(&mut self);
    /// Marks a block whose data is missing (the rest of a damaged restart interval): libjpeg
    /// leaves such blocks all-zero, uniform grey. Stores of coefficients are zero already.
    fn missing(&mut self, _pos: usize, _bx: usize, _by: usize) -> Result<(), ScaledError> {
        Ok(())
    }
}

/// Runs `dec` over every block of `scan`. Returns an error when the data runs out (or hits a
/// marker) before the scan's last block, or when an expected restart marker is missing. As in
/// libjpeg, an interval whose data runs out early (junk, a stray marker) is grey from there
/// and decoding resumes at the next restart marker.
pub(super) fn run(
    frame: &Frame,
    scan: &Scan,
    restart_interval: usize,
    r: &mut BitReader<'_>,
    dec: &mut impl BlockDecoder,
) -> Result<(), ScaledError> {
    let interleaved = scan.comps.len() > 1;
    let (units_x, units_y) = if interleaved {
        (frame.mcus_x, frame.mcus_y)
    } else {
        let c = &frame.comps[scan.comps[0].index];
        (c.blocks_x, c.blocks_y)
    };
    let mut left = restart_interval;
    for my in 0..units_y {
        // Stop early on data that ran out long ago rather than decoding zeros to the end.
        // With restart markers, a damaged interval is left to the resynchronisation below.
        if restart_interval == 0 && r.overran() {
            return Err(ScaledError::Truncated);
        }
        for mx in 0..units_x {
            if restart_interval > 0 {
                if left == 0 {
                    if !r.restart() {
                        return Err(ScaledError::Truncated);
                    }
                    dec.restart();
                    left = restart_interval;
                }
                left -= 1;
            }
            let damaged = restart_interval > 0 && r.overran();
            let mut unit = |pos, bx, by| {
                if damaged {
                    dec.missing(pos, bx, by)
                } else {
                    dec.block(r, pos, bx, by)
                }
            };
            if interleaved {
                for (pos, sc) in scan.comps.iter().enumerate() {
                    let c = &frame.comps[sc.index];
                    for by in 0..c.v {
                        for bx in 0..c.h {
                            unit(pos, mx * c.h + bx, my * c.v + by)?;
                        }
                    }
                }
            } else {
                unit(0, mx, my)?;
            }
        }
    }
    if restart_interval == 0 && r.overran() {
        return Err(ScaledError::Truncated);
    }
    Ok(())
}
