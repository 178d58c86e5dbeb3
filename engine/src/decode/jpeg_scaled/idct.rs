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

/// Pixels per block side at each scale.
pub(super) fn side(scale: u32) -> usize {
    8 / scale as usize
}

/// The cell-average matrices for `nx`×`ny` outputs per block (each 1, 2 or 4): `nx` across
/// (applied to the coefficients' columns u), `ny` down (rows v).
#[derive(Debug, Clone)]
pub(super) struct Reduced {
    nx: usize,
    ny: usize,
    mx: [[f32; 8]; 4],
    my: [[f32; 8]; 4],
}

fn matrix(n: usize) -> [[f32; 8]; 4] {
    let cell = 8 / n;
    let mut m = [[0f32; 8]; 4];
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
            let value = 0.5 * c * mean;
            // Exact zeros (the frequencies that average out) let the loops skip them.
            *v = if value.abs() < 1e-9 {
                0.0
            } else {
                value as f32
            };
        }
    }
    m
}

impl Reduced {
    pub(super) fn new(nx: usize, ny: usize) -> Self {
        Reduced {
            nx,
            ny,
            mx: matrix(nx),
            my: matrix(ny),
        }
    }

    /// Outputs per block across and down.
    pub(super) fn size(&self) -> (usize, usize) {
        (self.nx, self.ny)
    }

    /// Transforms one block of quantised coefficients (natural order) with quantiser `q` and
    /// writes `nx`×`ny` pixels at `out[0]`, rows `stride` apart.
    #[inline]
    pub(super) fn block(&self, coefs: &[i16; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
        let (nx, ny) = (self.nx, self.ny);
        // Row pass: R[v][j] = Σ_u Mx[j][u]·F[v][u], only for rows that have coefficients.
        let mut rows = [[0f32; 4]; 8];
        let mut live = [false; 8];
        for v in 0..8 {
            let src = &coefs[v * 8..v * 8 + 8];
            if src.iter().all(|&c| c == 0) {
                continue;
            }
            live[v] = true;
            let qv = &q[v * 8..v * 8 + 8];
            let mut f = [0f32; 8];
            for u in 0..8 {
                f[u] = f32::from(src[u]) * f32::from(qv[u]);
            }
            for (r, mj) in rows[v].iter_mut().zip(&self.mx).take(nx) {
                *r = (0..8).map(|u| mj[u] * f[u]).sum();
            }
        }
        // Column pass: out[i][j] = Σ_v My[i][v]·R[v][j] + 128.
        for i in 0..ny {
            let mi = &self.my[i];
            let line = &mut out[i * stride..i * stride + nx];
            for (j, px) in line.iter_mut().enumerate() {
                let mut acc = 128.5f32;
                for v in 0..8 {
                    if live[v] {
                        acc += mi[v] * rows[v][j];
                    }
                }
                *px = acc.clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// The 1×1 case: the DC term alone is the block mean (libjpeg's `jpeg_idct_1x1`).
#[inline(always)]
pub(super) fn dc_pixel(dc: i16, q0: u16) -> u8 {
    let v = (i32::from(dc) * i32::from(q0) + 4) >> 3;
    (v + 128).clamp(0, 255) as u8
}

/// Fills an `nx`×`ny` cell with one value (blocks whose AC coefficients are all zero).
#[inline]
pub(super) fn fill(value: u8, (nx, ny): (usize, usize), out: &mut [u8], stride: usize) {
    for i in 0..ny {
        out[i * stride..i * stride + nx].fill(value);
    }
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
            let r = Reduced::new(nx, ny);
            let mut out = vec![0u8; nx * ny];
            r.block(&coefs, &q, &mut out, nx);
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
