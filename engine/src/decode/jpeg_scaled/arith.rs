//! Arithmetic-coded scans (SOF9 sequential, SOF10 progressive): the QM-coder of T.81 annex D
//! and the coefficient models of annexes F.2.4 (sequential) and G.2 (progressive).
//!
//! The block walk, the reduced IDCTs and the output are the Huffman path's; only the entropy
//! decoding differs. Sequential blocks are decoded into a scratch block and reduced at once (at
//! 1/8 too: the adaptive model must see every AC decision, so nothing can be stepped over);
//! progressive scans fill the same coefficient store as Huffman ones, and a 1/8 decode still
//! skips every AC scan unread, since each scan's statistics start afresh.
//!
//! Damage is handled as libjpeg handles it. Reaching a marker or the end of the data is legal
//! in arithmetic coding (the encoder drops trailing zero bytes), so the decoder goes on with
//! zeros there. A magnitude or a run that no valid stream produces stops the rest of the
//! restart interval: the block it occurred in keeps what was decoded (a sequential block that
//! failed in its DC is grey) and the blocks after it are missing, as a Huffman interval that
//! ran out of data is.

use super::baseline::{emit_rows, fill_grey};
use super::idct::{self, AnyBasis};
use super::markers::{self, Conditioning};
use super::output::Assembler;
use super::progressive::Coefs;
use super::scan::BlockDecoder;
use super::{Plane, ScaledError};

/// T.81 Table D.2, the probability estimation state machine: per state, Qe, the next state
/// after a less probable symbol, the next state after a more probable one, and whether a less
/// probable symbol swaps which symbol is the more probable. State 113 is a fixed estimate of
/// 1/2 (T.851), used for signs and correction bits.
const STATES: [(u16, u8, u8, bool); 114] = [
    (0x5a1d, 1, 1, true),
    (0x2586, 14, 2, false),
    (0x1114, 16, 3, false),
    (0x080b, 18, 4, false),
    (0x03d8, 20, 5, false),
    (0x01da, 23, 6, false),
    (0x00e5, 25, 7, false),
    (0x006f, 28, 8, false),
    (0x0036, 30, 9, false),
    (0x001a, 33, 10, false),
    (0x000d, 35, 11, false),
    (0x0006, 9, 12, false),
    (0x0003, 10, 13, false),
    (0x0001, 12, 13, false),
    (0x5a7f, 15, 15, true),
    (0x3f25, 36, 16, false),
    (0x2cf2, 38, 17, false),
    (0x207c, 39, 18, false),
    (0x17b9, 40, 19, false),
    (0x1182, 42, 20, false),
    (0x0cef, 43, 21, false),
    (0x09a1, 45, 22, false),
    (0x072f, 46, 23, false),
    (0x055c, 48, 24, false),
    (0x0406, 49, 25, false),
    (0x0303, 51, 26, false),
    (0x0240, 52, 27, false),
    (0x01b1, 54, 28, false),
    (0x0144, 56, 29, false),
    (0x00f5, 57, 30, false),
    (0x00b7, 59, 31, false),
    (0x008a, 60, 32, false),
    (0x0068, 62, 33, false),
    (0x004e, 63, 34, false),
    (0x003b, 32, 35, false),
    (0x002c, 33, 9, false),
    (0x5ae1, 37, 37, true),
    (0x484c, 64, 38, false),
    (0x3a0d, 65, 39, false),
    (0x2ef1, 67, 40, false),
    (0x261f, 68, 41, false),
    (0x1f33, 69, 42, false),
    (0x19a8, 70, 43, false),
    (0x1518, 72, 44, false),
    (0x1177, 73, 45, false),
    (0x0e74, 74, 46, false),
    (0x0bfb, 75, 47, false),
    (0x09f8, 77, 48, false),
    (0x0861, 78, 49, false),
    (0x0706, 79, 50, false),
    (0x05cd, 48, 51, false),
    (0x04de, 50, 52, false),
    (0x040f, 50, 53, false),
    (0x0363, 51, 54, false),
    (0x02d4, 52, 55, false),
    (0x025c, 53, 56, false),
    (0x01f8, 54, 57, false),
    (0x01a4, 55, 58, false),
    (0x0160, 56, 59, false),
    (0x0125, 57, 60, false),
    (0x00f6, 58, 61, false),
    (0x00cb, 59, 62, false),
    (0x00ab, 61, 63, false),
    (0x008f, 61, 32, false),
    (0x5b12, 65, 65, true),
    (0x4d04, 80, 66, false),
    (0x412c, 81, 67, false),
    (0x37d8, 82, 68, false),
    (0x2fe8, 83, 69, false),
    (0x293c, 84, 70, false),
    (0x2379, 86, 71, false),
    (0x1edf, 87, 72, false),
    (0x1aa9, 87, 73, false),
    (0x174e, 72, 74, false),
    (0x1424, 72, 75, false),
    (0x119c, 74, 76, false),
    (0x0f6b, 74, 77, false),
    (0x0d51, 75, 78, false),
    (0x0bb6, 77, 79, false),
    (0x0a40, 77, 48, false),
    (0x5832, 80, 81, true),
    (0x4d1c, 88, 82, false),
    (0x438e, 89, 83, false),
    (0x3bdd, 90, 84, false),
    (0x34ee, 91, 85, false),
    (0x2eae, 92, 86, false),
    (0x299a, 93, 87, false),
    (0x2516, 86, 71, false),
    (0x5570, 88, 89, true),
    (0x4ca9, 95, 90, false),
    (0x44d9, 96, 91, false),
    (0x3e22, 97, 92, false),
    (0x3824, 99, 93, false),
    (0x32b4, 99, 94, false),
    (0x2e17, 93, 86, false),
    (0x56a8, 95, 96, true),
    (0x4f46, 101, 97, false),
    (0x47e5, 102, 98, false),
    (0x41cf, 103, 99, false),
    (0x3c3d, 104, 100, false),
    (0x375e, 99, 93, false),
    (0x5231, 105, 102, false),
    (0x4c0f, 106, 103, false),
    (0x4639, 107, 104, false),
    (0x415e, 103, 99, false),
    (0x5627, 105, 106, true),
    (0x50e7, 108, 107, false),
    (0x4b85, 109, 103, false),
    (0x5597, 110, 109, false),
    (0x504f, 111, 107, false),
    (0x5a10, 110, 111, true),
    (0x5522, 112, 109, false),
    (0x59eb, 112, 111, true),
    (0x5a1d, 113, 113, false),
];

