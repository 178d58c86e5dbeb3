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
///
/// [`Self::new`] adds each row into the block sums directly; [`Self::with_column_sums`] first
/// adds the band's rows sample by sample (a loop the compiler vectorises) and folds those
/// column sums into blocks once per band, for a buffer of a source row in `u32`s.
pub(crate) struct BoxShrinker {
    src_width: usize,
    factor: usize,
    model: ColorModel,
    out_width: usize,
    sums: Vec<u32>,
    /// Per-sample sums of the band's rows so far (colour premultiplied by alpha), when built
    /// with [`Self::with_column_sums`]; empty otherwise.
    columns: Vec<u32>,
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
            columns: Vec::new(),
            rows_in_band: 0,
            out: Vec::with_capacity(out_width * out_height * channels),
        }
    }

    /// Like [`Self::new`], but summing each band column by column first: 3–10× fewer
    /// instructions a row, for [`Self::column_bytes`] more memory. The output is identical.
    pub(crate) fn with_column_sums(
        src_width: u32,
        src_height: u32,
        factor: u32,
        model: ColorModel,
    ) -> Self {
        let mut shrinker = Self::new(src_width, src_height, factor, model);
        if shrinker.factor > 1 {
            shrinker.columns = vec![0; Self::column_bytes(src_width, model) as usize / 4];
        }
        shrinker
    }

    /// The bytes of the column sums of [`Self::with_column_sums`] (at most; none at factor 1).
    pub(crate) fn column_bytes(src_width: u32, model: ColorModel) -> u64 {
        u64::from(src_width) * model.channels() as u64 * 4
    }

    pub(crate) fn push_row(&mut self, row: &[u8]) {
        let row = &row[..self.src_width * self.model.channels()];
        if self.factor == 1 {
            // Nothing to average: the row is the output (four divisions a pixel saved).
            self.out.extend_from_slice(row);
            return;
        }
        if self.columns.is_empty() {
            match (self.model.channels(), self.model.has_alpha()) {
                (1, _) => accumulate::<1, false>(row, self.factor, &mut self.sums),
                (2, _) => accumulate::<2, true>(row, self.factor, &mut self.sums),
                (3, _) => accumulate::<3, false>(row, self.factor, &mut self.sums),
                (_, true) => accumulate::<4, true>(row, self.factor, &mut self.sums),
                (_, false) => accumulate::<4, false>(row, self.factor, &mut self.sums),
            }
        } else {
            let cols = &mut self.columns;
            match (self.model.channels(), self.model.has_alpha()) {
                // The first row of a band overwrites the last band's sums (no clearing pass).
                (2, _) if self.rows_in_band == 0 => add_columns::<2, true, true>(row, cols),
                (2, _) => add_columns::<2, true, false>(row, cols),
                (4, true) if self.rows_in_band == 0 => add_columns_rgba::<true>(row, cols),
                (4, true) => add_columns_rgba::<false>(row, cols),
                _ if self.rows_in_band == 0 => add_columns::<1, false, true>(row, cols),
                _ => add_columns::<1, false, false>(row, cols),
            }
        }
        self.rows_in_band += 1;
        if self.rows_in_band == self.factor {
            self.emit_band();
        }
    }

    /// Adds the column sums into the block sums (column mode only).
    fn fold_columns(&mut self) {
        if self.columns.is_empty() {
            return;
        }
        match self.model.channels() {
            1 => fold::<1>(&self.columns, self.factor, &mut self.sums),
            2 => fold::<2>(&self.columns, self.factor, &mut self.sums),
            3 => fold::<3>(&self.columns, self.factor, &mut self.sums),
            _ => fold::<4>(&self.columns, self.factor, &mut self.sums),
        }
    }

    fn emit_band(&mut self) {
        self.fold_columns();
        let rows = self.rows_in_band as u32;
        // Every block is `factor` columns wide but the last, which takes what is left.
        let last_cols = self.src_width - (self.out_width - 1) * self.factor;
        let n = (rows * self.factor as u32, rows * last_cols as u32);
        let start = self.out.len();
        self.out.resize(start + self.sums.len(), 0);
        let out = &mut self.out[start..];
        match (self.model.channels(), self.model.has_alpha()) {
            (1, _) => average::<1, false>(&self.sums, n, out),
            (2, _) => average::<2, true>(&self.sums, n, out),
            (3, _) => average::<3, false>(&self.sums, n, out),
            (_, true) => average::<4, true>(&self.sums, n, out),
            (_, false) => average::<4, false>(&self.sums, n, out),
        }
        self.sums.fill(0);
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

/// Adds one row into the per-sample column sums. Without alpha every sample is independent
/// (`CH` 1 serves every layout); with it, colour is weighted by alpha as in [`accumulate`]
/// (the product fits a `u16`, which SSE2 multiplies eight at a time).
fn add_columns<const CH: usize, const ALPHA: bool, const FIRST: bool>(
    row: &[u8],
    columns: &mut [u32],
) {
    let add = |sum: &mut u32, v: u32| *sum = if FIRST { v } else { *sum + v };
    if ALPHA {
        for (col, px) in columns.chunks_exact_mut(CH).zip(row.chunks_exact(CH)) {
            let a = u16::from(px[CH - 1]);
            for c in 0..CH - 1 {
                add(&mut col[c], u32::from(u16::from(px[c]) * a));
            }
            add(&mut col[CH - 1], u32::from(a));
        }
    } else {
        for (col, &v) in columns.iter_mut().zip(row) {
            add(col, u32::from(v));
        }
    }
}

/// [`add_columns`] for RGBA, four pixels at a time in SSE2 (part of every x86-64 CPU): the
/// compiler leaves the scalar loop at ~20 instructions a pixel, this takes ~9.
fn add_columns_rgba<const FIRST: bool>(row: &[u8], columns: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    let (row, columns) = {
        use std::arch::x86_64::*;
        let mut cols = columns.chunks_exact_mut(16);
        let mut pxs = row.chunks_exact(16);
        // SAFETY: SSE2 is baseline on x86_64; every load and store is unaligned and stays
        // inside its 16-byte chunk of `row` or its 16-u32 chunk of `columns`.
        unsafe {
            let zero = _mm_setzero_si128();
            // Per 16-bit lane of two pixels: colour is multiplied by alpha, alpha by one.
            let keep_colour = _mm_set_epi16(0, -1, -1, -1, 0, -1, -1, -1);
            let one_for_alpha = _mm_set_epi16(1, 0, 0, 0, 1, 0, 0, 0);
            for (col, px) in (&mut cols).zip(&mut pxs) {
                let v = _mm_loadu_si128(px.as_ptr().cast());
                for (pair, at) in [
                    (_mm_unpacklo_epi8(v, zero), 0),
                    (_mm_unpackhi_epi8(v, zero), 8),
                ] {
                    let alpha = _mm_shufflehi_epi16::<0xFF>(_mm_shufflelo_epi16::<0xFF>(pair));
                    let factor = _mm_or_si128(_mm_and_si128(alpha, keep_colour), one_for_alpha);
                    // 255 × 255 fits 16 bits: the low half of the product is all of it.
                    let product = _mm_mullo_epi16(pair, factor);
                    let c = col.as_mut_ptr().add(at).cast::<__m128i>();
                    let old = |c| if FIRST { zero } else { _mm_loadu_si128(c) };
                    let sum = _mm_add_epi32(old(c), _mm_unpacklo_epi16(product, zero));
                    _mm_storeu_si128(c, sum);
                    let c = c.add(1);
                    let sum = _mm_add_epi32(old(c), _mm_unpackhi_epi16(product, zero));
                    _mm_storeu_si128(c, sum);
                }
            }
        }
        (pxs.remainder(), cols.into_remainder())
    };
    add_columns::<4, true, FIRST>(row, columns);
}

/// Writes one band's block averages: `n` is the pixel count of a block and of the last one.
/// With alpha, colour is divided by the alpha sum (undoing the premultiplication).
fn average<const CH: usize, const ALPHA: bool>(sums: &[u32], n: (u32, u32), out: &mut [u8]) {
    let blocks = sums.len() / CH;
    for (bx, (sum, px)) in sums
        .chunks_exact(CH)
        .zip(out.chunks_exact_mut(CH))
        .enumerate()
    {
        let n = if bx + 1 == blocks { n.1 } else { n.0 };
        if ALPHA {
            let a_sum = sum[CH - 1];
            for c in 0..CH - 1 {
                px[c] = (sum[c] + a_sum / 2).checked_div(a_sum).unwrap_or(0) as u8;
            }
            px[CH - 1] = ((a_sum + n / 2) / n) as u8;
        } else {
            for c in 0..CH {
                px[c] = ((sum[c] + n / 2) / n) as u8;
            }
        }
    }
}

/// Adds the column sums of one band into the per-block sums.
fn fold<const CH: usize>(columns: &[u32], factor: usize, sums: &mut [u32]) {
    for (block, sum) in columns.chunks(factor * CH).zip(sums.chunks_exact_mut(CH)) {
        let mut acc = [0u32; CH];
        for px in block.chunks_exact(CH) {
            for c in 0..CH {
                acc[c] += px[c];
            }
        }
        for c in 0..CH {
            sum[c] += acc[c];
        }
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
    fn column_sums_give_the_same_output_as_block_sums() {
        // Pseudo-random pixels, odd sizes (partial blocks at the right and bottom edges).
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        let models = [
            ColorModel::Gray,
            ColorModel::GrayAlpha,
            ColorModel::Rgb,
            ColorModel::Rgba,
            ColorModel::Cmyk,
        ];
        for model in models {
            for factor in [1, 2, 3, 7, 64] {
                let (w, h) = (2 * factor + 5, factor + 3);
                let mut blocks = BoxShrinker::new(w, h, factor, model);
                let mut columns = BoxShrinker::with_column_sums(w, h, factor, model);
                for _ in 0..h {
                    let row: Vec<u8> = (0..w as usize * model.channels()).map(|_| next()).collect();
                    blocks.push_row(&row);
                    columns.push_row(&row);
                }
                assert_eq!(
                    blocks.finish(),
                    columns.finish(),
                    "{model:?} factor {factor}"
                );
            }
        }
    }

    #[test]
    fn box_shrink_ignores_colour_of_transparent_pixels() {
        let mut s = BoxShrinker::new(2, 1, 2, ColorModel::Rgba);
        s.push_row(&[255, 0, 0, 255, 0, 0, 0, 0]);
        let b = s.finish();
        assert_eq!(b.data, vec![255, 0, 0, 128]);
    }
}
