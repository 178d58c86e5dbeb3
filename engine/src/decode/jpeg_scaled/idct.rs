//! Reduced inverse DCTs: an 8×8 block of coefficients straight to its 1×1, 2×2 or 4×4 area
//! average.
//!
//! Each output pixel is the exact mean of the pixels the full 8×8 IDCT would produce over its
//! cell (before clamping), which is a linear map of the coefficients: `out = M·F·Mᵀ + 128`
//! with `M[j][u] = ½·C(u)·mean over x in cell j of cos((2x+1)uπ/16)`. For 2×2 cells the even
//! frequencies other than DC average out (so only u ∈ {0,1,3,5,7} matter, as in libjpeg's
//! `jpeg_idct_2x2`); for 4×4 only u = 4 drops out (`jpeg_idct_4x4`). Using the exact average
//! keeps the result within rounding of a box-filtered full decode, which is what the oracle
//! tests check, and anti-aliases better than a plain low-order IDCT.
//!
//! Floating point keeps hostile coefficients (any i16 × any u16 quantiser) free of overflow.

use super::markers::ZIGZAG;

/// Pixels per block side at each scale.
pub(super) fn side(scale: u32) -> usize {
    8 / scale as usize
}

/// The cell-average matrix for `n` outputs per block side (1, 2, 4 or 8; at 8 each cell is one
/// pixel and this is the plain IDCT): `M[j][u]` weighs
/// frequency `u` for output cell `j`.
fn matrix(n: usize) -> [[f64; 8]; 8] {
    let cell = 8 / n;
    let mut m = [[0f64; 8]; 8];
    for (j, row) in m.iter_mut().enumerate().take(n) {
        for (u, v) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            let mean: f64 = (j * cell..(j + 1) * cell)
                .map(|x| ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos())
                .sum::<f64>()
                / cell as f64;
            *v = 0.5 * c * mean;
        }
    }
    m
}

/// The reduced IDCT of one component as a sum of basis images: `zz[k]` is the `nx`×`ny` output
/// (row-major, zero-padded to `L` lanes) of the coefficient at zigzag position `k` with value 1,
/// dequantised. A block costs one `L`-lane multiply-add per non-zero coefficient, and most
/// blocks have few; sequential blocks are summed while they are entropy-decoded. Measured
/// against the separable row/column pass it replaced: the 1/4 decode of seven 4–8 MP baseline
/// photos went from 96 to 64 ms.
#[derive(Debug, Clone)]
pub(super) struct Basis<const L: usize> {
    nx: usize,
    ny: usize,
    zz: Box<[[f32; L]; 64]>,
}

impl<const L: usize> Basis<L> {
    fn new(nx: usize, ny: usize, q: &[u16; 64]) -> Self {
        debug_assert!(nx * ny <= L);
        let (mx, my) = (matrix(nx), matrix(ny));
        let mut zz = Box::new([[0f32; L]; 64]);
        for (k, lanes) in zz.iter_mut().enumerate() {
            let nat = ZIGZAG[k];
            let (v, u) = (nat / 8, nat % 8);
            for i in 0..ny {
                for j in 0..nx {
                    let w = f64::from(q[nat]) * my[i][v] * mx[j][u];
                    // Exact zeros for the frequencies that average out.
                    lanes[i * nx + j] = if w.abs() < 1e-9 { 0.0 } else { w as f32 };
                }
            }
        }
        Basis { nx, ny, zz }
    }

    /// Adds coefficient `value` at zigzag position `k` to the block's sums. A position past the
    /// block (a run that overshoots, in damaged data) is dropped, as libjpeg drops it.
    #[inline(always)]
    pub(super) fn add(&self, acc: &mut [f32; L], k: usize, value: i32) {
        if let Some(lanes) = self.zz.get(k) {
            let value = value as f32;
            for (a, w) in acc.iter_mut().zip(lanes) {
                *a += value * w;
            }
        }
    }

    /// Writes the block's `nx`×`ny` pixels at `out[0]`, rows `stride` apart.
    #[inline(always)]
    pub(super) fn store(&self, acc: &[f32; L], out: &mut [u8], stride: usize) {
        let mut px = [0u8; L];
        for (p, a) in px.iter_mut().zip(acc) {
            *p = (a + 128.5).clamp(0.0, 255.0) as u8;
        }
        for i in 0..self.ny {
            out[i * stride..i * stride + self.nx].copy_from_slice(&px[i * self.nx..][..self.nx]);
        }
    }