/// The fixed-probability state (see [`STATES`]); it never moves, so each use starts from it.
const FIXED: u8 = 113;

/// A statistics bin: the state index (low 7 bits) and the more probable symbol (bit 7).
type Bin = u8;

/// The QM-coder's decoder over one scan's entropy-coded data (T.81 D.2, in libjpeg's
/// formulation: `c` holds the code register aligned by `ct`, so no byte is read before it is
/// needed).
pub(crate) struct ArithReader<'a> {
    data: &'a [u8],
    pos: usize,
    c: i64,
    a: i64,
    /// Bits of `c` below the decision point; negative while the first two bytes come in.
    ct: i32,
    /// Stopped at a marker: zeros are fed from here, as the standard prescribes.
    at_marker: bool,
    /// A decoding error stopped the current restart interval.
    failed: bool,
}

impl<'a> ArithReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        ArithReader {
            data,
            pos: 0,
            c: 0,
            a: 0,
            ct: -16,
            at_marker: false,
            failed: false,
        }
    }

    /// Position in the data just past the bytes read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Whether a decoding error stopped the current restart interval.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Moves past the next restart marker and starts the coder afresh (the statistics are the
    /// scan decoder's to reset). `false` when no restart marker follows.
    pub(crate) fn restart(&mut self) -> bool {
        match markers::seek_restart(self.data, self.pos) {
            Some(next) => {
                *self = ArithReader {
                    pos: next,
                    ..ArithReader::new(self.data)
                };
                true
            }
            None => false,
        }
    }

    /// The next data byte: stuffed `FF 00` is a data 0xFF, fill bytes before a marker are
    /// dropped, and from a marker (or the end of the data) on every byte is 0.
    fn next_byte(&mut self) -> i64 {
        if self.at_marker {
            return 0;
        }
        match self.data.get(self.pos) {
            None => 0,
            Some(0xFF) => {
                let mut code = self.pos + 1;
                while self.data.get(code) == Some(&0xFF) {
                    code += 1;
                }
                if self.data.get(code) == Some(&0) {
                    self.pos = code + 1;
                    0xFF
                } else {
                    // Stay on the marker's last 0xFF, where the scan's end is looked for.
                    self.pos = code - 1;
                    self.at_marker = true;
                    0
                }
            }
            Some(&byte) => {
                self.pos += 1;
                i64::from(byte)
            }
        }
    }

    /// Decodes one binary decision with the adaptive bin `st`, updating its estimate.
    #[inline]
    fn decode(&mut self, st: &mut Bin) -> bool {
        // Renormalisation and byte input (D.2.6).
        while self.a < 0x8000 {
            self.ct -= 1;
            if self.ct < 0 {
                self.c = (self.c << 8) | self.next_byte();
                self.ct += 8;
                if self.ct < 0 {
                    self.ct += 1;
                    if self.ct == 0 {
                        // The first two bytes are in: A = 0x10000 after the shift below.
                        self.a = 0x8000;
                    }
                }
            }
            self.a <<= 1;
        }
        let mps = *st & 0x80;
        let (qe, next_lps, next_mps, switch) = STATES[usize::from(*st & 0x7F)];
        let qe = i64::from(qe);
        let after_mps = mps | next_mps;
        let after_lps = (mps ^ if switch { 0x80 } else { 0 }) | next_lps;
        // Decision and estimation (D.2.4, D.2.5), with the conditional exchange: when the
        // interval left to the more probable symbol is the smaller one, the symbols swap.
        self.a -= qe;
        let split = self.a << self.ct;
        let lps = if self.c >= split {
            self.c -= split;
            let exchange = self.a < qe;
            self.a = qe;
            !exchange
        } else if self.a < 0x8000 {
            self.a < qe
        } else {
            return mps != 0;
        };
        *st = if lps { after_lps } else { after_mps };
        (mps != 0) != lps
    }

    /// A decision with the fixed 1/2 estimate.
    fn decode_fixed(&mut self) -> bool {
        let mut st = FIXED;
        self.decode(&mut st)
    }

    /// Records a decoding error: the rest of the restart interval is lost.
    fn fail(&mut self) {
        self.failed = true;
    }

    /// A non-zero value's magnitude category and bits (F.2.4.3, figures F.23 and F.24), once
    /// the decisions before said the category is at least `m` (0, 1 or 2); further category
    /// decisions use the bins from `st` on, the bits those 14 further. Returns the category
    /// (the value's top bit, 0 for 1) and the value, or `None` (a failure) past 15 bits.
    fn magnitude(&mut self, bins: &mut [Bin], mut m: i32, mut st: usize) -> Option<(i32, i32)> {
        if m != 0 {
            while self.decode(&mut bins[st]) {
                m <<= 1;
                if m == 0x8000 {
                    self.fail();
                    return None;
                }
                st += 1;
            }
        }
        let mut v = m;
        let mut bit = m >> 1;
        while bit != 0 {
            if self.decode(&mut bins[st + 14]) {
                v |= bit;
            }
            bit >>= 1;
        }
        Some((m, v + 1))
    }

    /// One DC difference (F.2.4.1) with a component's table bins, its conditioning context
    /// (updated) and the table's bounds L and U; `None` after a decoding error.
    fn dc_diff(
        &mut self,
        bins: &mut [Bin; 64],
        context: &mut usize,
        (l, u): (u8, u8),
    ) -> Option<i32> {
        let s0 = *context;
        if !self.decode(&mut bins[s0]) {
            *context = 0;
            return Some(0);
        }
        let sign = usize::from(self.decode(&mut bins[s0 + 1]));
        let st = s0 + 2 + sign;
        let (m, v) = if self.decode(&mut bins[st]) {
            // X1 = 20: the wider categories share one ladder of bins.
            self.magnitude(bins, 1, 20)?
        } else {
            self.magnitude(bins, 0, st)?
        };
        // The conditioning category of this difference for the next one (F.1.4.4.1.2).
        *context = if m < (1 << l) >> 1 {
            0
        } else if m > (1 << u) >> 1 {
            12 + 4 * sign
        } else {
            4 + 4 * sign
        };
        Some(if sign == 1 { -v } else { v })
    }

    /// AC coefficients `ss..=se` of a first pass (F.2.4.2, G.1.3.2) with a table's bins and
    /// band split `kx`: `put(k, value)` for each non-zero one. `false` after a decoding error.
    fn ac_band(
        &mut self,
        bins: &mut [Bin; 256],
        kx: usize,
        (ss, se): (usize, usize),
        mut put: impl FnMut(usize, i32),
    ) -> bool {
        let mut k = ss;
        while k <= se {
            let mut st = 3 * (k - 1);
            if self.decode(&mut bins[st]) {
                return true; // end of block
            }
            while !self.decode(&mut bins[st + 1]) {
                st += 3;
                k += 1;
                if k > se {
                    self.fail();
                    return false;
                }
            }
            let negative = self.decode_fixed();
            st += 2;
            let v = if !self.decode(&mut bins[st]) {
                1
            } else if !self.decode(&mut bins[st]) {
                2
            } else {
                // Categories above 2 use the low or high band's ladder of bins.
                match self.magnitude(bins, 2, if k <= kx { 189 } else { 217 }) {
                    Some((_, v)) => v,
                    None => return false,
                }
            };
            put(k, if negative { -v } else { v });
            k += 1;
        }
        true
    }
}

