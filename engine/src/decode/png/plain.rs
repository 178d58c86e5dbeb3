//! The rows of a plain PNG — 8 bits per sample, gray, gray+alpha, RGB or RGBA, not interlaced,
//! no tRNS, not animated, i.e. every PNG whose rows need no transformation — inflated with
//! fdeflate and unfiltered here rather than by the png crate's reader. The reader copies each
//! row out of its inflate buffer into a scratch row and moves that buffer along every few rows;
//! here a row is unfiltered straight from the inflate buffer into the caller's row.
//!
//! The chunks before the image data have been read (and checked) by the png crate; this reads
//! the IDAT chunks, checking each CRC. On anything unexpected (a bad CRC, a damaged or short
//! zlib stream, an unknown filter) it gives up with `None`, and the caller decodes the file
//! again with the png crate, whose errors are the typed ones.

/// Inflate window: deflate refers back up to 32 KiB into the output.
const WINDOW: usize = 32 << 10;
/// Fresh output space the inflater gets per call (at least).
const CHUNK: usize = 64 << 10;

/// Bytes held while reading rows of `width` pixels with `channels` samples: the inflate buffer
/// and the previous row and two output rows.
pub(super) fn buffer_bytes(width: u64, channels: u64) -> u64 {
    let row = width * channels;
    (WINDOW + CHUNK) as u64 + (row + 1) + 3 * row
}

/// Calls `sink` with each unfiltered row of the image whose IDAT chunks start at or after
/// byte 8 of `data`, top to bottom. `None` when the stream is damaged or short.
pub(super) fn read_rows(
    data: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    mut sink: impl FnMut(&[u8]),
) -> Option<()> {
    let stride = width as usize * channels;
    let rowlen = stride + 1;
    let mut chunks = Idat::new(data)?;
    let mut inflater = fdeflate::Decompressor::new();
    // The png crate does not check Adler-32 either (its default); the chunk CRCs cover it.
    inflater.ignore_adler32();
    let mut buf = vec![0u8; WINDOW + CHUNK + rowlen];
    let (mut filled, mut pos) = (0usize, 0usize);
    let mut prev = vec![0u8; stride];
    let mut cur = vec![0u8; stride];
    let mut next = vec![0u8; stride];
    let mut input: &[u8] = &[];
    let mut last_input = false;
    let mut rows = 0;
    while rows < height {
        while filled - pos >= rowlen && rows < height {
            if rows + 1 < height
                && filled - pos >= 2 * rowlen
                && buf[pos] == PAETH
                && buf[pos + rowlen] == PAETH
            {
                unfilter_two_paeth_rows(
                    &buf[pos + 1..pos + rowlen],
                    &buf[pos + rowlen + 1..pos + 2 * rowlen],
                    &prev,
                    (&mut cur, &mut next),
                    channels,
                );
                sink(&cur);
                sink(&next);
                std::mem::swap(&mut prev, &mut next);
                pos += 2 * rowlen;
                rows += 2;
                continue;
            }
            unfilter(
                buf[pos],
                &buf[pos + 1..pos + rowlen],
                &prev,
                &mut cur,
                channels,
            )?;
            sink(&cur);
            std::mem::swap(&mut prev, &mut cur);
            pos += rowlen;
            rows += 1;
        }
        if rows == height {
            break;
        }
        if inflater.is_done() {
            return None;
        }
        if buf.len() - filled < CHUNK {
            // Keep the window and the partial row; everything before them has been used.
            let keep_from = pos.min(filled.saturating_sub(WINDOW));
            buf.copy_within(keep_from..filled, 0);
            filled -= keep_from;
            pos -= keep_from;
        }
        while input.is_empty() && !last_input {
            match chunks.next() {
                Some(chunk) => input = chunk?,
                None => last_input = true,
            }
        }
        let (used, produced) = inflater.read(input, &mut buf, filled, last_input).ok()?;
        input = &input[used..];
        filled += produced;
        if used == 0 && produced == 0 && last_input {
            return None;
        }
    }
    Some(())
}

/// The payloads of consecutive IDAT chunks, each checked against its CRC (`Some(None)` for a
/// chunk that fails or runs past the end of the data).
struct Idat<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Idat<'a> {
    /// Finds the first IDAT chunk after the signature.
    fn new(data: &'a [u8]) -> Option<Self> {
        let mut pos = 8;
        loop {
            let (length, kind) = chunk_header(data, pos)?;
            if kind == *b"IDAT" {
                return Some(Idat { data, pos });
            }
            pos = pos.checked_add(12)?.checked_add(length)?;
        }
    }
}

fn chunk_header(data: &[u8], pos: usize) -> Option<(usize, [u8; 4])> {
    let header = data.get(pos..pos.checked_add(8)?)?;
    let length = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
    Some((length, header[4..].try_into().ok()?))
}