    /// Reduces a stored block of coefficients in zigzag order. Runs of eight zeros (most of the
    /// high frequencies, which zigzag order puts last) are skipped whole; within a run the sum
    /// is branch-free.
    fn reduce(&self, block: &[i16; 64], out: &mut [u8], stride: usize) {
        let mut acc = [0f32; L];
        for (row, lanes) in block.chunks_exact(8).zip(self.zz.chunks_exact(8)) {
            if row.iter().all(|&c| c == 0) {
                continue;
            }
            for (&c, w) in row.iter().zip(lanes) {
                let value = f32::from(c);
                for (a, w) in acc.iter_mut().zip(w) {
                    *a += value * w;
                }
            }
        }
        self.store(&acc, out, stride);
    }
}

/// A component's [`Basis`] with the fewest lanes that hold its `nx`×`ny` outputs.
#[derive(Debug, Clone)]
pub(super) enum AnyBasis {
    L4(Basis<4>),
    L8(Basis<8>),
    L16(Basis<16>),
    L64(Basis<64>),
}

impl AnyBasis {
    /// The basis for `nx`×`ny` outputs per block (each 1, 2, 4 or 8) with quantiser `q`, or
    /// `None` for 1×1, which is the DC term alone ([`dc_pixel`]).
    pub(super) fn new(nx: usize, ny: usize, q: &[u16; 64]) -> Option<Self> {
        Some(match nx * ny {
            1 => return None,
            2..=4 => AnyBasis::L4(Basis::new(nx, ny, q)),
            8 => AnyBasis::L8(Basis::new(nx, ny, q)),
            16 => AnyBasis::L16(Basis::new(nx, ny, q)),
            _ => AnyBasis::L64(Basis::new(nx, ny, q)),
        })
    }

    /// Reduces a stored block of coefficients in zigzag order into `out`.
    pub(super) fn reduce(&self, block: &[i16; 64], out: &mut [u8], stride: usize) {
        match self {
            AnyBasis::L4(b) => b.reduce(block, out, stride),
            AnyBasis::L8(b) => b.reduce(block, out, stride),
            AnyBasis::L16(b) => b.reduce(block, out, stride),
            AnyBasis::L64(b) => b.reduce(block, out, stride),
        }
    }
}

/// The 1×1 case: the DC term alone is the block mean (libjpeg's `jpeg_idct_1x1`).
#[inline(always)]
pub(super) fn dc_pixel(dc: i16, q0: u16) -> u8 {
    let v = (i32::from(dc) * i32::from(q0) + 4) >> 3;
    (v + 128).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full-precision 8×8 IDCT, for reference.
    fn full_idct(coefs: &[i16; 64], q: &[u16; 64]) -> [f64; 64] {
        let mut out = [0f64; 64];
        for y in 0..8 {
            for x in 0..8 {
                let mut s = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        let cu = if u == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
                        let cv = if v == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
                        let f = f64::from(coefs[v * 8 + u]) * f64::from(q[v * 8 + u]);
                        s += cu
                            * cv
                            * f
                            * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                            * ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                out[y * 8 + x] = s / 4.0 + 128.0;
            }
        }
        out
    }

    #[test]
    fn reduced_idct_is_the_cell_mean_of_the_full_idct() {
        let mut coefs = [0i16; 64];
        for (i, c) in coefs.iter_mut().enumerate() {
            *c = ((i * 37 % 11) as i16 - 5) * if i < 10 { 6 } else { 1 };
        }
        coefs[0] = -20;
        let q = [3u16; 64];
        let full = full_idct(&coefs, &q);
        for (nx, ny) in [(2usize, 2usize), (4, 4), (4, 2), (1, 2), (2, 4)] {
            let basis = AnyBasis::new(nx, ny, &q).unwrap();
            let mut out = vec![0u8; nx * ny];
            let zigzag: [i16; 64] = std::array::from_fn(|k| coefs[ZIGZAG[k]]);
            basis.reduce(&zigzag, &mut out, nx);
            let (cx, cy) = (8 / nx, 8 / ny);
            for i in 0..ny {
                for j in 0..nx {
                    let mut mean = 0.0;
                    for y in i * cy..(i + 1) * cy {
                        for x in j * cx..(j + 1) * cx {
                            mean += full[y * 8 + x];
                        }
                    }
                    mean /= (cx * cy) as f64;
                    let got = f64::from(out[i * nx + j]);
                    let n = (nx, ny);
                    assert!(
                        (got - mean.clamp(0.0, 255.0)).abs() <= 0.51,
                        "{n:?}: {got} vs {mean}"
                    );
                }
            }
        }
        let mean: f64 = full.iter().sum::<f64>() / 64.0;
        assert!((f64::from(dc_pixel(coefs[0], q[0])) - mean).abs() <= 0.51);
    }
}
