//! The walk over one scan's blocks: MCU order for interleaved scans, raster order over the
//! component's own blocks for single-component scans, and restart intervals. The same walk
//! serves Huffman ([`BitReader`]) and arithmetic ([`ArithReader`]) coding.

use super::arith::ArithReader;
use super::huffman::BitReader;
use super::markers::{Frame, Scan};
use super::ScaledError;

/// An entropy decoder's hold on a scan's data, as far as the walk needs it.
pub(super) trait EntropyReader {
    /// Moves past the next restart marker and starts decoding afresh; `false` when none
    /// follows (truncated data, or a real marker such as EOI).
    fn restart(&mut self) -> bool;
    /// Whether the blocks from here to the next restart marker are lost: the data ran out
    /// (Huffman) or a decoding error stopped the interval (arithmetic).
    fn damaged(&self) -> bool;
}

impl EntropyReader for BitReader<'_> {
    fn restart(&mut self) -> bool {
        BitReader::restart(self)
    }
    fn damaged(&self) -> bool {
        self.overran()
    }
}

impl EntropyReader for ArithReader<'_> {
    fn restart(&mut self) -> bool {
        ArithReader::restart(self)
    }
    fn damaged(&self) -> bool {
        self.failed()
    }
}

/// What a scan does with each of its blocks, reading them through an `R`.
pub(super) trait BlockDecoder<R> {
    /// Decodes one block of the scan's `pos`-th component at block (`bx`, `by`) of that
    /// component's grid.
    fn block(&mut self, r: &mut R, pos: usize, bx: usize, by: usize) -> Result<(), ScaledError>;
    /// Resets the DC predictors and the EOB run (and arithmetic statistics) at a restart marker.
    fn restart(&mut self);
    /// Marks a block whose data is missing (the rest of a damaged restart interval): libjpeg
    /// leaves such blocks all-zero, uniform grey. Stores of coefficients are zero already.
    fn missing(&mut self, _pos: usize, _bx: usize, _by: usize) -> Result<(), ScaledError> {
        Ok(())
    }
    /// Called when the first `rows` MCU rows (block rows, in a one-component scan) are done.
    fn row_done(&mut self, _rows: usize) {}
}

/// Runs `dec` over every block of `scan`. As in libjpeg, data that runs out early (a
/// truncated file, junk, a stray marker) leaves the blocks from there on missing (grey, or
/// unrefined in a progressive scan): with restart markers up to the next one, where decoding
/// resumes, and without them (or with no restart marker left) to the end of the scan.
pub(super) fn run<R: EntropyReader>(
    frame: &Frame,
    scan: &Scan,
    restart_interval: usize,
    r: &mut R,
    dec: &mut impl BlockDecoder<R>,
) -> Result<(), ScaledError> {
    let interleaved = scan.comps.len() > 1;
    let (units_x, units_y) = if interleaved {
        (frame.mcus_x, frame.mcus_y)
    } else {
        let c = &frame.comps[scan.comps[0].index];
        (c.blocks_x, c.blocks_y)
    };
    let mut left = restart_interval;
    // No data left for the rest of the scan.
    let mut lost = false;
    for my in 0..units_y {
        for mx in 0..units_x {
            if restart_interval > 0 && !lost {
                if left == 0 {
                    if r.restart() {
                        dec.restart();
                    } else {
                        lost = true;
                    }
                    left = restart_interval;
                }
                left -= 1;
            }
            // Without restart markers nothing resynchronises: once out of data, the rest of
            // the scan is missing (as it is once no restart marker follows).
            let damaged = lost || r.damaged();
            lost |= damaged && restart_interval == 0;
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
        dec.row_done(my + 1);
    }
    Ok(())
}
