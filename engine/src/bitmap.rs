//! The in-memory pixel buffer that flows between the stages.

/// Channel layout of a [`Bitmap`]; always 8 bits per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColorModel {
    Gray,
    GrayAlpha,
    Rgb,
    Rgba,
    /// Ink values, 0 = no ink (Adobe-inverted files are normalised on decode).
    Cmyk,
}

impl ColorModel {
    pub(crate) fn channels(self) -> usize {
        match self {
            ColorModel::Gray => 1,
            ColorModel::GrayAlpha => 2,
            ColorModel::Rgb => 3,
            ColorModel::Rgba | ColorModel::Cmyk => 4,
        }
    }

    pub(crate) fn has_alpha(self) -> bool {
        matches!(self, ColorModel::GrayAlpha | ColorModel::Rgba)
    }
}

/// Interleaved 8-bit pixels, rows packed without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    pub width: u32,
    pub height: u32,
    pub model: ColorModel,
    pub data: Vec<u8>,
}

impl Bitmap {
    pub(crate) fn new(width: u32, height: u32, model: ColorModel, data: Vec<u8>) -> Self {
        debug_assert_eq!(
            data.len(),
            width as usize * height as usize * model.channels()
        );
        Bitmap {
            width,
            height,
            model,
            data,
        }
    }

    pub(crate) fn row_bytes(&self) -> usize {
        self.width as usize * self.model.channels()
    }
}

/// Accumulates rows into `factor`×`factor` block averages, so a large image can be reduced while
/// it is decoded row by row (shrink-on-load) without ever holding it at full size.
///
/// Colour channels of images with alpha are averaged premultiplied (weighted by alpha), so
/// transparent pixels' hidden colour does not bleed into the edges.
pub(crate) struct BoxShrinker {
    src_width: usize,
    factor: usize,
    model: ColorModel,
    out_width: usize,
    sums: Vec<u32>,
    rows_in_band: usize,
    out: Vec<u8>,
}

impl BoxShrinker {
    pub(crate) fn new(src_width: u32, src_height: u32, factor: u32, model: ColorModel) -> Self {
        let factor = factor.max(1) as usize;
        let out_width = (src_width as usize).div_ceil(factor);
        let out_height = (src_height as usize).div_ceil(factor);
        let channels = model.channels();
        BoxShrinker {
            src_width: src_width as usize,
            factor,
            model,
            out_width,
            // Factor 1 passes rows through ([`Self::push_row`]) and sums nothing.
            sums: vec![0; if factor == 1 { 0 } else { out_width * channels }],
            rows_in_band: 0,
            out: Vec::with_capacity(out_width * out_height * channels),
        }
    }

    pub(crate) fn push_row(&mut self, row: &[u8]) {
        let row = &row[..self.src_width * self.model.channels()];
        if self.factor == 1 {
            // Nothing to average: the row is the output (four divisions a pixel saved).
            self.out.extend_from_slice(row);
            return;
        }
        match (self.model.channels(), self.model.has_alpha()) {
            (1, _) => accumulate::<1, false>(row, self.factor, &mut self.sums),
            (2, _) => accumulate::<2, true>(row, self.factor, &mut self.sums),
            (3, _) => accumulate::<3, false>(row, self.factor, &mut self.sums),
            (_, true) => accumulate::<4, true>(row, self.factor, &mut self.sums),
            (_, false) => accumulate::<4, false>(row, self.factor, &mut self.sums),
        }
        self.rows_in_band += 1;
        if self.rows_in_band == self.factor {
            self.emit_band();
        }
    }

    fn emit_band(&mut self) {
        let ch = self.model.channels();
        let rows = self.rows_in_band as u32;
        for (bx, sum) in self.sums.chunks_exact_mut(ch).enumerate() {
            let cols = (self.src_width - bx * self.factor).min(self.factor) as u32;
            let n = rows * cols;
            if self.model.has_alpha() {
                let alpha = ch - 1;
                let a_sum = sum[alpha];
                for &c in &sum[..alpha] {
                    let v = (c + a_sum / 2).checked_div(a_sum).unwrap_or(0);
                    self.out.push(v as u8);
                }
                self.out.push(((a_sum + n / 2) / n) as u8);
            } else {
                self.out
                    .extend(sum.iter().map(|&s| ((s + n / 2) / n) as u8));
            }
            sum.fill(0);
        }
        self.rows_in_band = 0;
    }

    pub(crate) fn finish(mut self) -> Bitmap {
        if self.rows_in_band > 0 {
            self.emit_band();
        }
        let height = self.out.len() / (self.out_width * self.model.channels());
        Bitmap::new(self.out_width as u32, height as u32, self.model, self.out)
    }
}

/// Adds one row into the per-block sums; monomorphised per layout so the inner loops unroll.
/// With alpha, colour is weighted by alpha (premultiplied) and the last channel sums alpha.
fn accumulate<const CH: usize, const ALPHA: bool>(row: &[u8], factor: usize, sums: &mut [u32]) {
    for (block, sum) in row.chunks(factor * CH).zip(sums.chunks_exact_mut(CH)) {
        let mut acc = [0u32; CH];
        for px in block.chunks_exact(CH) {
            if ALPHA {
                let a = u32::from(px[CH - 1]);
                for c in 0..CH - 1 {
                    acc[c] += u32::from(px[c]) * a;
                }
                acc[CH - 1] += a;
            } else {
                for c in 0..CH {
                    acc[c] += u32::from(px[c]);
                }
            }
        }
        for c in 0..CH {
            sum[c] += acc[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_shrink_by_one_passes_rows_through() {
        let mut s = BoxShrinker::new(2, 2, 1, ColorModel::Rgba);
        s.push_row(&[1, 2, 3, 0, 4, 5, 6, 255, 99]);
        s.push_row(&[7, 8, 9, 10, 11, 12, 13, 14]);
        let b = s.finish();
        assert_eq!((b.width, b.height), (2, 2));
        assert_eq!(
            b.data,
            [1, 2, 3, 0, 4, 5, 6, 255, 7, 8, 9, 10, 11, 12, 13, 14]
        );
    }

    #[test]
    fn box_shrink_averages_blocks_and_edges() {
        // 3x3 gray, factor 2 -> 2x2: full block, right edge column, bottom row, corner.
        let mut s = BoxShrinker::new(3, 3, 2, ColorModel::Gray);
        s.push_row(&[0, 10, 100]);
        s.push_row(&[20, 30, 200]);
        s.push_row(&[4, 6, 50]);
        let b = s.finish();
        assert_eq!((b.width, b.height), (2, 2));
        assert_eq!(b.data, vec![15, 150, 5, 50]);
    }

    #[test]
    fn box_shrink_ignores_colour_of_transparent_pixels() {
        let mut s = BoxShrinker::new(2, 1, 2, ColorModel::Rgba);
        s.push_row(&[255, 0, 0, 255, 0, 0, 0, 0]);
        let b = s.finish();
        assert_eq!(b.data, vec![255, 0, 0, 128]);
    }
}