/// Statistics of a scan (F.1.4.4): 64 DC and 256 AC bins per table, all zero at the start of
/// a scan and at each restart marker.
#[derive(Clone)]
pub(super) struct Bins {
    dc: [[Bin; 64]; 4],
    ac: [[Bin; 256]; 4],
}

impl Bins {
    pub(super) fn new() -> Box<Self> {
        Box::new(Bins {
            dc: [[0; 64]; 4],
            ac: [[0; 256]; 4],
        })
    }

    fn reset(&mut self) {
        *self = Bins {
            dc: [[0; 64]; 4],
            ac: [[0; 256]; 4],
        };
    }
}

/// Per-component state of a sequential arithmetic scan.
pub(super) struct SeqComp<'a> {
    /// The component's index in the frame, and its vertical sampling factor.
    pub index: usize,
    pub v: usize,
    /// DC and AC table selectors.
    pub td: usize,
    pub ta: usize,
    pub q: &'a [u16; 64],
    pub plane: &'a mut Plane,
    /// The reduced IDCT for this component's output size, or `None` for 1×1 (DC only).
    pub basis: Option<AnyBasis>,
    pub pred: i32,
    pub context: usize,
}

/// A sequential (SOF9) scan, decoded block by block into the reduced planes.
pub(super) struct Sequential<'a> {
    pub comps: Vec<SeqComp<'a>>,
    /// Takes each finished MCU row (when the scan holds every component).
    pub sink: Option<&'a mut Assembler>,
    pub cond: Conditioning,
    pub bins: Box<Bins>,
}

