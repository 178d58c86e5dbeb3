//! Reduced component planes → interleaved pixels: chroma upsampled at the reduced scale
//! (centre-aligned linear interpolation, i.e. libjpeg's "fancy" triangle filter for 2×), then
//! YCbCr → RGB. CMYK and YCCK planes are interleaved raw, exactly as zune-jpeg hands them to
//! `decode/jpeg.rs`, which normalises them to ink values. Rows are produced as soon as the
//! planes hold what they read, so a decode need not keep whole planes.

use super::markers::Frame;
use super::{ColorKind, Plane, ScaledImage};

/// Builds the interleaved (and colour-converted) image row by row as the planes fill up, so a
/// decode can hold its planes as bands of two MCU rows ([`Plane::rows`]) instead of whole.
pub(super) struct Assembler {
    width: usize,
    height: usize,
    channels: usize,
    kind: ColorKind,
    ups: Vec<Upsampler>,
    /// One output-resolution row per component.
    rows: Vec<Vec<u8>>,
    data: Vec<u8>,
    /// The next output row to produce.
    next: usize,
}

impl Assembler {
    /// An assembler for `frame` decoded with `n` pixels per block side into planes with
    /// `(nx, ny)` samples per block per component.
    pub(super) fn new(
        frame: &Frame,
        samples: &[(usize, usize)],
        n: usize,
        kind: ColorKind,
    ) -> Self {
        let width = (frame.width * n).div_ceil(8);
        let height = (frame.height * n).div_ceil(8);
        let channels = samples.len();
        let ups = frame
            .comps
            .iter()
            .zip(samples)
            .map(|(c, &(nx, ny))| {
                // What the component's IDCT did not already upsample.
                let rx = n * frame.hmax / c.h / nx;
                let ry = n * frame.vmax / c.v / ny;
                Upsampler::new(
                    (c.width * nx).div_ceil(8),
                    (c.height * ny).div_ceil(8),
                    rx.max(1),
                    ry.max(1),
                    width,
                )
            })
            .collect();
        Assembler {
            width,
            height,
            channels,
            kind,
            ups,
            rows: vec![vec![0u8; width]; channels],
            data: vec![0u8; width * height * channels],
            next: 0,
        }
    }

    /// Produces every output row whose source rows are all decoded: `ready[c]` rows of plane
    /// `c` (in frame order) are final, and rows before those the planes still hold.
    pub(super) fn emit(&mut self, planes: &[&Plane], ready: &[usize]) {
        let row_bytes = self.width * self.channels;
        while self.next < self.height
            && self
                .ups
                .iter()
                .zip(ready)
                .all(|(up, &ready)| up.last_source_row(self.next) < ready)
        {
            let y = self.next;
            for ((up, plane), row) in self.ups.iter().zip(planes).zip(self.rows.iter_mut()) {
                up.row(plane, y, row);
            }
            let out = &mut self.data[y * row_bytes..(y + 1) * row_bytes];
            let rows = &self.rows;
            match (self.kind, self.channels) {
                (ColorKind::YCbCr, 3) => ycbcr_row(&rows[0], &rows[1], &rows[2], out),
                (_, 1) => out.copy_from_slice(&rows[0]),
                _ => {
                    for (x, px) in out.chunks_exact_mut(self.channels).enumerate() {
                        for (v, row) in px.iter_mut().zip(rows) {
                            *v = row[x];
                        }
                    }
                }
            }
            self.next += 1;
        }
    }

    /// Produces every remaining row from whole, complete planes.
    pub(super) fn emit_whole(&mut self, planes: &[Plane]) {
        let ready: Vec<usize> = planes.iter().map(|p| p.rows).collect();
        self.emit(&planes.iter().collect::<Vec<_>>(), &ready);
    }

    /// The image, once [`Self::emit`] has produced every row.
    pub(super) fn finish(self) -> Option<ScaledImage> {
        (self.next == self.height).then_some(ScaledImage {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: self.data,
        })
    }
}