impl<'a> Iterator for Idat<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let (length, kind) = chunk_header(self.data, self.pos)?;
        if kind != *b"IDAT" {
            return None;
        }
        let checked = || {
            let body = self
                .data
                .get(self.pos + 4..(self.pos + 8).checked_add(length)?)?;
            let end = self.pos + 8 + length;
            let crc = self.data.get(end..end + 4)?;
            (crc32fast::hash(body).to_be_bytes() == crc).then(|| &body[4..])
        };
        let payload = checked();
        self.pos = self.pos.saturating_add(12).saturating_add(length);
        if payload.is_none() {
            // Nothing after a damaged chunk can be trusted.
            self.pos = self.data.len();
        }
        Some(payload)
    }
}

/// The filter type byte of a Paeth row.
const PAETH: u8 = 4;

/// Undoes the Paeth filter of two consecutive rows into `out` (top, bottom); `prev` is the row
/// above the top one. With SSE4.1 both rows go through one dependency chain ([`super::paeth`]).
fn unfilter_two_paeth_rows(
    raw_top: &[u8],
    raw_bottom: &[u8],
    prev: &[u8],
    (top, bottom): (&mut [u8], &mut [u8]),
    bpp: usize,
) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse4.1"))]
    {
        use super::paeth::unfilter_two_rows;
        match bpp {
            1 => unfilter_two_rows::<1>(raw_top, raw_bottom, prev, top, bottom),
            2 => unfilter_two_rows::<2>(raw_top, raw_bottom, prev, top, bottom),
            3 => unfilter_two_rows::<3>(raw_top, raw_bottom, prev, top, bottom),
            _ => unfilter_two_rows::<4>(raw_top, raw_bottom, prev, top, bottom),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse4.1")))]
    {
        // The filter type is known, so these cannot fail.
        let _ = unfilter(PAETH, raw_top, prev, top, bpp);
        let _ = unfilter(PAETH, raw_bottom, top, bottom, bpp);
    }
}

/// Undoes the row filter `kind` of `raw` into `cur` (`prev`: the row above, unfiltered; zeros
/// for the first row). `None` for an unknown filter type.
fn unfilter(kind: u8, raw: &[u8], prev: &[u8], cur: &mut [u8], bpp: usize) -> Option<()> {
    match bpp {
        1 => unfilter_bpp::<1>(kind, raw, prev, cur),
        2 => unfilter_bpp::<2>(kind, raw, prev, cur),
        3 => unfilter_bpp::<3>(kind, raw, prev, cur),
        _ => unfilter_bpp::<4>(kind, raw, prev, cur),
    }
}

/// [`unfilter`] for `BPP` bytes a pixel: the left neighbour of a byte is `BPP` bytes back, so
/// each loop carries one pixel and the compiler keeps it in registers.
fn unfilter_bpp<const BPP: usize>(kind: u8, raw: &[u8], prev: &[u8], cur: &mut [u8]) -> Option<()> {
    match kind {
        0 => cur.copy_from_slice(raw),
        1 => {
            let mut a = [0u8; BPP];
            for ((x, _), out) in pixels::<BPP>(raw, prev, cur) {
                for i in 0..BPP {
                    a[i] = x[i].wrapping_add(a[i]);
                }
                out.copy_from_slice(&a);
            }
        }
        2 => {
            for ((c, &r), &p) in cur.iter_mut().zip(raw).zip(prev) {
                *c = r.wrapping_add(p);
            }
        }
        3 => {
            let mut a = [0u8; BPP];
            for ((x, b), out) in pixels::<BPP>(raw, prev, cur) {
                for i in 0..BPP {
                    let avg = (u16::from(a[i]) + u16::from(b[i])) >> 1;
                    a[i] = x[i].wrapping_add(avg as u8);
                }
                out.copy_from_slice(&a);
            }
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "sse4.1"))]
        PAETH => super::paeth::unfilter_row::<BPP>(raw, prev, cur),
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse4.1")))]
        PAETH => paeth_scalar::<BPP>(raw, prev, cur),
        _ => return None,
    }
    Some(())
}

/// The Paeth row `raw` unfiltered one byte at a time: the path of builds without SSE4.1, and
/// the reference the SIMD path is tested against.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse4.1"),
    allow(dead_code)
)]
fn paeth_scalar<const BPP: usize>(raw: &[u8], prev: &[u8], cur: &mut [u8]) {
    let mut a = [0i16; BPP];
    let mut c = [0i16; BPP];
    for ((x, b), out) in pixels::<BPP>(raw, prev, cur) {
        for i in 0..BPP {
            out[i] = x[i].wrapping_add(predict(a[i], i16::from(b[i]), c[i]));
            a[i] = i16::from(out[i]);
            c[i] = i16::from(b[i]);
        }
    }
}

/// The pixels of a row, the row above and the output row, side by side.
fn pixels<'a, const BPP: usize>(
    raw: &'a [u8],
    prev: &'a [u8],
    cur: &'a mut [u8],
) -> impl Iterator<Item = ((&'a [u8], &'a [u8]), &'a mut [u8])> {
    raw.chunks_exact(BPP)
        .zip(prev.chunks_exact(BPP))
        .zip(cur.chunks_exact_mut(BPP))
}