impl<'r> BlockDecoder<ArithReader<'r>> for Sequential<'_> {
    fn block(
        &mut self,
        r: &mut ArithReader<'r>,
        pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        let c = &mut self.comps[pos];
        if r.failed() {
            return fill_grey(c.plane, bx, by);
        }
        let bounds = (self.cond.dc_l[c.td], self.cond.dc_u[c.td]);
        let Some(diff) = r.dc_diff(&mut self.bins.dc[c.td], &mut c.context, bounds) else {
            return fill_grey(c.plane, bx, by);
        };
        c.pred = c.pred.wrapping_add(diff);
        let mut block = [0i16; 64];
        block[0] = c.pred as i16;
        let kx = usize::from(self.cond.ac_k[c.ta]);
        // A failed block keeps the coefficients decoded before the failure, as in libjpeg.
        r.ac_band(&mut self.bins.ac[c.ta], kx, (1, 63), |k, v| {
            block[k] = v as i16;
        });
        let (nx, ny, stride) = (c.plane.nx, c.plane.ny, c.plane.stride);
        let start = c.plane.row_start(by * ny) + bx * nx;
        let out = c
            .plane
            .data
            .get_mut(start..)
            .ok_or(ScaledError::Corrupt("block outside the component"))?;
        match &c.basis {
            None => out[0] = idct::dc_pixel(block[0], c.q[0]),
            Some(basis) => basis.reduce(&block, out, stride),
        }
        Ok(())
    }

    fn restart(&mut self) {
        for c in &mut self.comps {
            c.pred = 0;
            c.context = 0;
        }
        self.bins.reset();
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

/// One component of a progressive DC scan: its store, DC table selector, predictor and
/// conditioning context.
pub(super) struct DcComp<'a> {
    pub coefs: &'a mut Coefs,
    pub td: usize,
    pub pred: i32,
    pub context: usize,
}

/// A progressive DC scan (first pass or refinement) over one or more components.
pub(super) struct DcScan<'a> {
    pub comps: Vec<DcComp<'a>>,
    pub refine: bool,
    pub al: u32,
    pub cond: Conditioning,
    pub bins: Box<Bins>,
}

impl<'r> BlockDecoder<ArithReader<'r>> for DcScan<'_> {
    fn block(
        &mut self,
        r: &mut ArithReader<'r>,
        pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        if r.failed() {
            return Ok(());
        }
        let c = &mut self.comps[pos];
        if self.refine {
            if r.decode_fixed() {
                c.coefs.block(bx, by)?[0] |= 1 << self.al;
            }
            return Ok(());
        }
        let bounds = (self.cond.dc_l[c.td], self.cond.dc_u[c.td]);
        if let Some(diff) = r.dc_diff(&mut self.bins.dc[c.td], &mut c.context, bounds) {
            c.pred = c.pred.wrapping_add(diff);
            c.coefs.block(bx, by)?[0] = c.pred.wrapping_shl(self.al) as i16;
        }
        Ok(())
    }

    fn restart(&mut self) {
        for c in &mut self.comps {
            c.pred = 0;
            c.context = 0;
        }
        self.bins.reset();
    }
}