/// Produces rows of one component at the output resolution.
struct Upsampler {
    /// Valid size of the reduced plane (the rest is MCU padding).
    w: usize,
    h: usize,
    ry: usize,
    /// Per output column: left source column, right source column, weight of the right one
    /// (0..=256). Empty when there is no horizontal upsampling.
    cols: Vec<(usize, usize, u32)>,
}

impl Upsampler {
    fn new(w: usize, h: usize, rx: usize, ry: usize, out_w: usize) -> Self {
        let (w, h) = (w.max(1), h.max(1));
        let cols = if rx == 1 {
            Vec::new()
        } else {
            (0..out_w).map(|x| taps(x, rx, w)).collect()
        };
        Upsampler { w, h, ry, cols }
    }

    /// The plane rows output row `y` blends, and the weight of the second (0..=256).
    fn vertical_taps(&self, y: usize) -> (usize, usize, u32) {
        if self.ry == 1 {
            let row = y.min(self.h - 1);
            (row, row, 0)
        } else {
            taps(y, self.ry, self.h)
        }
    }

    /// The last plane row that output row `y` reads.
    fn last_source_row(&self, y: usize) -> usize {
        self.vertical_taps(y).1
    }

    fn row(&self, plane: &Plane, y: usize, out: &mut [u8]) {
        let src = |row: usize| {
            let start = plane.row_start(row);
            &plane.data[start..start + self.w]
        };
        if self.ry == 1 && self.cols.is_empty() {
            let n = out.len().min(self.w);
            out[..n].copy_from_slice(&src(y.min(self.h - 1))[..n]);
            return;
        }
        let (y0, y1, wy) = self.vertical_taps(y);
        let (a, b) = (src(y0), src(y1));
        // Vertical blend in 8.8 fixed point.
        let blend = |x: usize| u32::from(a[x]) * (256 - wy) + u32::from(b[x]) * wy;
        if self.cols.is_empty() {
            for (x, o) in out.iter_mut().enumerate() {
                *o = ((blend(x.min(self.w - 1)) + 128) >> 8) as u8;
            }
        } else {
            for (o, &(x0, x1, wx)) in out.iter_mut().zip(&self.cols) {
                let v = blend(x0) * (256 - wx) + blend(x1) * wx;
                *o = ((v + 32768) >> 16) as u8;
            }
        }
    }
}

/// Source samples and weight for output position `i` when upsampling by `r`, centre-aligned:
/// the output sample's centre `(i + ½)/r − ½` in source coordinates, clamped to the edges.
fn taps(i: usize, r: usize, len: usize) -> (usize, usize, u32) {
    let pos = ((2 * i + 1) * 256 / (2 * r)) as i64 - 128;
    let (p0, frac) = (pos.div_euclid(256), pos.rem_euclid(256) as u32);
    let last = len as i64 - 1;
    let i0 = p0.clamp(0, last) as usize;
    let i1 = (p0 + 1).clamp(0, last) as usize;
    (i0, i1, frac)
}

/// YCbCr → RGB (JFIF, full range) in 16.16 fixed point.
fn ycbcr_row(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (((px, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let y = (i32::from(y) << 16) + 32768;
        let cb = i32::from(cb) - 128;
        let cr = i32::from(cr) - 128;
        px[0] = ((y + 91_881 * cr) >> 16).clamp(0, 255) as u8;
        px[1] = ((y - 22_554 * cb - 46_802 * cr) >> 16).clamp(0, 255) as u8;
        px[2] = ((y + 116_130 * cb) >> 16).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_are_the_triangle_filter_for_two() {
        // Output 0 sits at source −0.25 (clamped), output 1 at 0.25, output 2 at 0.75.
        assert_eq!(taps(0, 2, 4), (0, 0, 192));
        assert_eq!(taps(1, 2, 4), (0, 1, 64));
        assert_eq!(taps(2, 2, 4), (0, 1, 192));
        assert_eq!(taps(7, 2, 4), (3, 3, 64));
    }

    #[test]
    fn grey_stays_grey() {
        let mut out = [0u8; 3];
        ycbcr_row(&[77], &[128], &[128], &mut out);
        assert_eq!(out, [77, 77, 77]);
    }
}
