//! Paeth unfiltering of 8-bit rows (1–4 bytes a pixel) with SSE4.1 (part of the x86-64-v2 build).
//!
//! Each byte of a Paeth row is predicted from the unfiltered byte to its left, so a row
//! unfilters one pixel after another and the work waits on that chain: about eight dependent
//! operations a pixel, whatever the width of the arithmetic. One register holds a pixel's
//! channels as 16-bit lanes, so the chain is paid once a pixel instead of once a channel. When
//! the row below is a Paeth row too, its pixel one to the left depends only on pixels already
//! done, so the register's high half carries that pixel along: two pixels for one chain.
//!
//! The predictor is stb_image's branch-free form, as in the scalar [`super::plain`] path, and
//! the results are the same to the byte (tested there against the png crate's encoder).

use std::arch::x86_64::{
    __m128i, _mm_add_epi16, _mm_and_si128, _mm_blendv_epi8, _mm_cmpgt_epi16, _mm_cvtepu8_epi16,
    _mm_cvtsi128_si32, _mm_cvtsi32_si128, _mm_extract_epi32, _mm_max_epi16, _mm_min_epi16,
    _mm_packus_epi16, _mm_set1_epi16, _mm_set_epi32, _mm_setzero_si128, _mm_sub_epi16,
    _mm_unpacklo_epi64,
};

/// Pixel `k` of `row` (`BPP` bytes) as a little-endian word, unused bytes zero.
#[inline]
fn word<const BPP: usize>(row: &[u8], k: usize) -> i32 {
    let mut p = [0u8; 4];
    p[..BPP].copy_from_slice(&row[k * BPP..k * BPP + BPP]);
    i32::from_le_bytes(p)
}

/// Pixel `k` of `row` in the four low 16-bit lanes, the high half zero.
#[inline]
#[target_feature(enable = "sse4.1")]
fn load<const BPP: usize>(row: &[u8], k: usize) -> __m128i {
    _mm_cvtepu8_epi16(_mm_cvtsi32_si128(word::<BPP>(row, k)))
}

/// Pixel `k` of `low` and pixel `j` of `high`, in the low and high halves.
#[inline]
#[target_feature(enable = "sse4.1")]
fn load_two<const BPP: usize>(low: &[u8], k: usize, high: &[u8], j: usize) -> __m128i {
    _mm_cvtepu8_epi16(_mm_set_epi32(
        0,
        0,
        word::<BPP>(high, j),
        word::<BPP>(low, k),
    ))
}

#[inline]
fn store<const BPP: usize>(row: &mut [u8], k: usize, word: i32) {
    row[k * BPP..k * BPP + BPP].copy_from_slice(&word.to_le_bytes()[..BPP]);
}

/// The Paeth predictor of every 16-bit lane.
#[inline]
#[target_feature(enable = "sse4.1")]
fn predict(a: __m128i, b: __m128i, c: __m128i) -> __m128i {
    let thresh = _mm_sub_epi16(_mm_add_epi16(_mm_add_epi16(c, c), c), _mm_add_epi16(a, b));
    let lo = _mm_min_epi16(a, b);
    let hi = _mm_max_epi16(a, b);
    let t0 = _mm_blendv_epi8(lo, c, _mm_cmpgt_epi16(hi, thresh));
    _mm_blendv_epi8(hi, t0, _mm_cmpgt_epi16(thresh, lo))
}

/// `filtered` plus the prediction, modulo 256.
#[inline]
#[target_feature(enable = "sse4.1")]
fn add(filtered: __m128i, prediction: __m128i) -> __m128i {
    _mm_and_si128(_mm_add_epi16(filtered, prediction), _mm_set1_epi16(0xff))
}

/// Unfilters the Paeth row `raw` into `cur`; `prev` is the row above, unfiltered.
pub(super) fn unfilter_row<const BPP: usize>(raw: &[u8], prev: &[u8], cur: &mut [u8]) {
    // SAFETY: this module is compiled only when the build enables SSE4.1 (`mod paeth`'s cfg).
    unsafe { row::<BPP>(raw, prev, cur) }
}

/// Unfilters two consecutive Paeth rows, `raw_top` into `top` and `raw_bottom` into `bottom`;
/// `prev` is the row above the top one, unfiltered.
pub(super) fn unfilter_two_rows<const BPP: usize>(
    raw_top: &[u8],
    raw_bottom: &[u8],
    prev: &[u8],
    top: &mut [u8],
    bottom: &mut [u8],
) {
    // SAFETY: as in `unfilter_row`.
    unsafe { two_rows::<BPP>(raw_top, raw_bottom, prev, top, bottom) }
}

#[target_feature(enable = "sse4.1")]
fn row<const BPP: usize>(raw: &[u8], prev: &[u8], cur: &mut [u8]) {
    let (mut a, mut c) = (_mm_setzero_si128(), _mm_setzero_si128());
    for k in 0..prev.len() / BPP {
        let b = load::<BPP>(prev, k);
        a = add(load::<BPP>(raw, k), predict(a, b, c));
        store::<BPP>(cur, k, _mm_cvtsi128_si32(_mm_packus_epi16(a, a)));
        c = b;
    }
}

/// [`unfilter_two_rows`]: step `k` makes `top`'s pixel `k` in the low half and `bottom`'s
/// pixel `k − 1` in the high half.
#[target_feature(enable = "sse4.1")]
fn two_rows<const BPP: usize>(
    raw_top: &[u8],
    raw_bottom: &[u8],
    prev: &[u8],
    top: &mut [u8],
    bottom: &mut [u8],
) {
    let width = prev.len() / BPP;
    if width == 0 {
        return;
    }
    let zero = _mm_setzero_si128();
    // Top pixel 0 alone (its left and upper-left neighbours are zero, as are the high lanes).
    let mut c = load::<BPP>(prev, 0);
    let mut a = add(load::<BPP>(raw_top, 0), predict(zero, c, zero));
    store::<BPP>(top, 0, _mm_cvtsi128_si32(_mm_packus_epi16(a, a)));
    // Here a = [top k−1, bottom k−2] and c = [prev k−1, top k−2].
    for k in 1..width {
        // Above top k is prev k; above bottom k−1 is top k−1, just made.
        let b = _mm_unpacklo_epi64(load::<BPP>(prev, k), a);
        a = add(
            load_two::<BPP>(raw_top, k, raw_bottom, k - 1),
            predict(a, b, c),
        );
        let bytes = _mm_packus_epi16(a, a);
        store::<BPP>(top, k, _mm_cvtsi128_si32(bytes));
        store::<BPP>(bottom, k - 1, _mm_extract_epi32::<1>(bytes));
        c = b;
    }
    // Bottom's last pixel, in the high half: left of it bottom w−2 (a's high half), above it
    // top w−1 (a's low half, moved up), upper-left top w−2 (c's high half).
    let b = _mm_unpacklo_epi64(zero, a);
    let filtered = _mm_unpacklo_epi64(zero, load::<BPP>(raw_bottom, width - 1));
    let last = add(filtered, predict(a, b, c));
    store::<BPP>(
        bottom,
        width - 1,
        _mm_extract_epi32::<1>(_mm_packus_epi16(last, last)),
    );
}