/// A progressive AC scan (first pass or refinement) of band `ss..=se` of one component.
pub(super) struct AcScan<'a> {
    pub coefs: &'a mut Coefs,
    pub ss: usize,
    pub se: usize,
    pub ah: u8,
    pub al: u32,
    /// The band split of the component's AC table (DAC's K).
    pub kx: usize,
    pub bins: Box<[Bin; 256]>,
}

impl<'r> BlockDecoder<ArithReader<'r>> for AcScan<'_> {
    fn block(
        &mut self,
        r: &mut ArithReader<'r>,
        _pos: usize,
        bx: usize,
        by: usize,
    ) -> Result<(), ScaledError> {
        if r.failed() {
            return Ok(());
        }
        let block = self.coefs.block64(bx, by)?;
        if self.ah == 0 {
            let al = self.al;
            r.ac_band(&mut self.bins, self.kx, (self.ss, self.se), |k, v| {
                block[k] = v.wrapping_shl(al) as i16;
            });
        } else {
            refine(r, &mut self.bins, block, (self.ss, self.se), self.al);
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.bins.fill(0);
    }
}

/// Successive-approximation refinement of band `ss..=se` of one block (G.1.3.3): a correction
/// bit for each coefficient already non-zero, and newly non-zero ones of ±1 at bit `al`.
fn refine(
    r: &mut ArithReader<'_>,
    bins: &mut [Bin; 256],
    block: &mut [i16; 64],
    (ss, se): (usize, usize),
    al: u32,
) {
    let p1 = 1i16.wrapping_shl(al);
    let m1 = (-1i16).wrapping_shl(al);
    // The end of block of the earlier passes: no end-of-block decision before it.
    let kex = (1..=se).rev().find(|&k| block[k] != 0).unwrap_or(0);
    let mut k = ss;
    while k <= se {
        let mut st = 3 * (k - 1);
        if k > kex && r.decode(&mut bins[st]) {
            return;
        }
        loop {
            let coef = &mut block[k];
            if *coef != 0 {
                if r.decode(&mut bins[st + 2]) {
                    *coef = coef.wrapping_add(if *coef < 0 { m1 } else { p1 });
                }
                break;
            }
            if r.decode(&mut bins[st + 1]) {
                *coef = if r.decode_fixed() { m1 } else { p1 };
                break;
            }
            st += 3;
            k += 1;
            if k > se {
                r.fail();
                return;
            }
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transition stays inside the table, and only the states that start a run of the
    /// machine (Table D.2) swap the more probable symbol.
    #[test]
    fn state_machine_is_closed() {
        for (i, &(qe, lps, mps, switch)) in STATES.iter().enumerate() {
            assert!(usize::from(lps) < STATES.len() && usize::from(mps) < STATES.len());
            assert!(qe > 0 && qe < 0x8000, "state {i}");
            assert!(!switch || qe >= 0x5000, "state {i}");
        }
    }

    /// A reader at a marker or at the end of its data reads zeros, and never moves past the
    /// marker, where the scan's end is found.
    #[test]
    fn stops_at_markers() {
        let data = [0x12, 0xFF, 0x00, 0xFF, 0xFF, 0xD9];
        let mut r = ArithReader::new(&data);
        assert_eq!(r.next_byte(), 0x12);
        assert_eq!(r.next_byte(), 0xFF);
        assert_eq!(r.next_byte(), 0);
        assert_eq!(r.next_byte(), 0);
        assert_eq!(r.position(), 4);
        assert_eq!(markers::skip_entropy_data(&data, r.position()), 4);
    }

    /// Zeros decode as a run of more probable symbols that never fails: a scan over data that
    /// ends early terminates, with every decision bounded.
    #[test]
    fn zeros_decode_without_failing() {
        let mut r = ArithReader::new(&[]);
        let mut bins = Bins::new();
        let mut context = 0;
        for _ in 0..1000 {
            let diff = r.dc_diff(&mut bins.dc[0], &mut context, (0, 1));
            assert!(diff.is_some());
            assert!(r.ac_band(&mut bins.ac[0], 5, (1, 63), |_, _| {}));
        }
        assert!(!r.failed());
    }
}