/// The Paeth predictor in the branch-free form of stb_image (as the png crate uses it).
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse4.1"),
    allow(dead_code)
)]
fn predict(a: i16, b: i16, c: i16) -> u8 {
    let thresh = c * 3 - (a + b);
    let lo = a.min(b);
    let hi = a.max(b);
    let t0 = if hi <= thresh { lo } else { c };
    let t1 = if thresh <= lo { hi } else { t0 };
    t1 as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, mut seed: u32) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed >> 7) as u8
            })
            .collect()
    }

    #[test]
    fn predictor_follows_the_specification() {
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(3) {
                for c in (0..=255u8).step_by(5) {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    let want = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    assert_eq!(predict(a.into(), b.into(), c.into()), want);
                }
            }
        }
    }

    fn paeth_rows_match_the_scalar_path<const BPP: usize>() {
        for width in [1, 2, 3, 5, 17, 64] {
            let len = width * BPP;
            let (prev, raw_top, raw_bottom) = (
                noise(len, 11),
                noise(len, 12 + width as u32),
                noise(len, 13),
            );
            let mut want_top = vec![0; len];
            let mut want_bottom = vec![0; len];
            paeth_scalar::<BPP>(&raw_top, &prev, &mut want_top);
            paeth_scalar::<BPP>(&raw_bottom, &want_top, &mut want_bottom);

            let mut top = vec![0; len];
            unfilter(PAETH, &raw_top, &prev, &mut top, BPP).unwrap();
            assert_eq!(top, want_top, "one row, {BPP} bytes a pixel, width {width}");
            let (mut top, mut bottom) = (vec![0; len], vec![0; len]);
            unfilter_two_paeth_rows(&raw_top, &raw_bottom, &prev, (&mut top, &mut bottom), BPP);
            assert_eq!(
                (top, bottom),
                (want_top, want_bottom),
                "two rows, {BPP} bytes a pixel, width {width}"
            );
        }
    }

    #[test]
    fn paeth_rows_match_the_scalar_path_for_every_pixel_size() {
        paeth_rows_match_the_scalar_path::<1>();
        paeth_rows_match_the_scalar_path::<2>();
        paeth_rows_match_the_scalar_path::<3>();
        paeth_rows_match_the_scalar_path::<4>();
    }

    /// `pixels` encoded by the png crate with `filter`, in IDAT chunks of at most 1000 bytes.
    fn encode(
        pixels: &[u8],
        w: u32,
        h: u32,
        color: png::ColorType,
        filter: png::Filter,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_filter(filter);
        let mut writer = e.write_header().unwrap();
        let mut stream = writer.stream_writer_with_size(1000).unwrap();
        std::io::Write::write_all(&mut stream, pixels).unwrap();
        stream.finish().unwrap();
        writer.finish().unwrap();
        out
    }

    fn rows(data: &[u8], w: u32, h: u32, channels: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        read_rows(data, w, h, channels, |row| out.extend_from_slice(row))?;
        Some(out)
    }

    #[test]
    fn rows_come_back_for_every_layout_and_filter() {
        let layouts = [
            (png::ColorType::Grayscale, 1),
            (png::ColorType::GrayscaleAlpha, 2),
            (png::ColorType::Rgb, 3),
            (png::ColorType::Rgba, 4),
        ];
        let filters = [
            png::Filter::NoFilter,
            png::Filter::Sub,
            png::Filter::Up,
            png::Filter::Avg,
            png::Filter::Paeth,
            png::Filter::Adaptive,
        ];
        // Wide enough that the inflate buffer is compacted several times.
        let (w, h) = (3001, 40);
        for (color, channels) in layouts {
            // Smooth enough to compress, noisy enough to exercise every predictor.
            let pixels: Vec<u8> = noise(w as usize * h as usize * channels, 7)
                .iter()
                .enumerate()
                .map(|(i, n)| (i / 7 % 200) as u8 + n % 8)
                .collect();
            for filter in filters {
                let data = encode(&pixels, w, h, color, filter);
                let got = rows(&data, w, h, channels).unwrap();
                assert!(got == pixels, "{color:?} {filter:?}");
            }
        }
    }

    #[test]
    fn damage_gives_up() {
        let pixels = noise(64 * 64 * 3, 3);
        let data = encode(&pixels, 64, 64, png::ColorType::Rgb, png::Filter::Paeth);
        assert!(rows(&data, 64, 64, 3).is_some());
        // A flipped byte inside the image data: the chunk's CRC no longer matches.
        let idat = data.windows(4).position(|w| w == b"IDAT").unwrap();
        let mut bad = data.clone();
        bad[idat + 20] ^= 1;
        assert!(rows(&bad, 64, 64, 3).is_none());
        // Cut short, and cut before the image data.
        assert!(rows(&data[..data.len() / 2], 64, 64, 3).is_none());
        assert!(rows(&data[..idat], 64, 64, 3).is_none());
    }
}
