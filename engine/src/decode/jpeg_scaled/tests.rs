//! Oracle tests: the reduced decode against the area average of zune-jpeg's full decode of the
//! same component planes (no colour conversion on either side), on the committed corpus and on
//! synthetic JPEGs from jpeg-encoder.
//!
//! The oracle for a reduced component plane is the mean of zune-jpeg's full-resolution plane
//! over the cell each reduced sample covers (`scale` × `scale` output pixels, or more for
//! subsampled chroma that the IDCT did not fully upsample), over
//! the cells that lie wholly inside the image: a partial cell at the right or bottom edge is the
//! mean over the whole DCT cell, padding included, as in libjpeg's scaled output.
//!
//! Tolerances, in levels of 0..=255, per component plane:
//! * components at full resolution (luma, gray, 4:4:4 chroma, CMYK): within ±[`FULL_RES_MAX`]
//!   (measured ≤ 0.75 on the corpus: rounding only) on every cell where the full decode did not
//!   clip, and a mean absolute difference ≤ [`FULL_RES_MEAN`] over all cells. Where ringing
//!   pushed pixels past 0 or 255 the full decode clips before averaging and this one after, so
//!   those cells differ by design;
//! * subsampled chroma: within ±[`CHROMA_MAX`], mean ≤ [`CHROMA_MEAN`]. zune-jpeg's plane is
//!   upsampled (triangle filter) before we can average it, which shifts each cell's mean by a
//!   fraction of the local second difference; so the bound is looser, and looser still for
//!   RGB-coded files whose subsampled G plane carries luma detail.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::markers::{self, Frame};
use super::{check_headers, decode, decode_planes, ColorKind, ScaledError};

const FULL_RES_MAX: f64 = 2.0;
const FULL_RES_MEAN: f64 = 0.6;
/// Planes with fewer whole cells are held to the per-cell bounds only.
const MIN_CELLS_FOR_MEAN: usize = 16;
const CHROMA_MEAN: f64 = 2.5;
const CHROMA_MAX: f64 = 12.0;
const RGB_SUBSAMPLED_MEAN: f64 = 4.0;
const RGB_SUBSAMPLED_MAX: f64 = 32.0;

struct Full {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
    kind: ColorKind,
    /// Three components coded as R, G, B (no YCbCr transform).
    rgb_coded: bool,
}

/// zune-jpeg's full decode, planes as stored (YCbCr not converted). `None` when it fails (or
/// panics: zune-jpeg 0.5.15's AVX2 IDCT does on some layouts jpeg-encoder writes).
fn zune_full(data: &[u8]) -> Option<Full> {
    std::panic::catch_unwind(|| zune_full_inner(data))
        .ok()
        .flatten()
}

/// Whether zune-jpeg's strict mode rejects the file's data.
fn zune_strict_refuses(data: &[u8]) -> bool {
    let options = DecoderOptions::default()
        .set_max_width(65535)
        .set_max_height(65535)
        .set_strict_mode(true);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(data), options);
    std::panic::catch_unwind(move || d.decode().is_err()).unwrap_or(true)
}

fn zune_full_inner(data: &[u8]) -> Option<Full> {
    let options = DecoderOptions::default()
        .set_max_width(65535)
        .set_max_height(65535)
        .set_strict_mode(false);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(data), options);
    d.decode_headers().ok()?;
    let input = d.input_colorspace()?;
    let kind = match input {
        ColorSpace::Luma => ColorKind::Gray,
        ColorSpace::YCbCr | ColorSpace::RGB => ColorKind::Rgb,
        ColorSpace::CMYK | ColorSpace::YCCK => ColorKind::Raw4,
        _ => return None,
    };
    d.set_options(options.jpeg_set_out_colorspace(input));
    let pixels = d.decode().ok()?;
    let (width, height) = d.dimensions()?;
    let channels = pixels.len() / (width * height);
    Some(Full {
        width,
        height,
        channels,
        data: pixels,
        kind,
        rgb_coded: input == ColorSpace::RGB,
    })
}

fn frame_of(data: &[u8], size: (usize, usize)) -> Option<Frame> {
    let mut pos = 2;
    while let Some((seg, next)) = markers::next_segment(data, pos) {
        if matches!(seg.marker, 0xC0..=0xC2) {
            return markers::parse_sof(seg.marker, seg.payload, size).ok();
        }
        pos = next;
    }
    None
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    /// Largest difference over cells where the full decode did not clip.
    max: f64,
    /// Mean absolute difference over all whole cells.
    mean: f64,
    /// Whole cells compared.
    cells: usize,
}

/// Compares each reduced component plane with the area average of zune-jpeg's full decode of
/// that component over the cell one reduced sample covers: `scale` pixels of the component,
/// i.e. `scale`×(hmax/h) output pixels across. Only cells wholly inside the image count: a
/// partial cell at the right or bottom edge is the mean over the whole DCT cell, padding
/// included, as in libjpeg's scaled output. Cells where the full decode clipped a pixel to 0
/// or 255 are left out of `max` (the full decode clips before averaging, this one after).
fn compare_planes(data: &[u8], full: &Full, scale: u32) -> Result<Option<Vec<Stats>>, ScaledError> {
    let size = (full.width as u32, full.height as u32);
    let (frame, planes) = decode_planes(data, size, scale)?;
    let mut out = Vec::new();
    for (c, (comp, plane)) in frame.comps.iter().zip(&planes).enumerate() {
        // Output pixels one reduced sample covers (its IDCT may have upsampled already).
        let (cw, ch) = (
            8 * frame.hmax / comp.h / plane.nx,
            8 * frame.vmax / comp.v / plane.ny,
        );
        let (nx, ny) = (full.width / cw, full.height / ch);
        // A 2× subsampled component decoded at one sample per source sample (the 8×8 IDCT of
        // a chroma block at 1/2) is compared as the full decode sees it: that decode's
        // triangle upsampling, averaged over the two output pixels of a sample, is the
        // [1, 6, 1]/8 filter of the samples along that axis.
        let native = |ratio: usize, n: usize| ratio == 2 && n == 8;
        let smooth_x = native(frame.hmax / comp.h, plane.nx);
        let smooth_y = native(frame.vmax / comp.v, plane.ny);
        let sample = |x: usize, y: usize| {
            let at = |x: usize, y: usize| f64::from(plane.data[y * plane.stride + x]);
            let taps = |smooth: bool, i: usize, last: usize| {
                if smooth {
                    [
                        (i.saturating_sub(1), 0.125),
                        (i, 0.75),
                        ((i + 1).min(last), 0.125),
                    ]
                } else {
                    [(i, 1.0), (i, 0.0), (i, 0.0)]
                }
            };
            let (wide, high) = (full.width.div_ceil(cw), full.height.div_ceil(ch));
            let mut v = 0.0;
            for (sy, wy) in taps(smooth_y, y, high - 1) {
                for (sx, wx) in taps(smooth_x, x, wide - 1) {
                    v += wx * wy * at(sx, sy);
                }
            }
            v
        };
        let (mut max, mut sum) = (0f64, 0f64);
        for y in 0..ny {
            for x in 0..nx {
                let (mut total, mut clipped) = (0u64, false);
                for fy in y * ch..(y + 1) * ch {
                    for fx in x * cw..(x + 1) * cw {
                        let v = full.data[(fy * full.width + fx) * full.channels + c];
                        clipped |= v == 0 || v == 255;
                        total += u64::from(v);
                    }
                }
                let oracle = total as f64 / (cw * ch) as f64;
                let d = (sample(x, y) - oracle).abs();
                sum += d;
                if !clipped {
                    max = max.max(d);
                }
            }
        }
        out.push(Stats {
            max,
            mean: sum / (nx * ny).max(1) as f64,
            cells: nx * ny,
        });
    }
    Ok(Some(out))
}

/// Checks one file at one scale; `Ok(None)` when the reduced decoder declined it.
fn check(name: &str, data: &[u8], full: &Full, scale: u32) -> Result<Option<Vec<Stats>>, String> {
    let size = (full.width as u32, full.height as u32);
    let img = match decode(data, size, scale, full.kind) {
        Ok(img) => img,
        Err(e) => {
            eprintln!("{name} 1/{scale}: declined: {e}");
            return Ok(None);
        }
    };
    let k = scale as usize;
    let geometry = (
        full.width.div_ceil(k),
        full.height.div_ceil(k),
        full.channels,
    );
    if (img.width, img.height, img.channels) != geometry {
        return Err(format!("{name} 1/{scale}: wrong geometry"));
    }
    let stats = compare_planes(data, full, scale)
        .map_err(|e| format!("{name}: planes failed after the image decoded: {e}"))?
        .ok_or(format!("{name}: no planes"))?;
    let frame = frame_of(data, (full.width, full.height)).ok_or(format!("{name}: no frame"))?;
    for (c, s) in stats.iter().enumerate() {
        let comp = &frame.comps[c];
        let subsampled = comp.h < frame.hmax || comp.v < frame.vmax;
        // A mean over a handful of cells is one cell's rounding, not a bias: below
        // MIN_CELLS_FOR_MEAN only the per-cell bound applies (a 4×8 image has 2 cells at 1/4,
        // each within the ±2 bound at 0.75).
        let mean_ok = |bound: f64| s.mean <= bound || s.cells < MIN_CELLS_FOR_MEAN;
        let ok = if subsampled && full.rgb_coded {
            s.max <= RGB_SUBSAMPLED_MAX && mean_ok(RGB_SUBSAMPLED_MEAN)
        } else if subsampled {
            s.max <= CHROMA_MAX && mean_ok(CHROMA_MEAN)
        } else {
            s.max <= FULL_RES_MAX && mean_ok(FULL_RES_MEAN)
        };
        if !ok {
            return Err(format!(
                "{name} 1/{scale} channel {c} (subsampled: {subsampled}): max {:.2} mean {:.3}",
                s.max, s.mean
            ));
        }
    }
    Ok(Some(stats))
}

fn corpus_jpegs() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("corpus manifest");
    manifest
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            // Files expected to fail (truncated, refused) have no reference picture.
            let good = cols.get(8).is_some_and(|e| e.starts_with("ok"));
            (cols.get(2) == Some(&"JPEG") && good).then(|| cols[0].to_string())
        })
        .filter_map(|name| {
            let data = std::fs::read(dir.join(&name)).ok()?;
            Some((name, data))
        })
        .collect()
}

#[test]
fn corpus_matches_area_average_of_full_decode() {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut declined = Vec::new();
    let mut damaged = Vec::new();
    for (name, data) in corpus_jpegs() {
        // Refused by the engine's limits before decoding: nothing to compare.
        if data.len() > 3 << 20 || name.contains("bomb") || name.contains("sof_lie") {
            continue;
        }
        let Some(full) = zune_full(&data) else {
            continue;
        };
        // Damaged entropy data (zune-jpeg's strict mode refuses it): zune's lenient picture
        // is its own guess, not a reference (it stops where libjpeg resynchronises, and it
        // decodes a garbled band differently). Those files are held to vipsthumbnail's
        // pictures in the tests crate instead.
        // Its entropy data ends early (4 KiB zeroed mid-file desynchronise it): zune-jpeg
        // decodes the rest from zero bits, libjpeg (and this decoder) leave it grey.
        let ends_early = name.starts_with("derived_zeroed4k");
        if zune_strict_refuses(&data) || ends_early {
            damaged.push(name);
            continue;
        }
        if full.width * full.height > 40_000_000 {
            continue;
        }
        for scale in [8, 4, 2] {
            match check(&name, &data, &full, scale) {
                Ok(Some(stats)) => {
                    checked += 1;
                    let worst = stats.iter().map(|s| s.max).fold(0.0, f64::max);
                    let mean = stats.iter().map(|s| s.mean).fold(0.0, f64::max);
                    eprintln!("{name}\t1/{scale}\tmax {worst:.2}\tmean {mean:.3}");
                }
                Ok(None) => declined.push(format!("{name} 1/{scale}")),
                Err(e) => failures.push(e),
            }
        }
    }
    eprintln!("checked {checked}; declined (full decoder used): {declined:?}");
    eprintln!("damaged, no zune-jpeg reference: {damaged:?}");
    assert!(
        damaged.len() <= 3,
        "more damaged files than expected: {damaged:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 90, "only {checked} file×scale checks ran");
}

/// A photo-like synthetic picture: sharp edges shared by all channels (luma detail, every
/// frequency band carries data) over smooth per-channel ramps (chroma that varies slowly, as
/// in photographs, where subsampling is used).
fn synthetic(width: usize, height: usize, channels: usize, seed: u32) -> Vec<u8> {
    let s = seed as usize;
    let mut out = Vec::with_capacity(width * height * channels);
    for y in 0..height {
        for x in 0..width {
            let edge = if (x / (5 + s % 11) + y / (7 + s % 5)).is_multiple_of(2) {
                50.0
            } else {
                0.0
            };
            let fine = ((x * (3 + s % 5) + y * (2 + s % 3)) % 17) as f64;
            for c in 0..channels {
                // A triangle wave: smooth, no jumps.
                let t = (x + c * y + 31 * c + s % 23) % 422;
                let ramp = t.min(422 - t) as f64 / 211.0;
                out.push((30.0 + 140.0 * ramp + edge + fine) as u8);
            }
        }
    }
    out
}

/// What a synthetic test JPEG looks like and how jpeg-encoder writes it.
#[derive(Debug, Clone, Copy)]
struct Synth {
    width: u16,
    height: u16,
    color: jpeg_encoder::ColorType,
    sampling: jpeg_encoder::SamplingFactor,
    restart: u16,
    progressive: bool,
    quality: u8,
    seed: u32,
}

fn encode_synthetic(p: Synth) -> Vec<u8> {
    let channels = match p.color {
        jpeg_encoder::ColorType::Luma => 1,
        jpeg_encoder::ColorType::Cmyk | jpeg_encoder::ColorType::CmykAsYcck => 4,
        _ => 3,
    };
    let pixels = synthetic(
        usize::from(p.width),
        usize::from(p.height),
        channels,
        p.seed,
    );
    let mut jpeg = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, p.quality);
    enc.set_sampling_factor(p.sampling);
    enc.set_restart_interval(p.restart);
    enc.set_progressive(p.progressive);
    enc.encode(&pixels, p.width, p.height, p.color)
        .expect("encode");
    jpeg
}

mod properties {
    use jpeg_encoder::{ColorType, SamplingFactor};
    use proptest::prelude::*;

    use super::*;

    const SAMPLINGS: [SamplingFactor; 8] = [
        SamplingFactor::R_4_4_4,
        SamplingFactor::R_4_4_0,
        SamplingFactor::R_4_4_1,
        SamplingFactor::R_4_2_2,
        SamplingFactor::R_4_2_0,
        SamplingFactor::R_4_2_1,
        SamplingFactor::R_4_1_1,
        SamplingFactor::R_4_1_0,
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Every subsampling, restart interval, coding and scale matches the oracle.
        #[test]
        fn synthetic_jpegs_match_the_oracle(
            width in 1u16..180,
            height in 1u16..140,
            sampling in 0usize..SAMPLINGS.len(),
            color in 0usize..4,
            restart in prop_oneof![Just(0u16), 1u16..5, 5u16..40],
            progressive in any::<bool>(),
            quality in 40u8..98,
            seed in any::<u32>(),
        ) {
            let color = [ColorType::Rgb, ColorType::Luma, ColorType::Cmyk, ColorType::CmykAsYcck][color];
            // zune-jpeg 0.5.15 decodes only the first block row of each MCU of images with a
            // vertical sampling factor of 4 (the rest stays 0), writes zeros into subsampled
            // four-component images, and panics on a few layouts; there the oracle is wrong, so
            // only decode and check the geometry. (The corpus's libjpeg-made 4:1:1 and 4:1:0
            // files, h = 4, pass the oracle; jpeg-encoder h = 4 files do not.) Real CMYK files are
            // 4:4:4.
            let factors = SAMPLINGS[sampling] as u8;
            let (h, v) = ((factors >> 4) & 7, factors & 15);
            let four = matches!(color, ColorType::Cmyk | ColorType::CmykAsYcck);
            let oracle_ok = if four { (h, v) == (1, 1) } else { v < 4 && h < 4 };
            let jpeg = encode_synthetic(Synth {
                width, height, color, sampling: SAMPLINGS[sampling], restart, progressive, quality, seed,
            });
            // zune-jpeg declines some unusual sampling layouts jpeg-encoder writes: no oracle.
            let Some(full) = zune_full(&jpeg) else {
                return Err(TestCaseError::reject("zune-jpeg cannot decode this layout"));
            };
            if !oracle_ok {
                for scale in [8u32, 4, 2] {
                    let img = decode(&jpeg, (u32::from(width), u32::from(height)), scale, full.kind)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let k = scale as usize;
                    prop_assert_eq!(
                        (img.width, img.height),
                        (full.width.div_ceil(k), full.height.div_ceil(k))
                    );
                }
                return Ok(());
            }
            for scale in [8, 4, 2] {
                let checked = check("synthetic", &jpeg, &full, scale)
                    .map_err(TestCaseError::fail)?;
                prop_assert!(checked.is_some(), "reduced decoder declined a valid file at 1/{scale}");
            }
        }

        /// Cut anywhere, a file never panics the reduced decoder, and corrupting bytes of the
        /// entropy-coded data never does either.
        #[test]
        fn truncated_and_corrupted_files_never_panic(
            cut in 0.0f64..1.0,
            flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
            progressive in any::<bool>(),
            restart in prop_oneof![Just(0u16), 1u16..8],
        ) {
            let jpeg = encode_synthetic(Synth {
                width: 97,
                height: 61,
                color: ColorType::Rgb,
                sampling: SamplingFactor::R_4_2_0,
                restart,
                progressive,
                quality: 85,
                seed: 7,
            });
            let mut bad = jpeg[..(jpeg.len() as f64 * cut) as usize].to_vec();
            let len = bad.len();
            for (at, value) in flips {
                if len > 0 {
                    bad[((len - 1) as f64 * at) as usize] = value;
                }
            }
            for scale in [8, 4, 2] {
                let _ = decode(&bad, (97, 61), scale, ColorKind::YCbCr);
            }
        }
    }
}

/// A progressive file cut right after its DC scans still decodes at 1/8, and gives the same
/// picture as the whole file.
#[test]
fn truncated_progressive_after_dc_scans_still_decodes_at_one_eighth() {
    let jpeg = encode_synthetic(Synth {
        width: 300,
        height: 200,
        color: jpeg_encoder::ColorType::Rgb,
        sampling: jpeg_encoder::SamplingFactor::R_4_2_0,
        restart: 0,
        progressive: true,
        quality: 90,
        seed: 3,
    });
    let whole = decode(&jpeg, (300, 200), 8, ColorKind::YCbCr).expect("whole file");
    // Find the first AC scan (SOS with Ss > 0) and cut the file in the middle of it.
    let mut pos = 2;
    let mut cut = None;
    while let Some((seg, next)) = markers::next_segment(&jpeg, pos) {
        if seg.marker == 0xDA {
            let n = usize::from(seg.payload[0]);
            if seg.payload[1 + 2 * n] > 0 {
                cut = Some(next + 10);
                break;
            }
            pos = markers::skip_entropy_data(&jpeg, next);
            continue;
        }
        pos = next;
    }
    let cut = cut.expect("jpeg-encoder writes AC scans");
    let part = decode(&jpeg[..cut], (300, 200), 8, ColorKind::YCbCr).expect("DC scans complete");
    assert_eq!(part, whole);
    // Cut before the first scan: declined (the full decoder then decides).
    let first_scan = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    assert!(decode(&jpeg[..first_scan], (300, 200), 8, ColorKind::YCbCr).is_err());
    // The header check tells the two cuts apart without decoding.
    assert_eq!(check_headers(&jpeg, (300, 200)), Ok(()));
    assert_eq!(check_headers(&jpeg[..cut], (300, 200)), Ok(()));
    assert_eq!(
        check_headers(&jpeg[..first_scan], (300, 200)),
        Err(ScaledError::Truncated)
    );
    // jpeg-encoder writes one DC scan per component: cut inside the first, the others were
    // never scanned.
    let second_scan = first_scan
        + 2
        + jpeg[first_scan + 2..]
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .unwrap();
    assert_eq!(
        check_headers(&jpeg[..second_scan - 10], (300, 200)),
        Err(ScaledError::Truncated)
    );
}

/// Every committed corpus JPEG (refused and truncated ones included) the header check passes
/// decodes in the reduced decoder at every scale: the check never predicts the reduced decode
/// for a file that then falls back to the full decode (whose memory the worker would not have
/// reserved). Files it declines but the decoder takes are listed, not failed: the estimate is
/// only conservative there.
#[test]
fn header_check_passes_only_files_the_reduced_decoder_takes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("corpus manifest");
    let (mut wrong, mut conservative, mut passed) = (Vec::new(), Vec::new(), 0);
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.get(2) != Some(&"JPEG") {
            continue;
        }
        let data = std::fs::read(dir.join(cols[0])).expect("corpus file");
        let Ok(info) = crate::probe::probe(&data, &crate::Limits::default()) else {
            continue;
        };
        let expect = (info.width, info.height);
        let checked = check_headers(&data, expect);
        passed += usize::from(checked.is_ok());
        for scale in [8, 4, 2] {
            match (&checked, decode_planes(&data, expect, scale)) {
                (Ok(()), Err(e)) => wrong.push(format!("{} at 1/{scale}: {e}", cols[0])),
                (Err(e), Ok(_)) => conservative.push(format!("{} at 1/{scale}: {e}", cols[0])),
                _ => {}
            }
        }
    }
    eprintln!("declined by the check, decoded anyway: {conservative:?}");
    assert!(passed >= 40, "only {passed} corpus JPEGs passed the check");
    assert!(
        wrong.is_empty(),
        "passed the check, declined by the decoder: {wrong:?}"
    );
}

/// A file cut inside its scan decodes as libjpeg renders it: the rows before the cut as in the
/// whole file, the rest uniform grey (libjpeg leaves blocks without data all-zero). A
/// progressive file cut inside a DC scan gets the same: jpeg-encoder writes one DC scan per
/// component, so the progressive case is grey-scale (a colour file cut in its first DC scan
/// has components that were never scanned, and is declined). With restart markers, no marker
/// follows the cut, so nothing resynchronises and the rest is grey as well.
#[test]
fn truncated_file_is_grey_below_the_cut() {
    use jpeg_encoder::ColorType;
    let cases = [
        (false, 8, 0),
        (false, 4, 0),
        (false, 2, 0),
        (true, 8, 0),
        (false, 8, 4),
        (false, 2, 4),
    ];
    for (progressive, scale, restart) in cases {
        let (color, kind, channels) = if progressive {
            (ColorType::Luma, ColorKind::Gray, 1)
        } else {
            (ColorType::Rgb, ColorKind::YCbCr, 3)
        };
        let jpeg = encode_synthetic(Synth {
            width: 320,
            height: 240,
            color,
            sampling: jpeg_encoder::SamplingFactor::R_4_2_0,
            restart,
            progressive,
            quality: 90,
            seed: 5,
        });
        let whole = decode(&jpeg, (320, 240), scale, kind).expect("whole file");
        // Sequential: the scan is most of the file, so half of it ends mid-scan. Progressive:
        // cut in the middle of the DC scan.
        let first_scan = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let cut = if progressive {
            let end = markers::skip_entropy_data(&jpeg, first_scan + 4);
            (first_scan + end) / 2
        } else {
            jpeg.len() / 2
        };
        let part = decode(&jpeg[..cut], (320, 240), scale, kind)
            .unwrap_or_else(|e| panic!("cut at {cut} (1/{scale}): {e}"));
        assert_eq!((part.width, part.height), (whole.width, whole.height));
        let row = whole.width * channels;
        let same = part
            .data
            .chunks_exact(row)
            .zip(whole.data.chunks_exact(row))
            .take_while(|(a, b)| a == b)
            .count();
        let grey = part
            .data
            .chunks_exact(row)
            .rev()
            .take_while(|r| r.iter().all(|&v| v == 128))
            .count();
        assert!(
            same >= part.height / 5 && grey >= part.height / 5 && same + grey <= part.height,
            "1/{scale} progressive {progressive} restart {restart}: {same} rows as the whole \
             file, {grey} grey, of {}",
            part.height
        );
    }
}

/// Timing and fallback report over a folder of JPEGs (default: the shared benchmark corpus):
/// `JPEG_SCALED_DIR=... cargo test --release -p thumbd-engine report -- --ignored --nocapture`.
#[test]
#[ignore = "a report, not a test: run by hand with --release"]
fn report_scaled_vs_full_decode() {
    let dir = std::env::var("JPEG_SCALED_DIR").unwrap_or("../../shared/corpus".into());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .collect();
    names.sort();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!("file\tMP\tscale\tfull_ms\tscaled_ms\tspeedup\tresult");
    for path in names {
        let data = std::fs::read(&path).expect("read");
        let Ok(info) = crate::probe::probe(&data, &crate::Limits::default()) else {
            continue;
        };
        let target = crate::resize::plan(info.width, info.height, 256, crate::Fit::Inside);
        let shrink = crate::resize::shrink_on_load_factor(info.width, info.height, target);
        let Some(scale) = [8u32, 4, 2].into_iter().find(|&k| k <= shrink) else {
            continue;
        };
        let time = |f: &dyn Fn()| {
            median(
                (0..3)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect(),
            )
        };
        let full_ms = time(&|| {
            let _ = zune_full(&data);
        });
        let kind = zune_full(&data).map(|f| f.kind).unwrap_or(ColorKind::YCbCr);
        let result = decode(&data, (info.width, info.height), scale, kind);
        let scaled_ms = time(&|| {
            let _ = decode(&data, (info.width, info.height), scale, kind);
        });
        eprintln!(
            "{}\t{:.1}\t1/{scale}\t{full_ms:.1}\t{scaled_ms:.1}\t{:.1}\t{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            info.pixels() as f64 / 1e6,
            full_ms / scaled_ms,
            result
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
        );
    }
}

/// Reads a file of `tests/fixtures/arith` (jpegtran recodings of corpus files; see its README)
/// or, with a `corpus/` prefix, of the corpus.
fn fixture(name: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = match name.strip_prefix("corpus/") {
        Some(corpus) => root.join("corpus").join(corpus),
        None => root.join("tests/fixtures/arith").join(name),
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The largest difference between the planes of two decodes of one image, or an error.
fn plane_difference(a: &[u8], b: &[u8], scale: u32) -> Result<u8, String> {
    let info = crate::probe::probe(a, &crate::Limits::default()).map_err(|e| e.to_string())?;
    let size = (info.width, info.height);
    let (_, pa) = decode_planes(a, size, scale).map_err(|e| format!("arithmetic: {e}"))?;
    let (_, pb) = decode_planes(b, size, scale).map_err(|e| format!("huffman: {e}"))?;
    if pa.len() != pb.len() {
        return Err("different component counts".into());
    }
    let mut max = 0;
    for (x, y) in pa.iter().zip(&pb) {
        if (x.nx, x.ny, x.data.len()) != (y.nx, y.ny, y.data.len()) {
            return Err("different plane layouts".into());
        }
        for (&p, &q) in x.data.iter().zip(&y.data) {
            max = max.max(p.abs_diff(q));
        }
    }
    Ok(max)
}

/// Arithmetic coding (T.81 annex D), sequential and progressive, with and without restart
/// markers, gray, YCbCr 4:2:0 and 4:4:4 and CMYK: jpegtran recodes the entropy coding
/// losslessly, so every scale must give the planes of the Huffman-coded twin. Progressive
/// twins take the same path (exactly the same planes); a sequential arithmetic block is
/// reduced whole where a Huffman one is summed as it is read, a float rounding apart (±1).
#[test]
fn arithmetic_coding_decodes_to_the_planes_of_its_huffman_twin() {
    let pairs = [
        (
            "hopper_arith_seq.jpg",
            "corpus/pil_hopper_orientation_6.jpg",
            1,
        ),
        ("hopper_arith_seq_rst.jpg", "hopper_seq_rst.jpg", 1),
        ("hopper_arith_prog.jpg", "hopper_prog.jpg", 0),
        ("hopper_arith_prog_rst.jpg", "hopper_prog_rst.jpg", 0),
        ("wizard_arith_prog.jpg", "corpus/imdoc_wizard.jpg", 0),
        ("grey_arith_prog.jpg", "grey_prog.jpg", 0),
        ("cmyk_arith_seq.jpg", "corpus/pil_pil_sample_cmyk.jpg", 1),
    ];
    let mut failures = Vec::new();
    for (arith, huffman, tolerance) in pairs {
        let (a, b) = (fixture(arith), fixture(huffman));
        for scale in [1, 2, 4, 8] {
            match plane_difference(&a, &b, scale) {
                Ok(max) if max <= tolerance => {}
                Ok(max) => failures.push(format!("{arith} 1/{scale}: differs by up to {max}")),
                Err(e) => failures.push(format!("{arith} 1/{scale}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Cut anywhere, an arithmetic-coded file decodes or is declined without panicking; cut before
/// its first AC scan, a progressive one still gives its whole 1/8 picture, only as coarse as
/// the DC refinement it lost (jpegtran's script refines the DC's last bit at the end).
#[test]
fn truncated_arithmetic_files_decode_or_decline() {
    for name in [
        "hopper_arith_seq_rst.jpg",
        "hopper_arith_prog.jpg",
        "wizard_arith_prog.jpg",
    ] {
        let data = fixture(name);
        let info = crate::probe::probe(&data, &crate::Limits::default()).unwrap();
        let size = (info.width, info.height);
        for cut in (2..data.len()).step_by(97) {
            for scale in [1, 8] {
                let _ = decode(&data[..cut], size, scale, ColorKind::YCbCr);
            }
        }
    }
    let data = fixture("hopper_arith_prog.jpg");
    let full = decode(&data, (128, 128), 8, ColorKind::YCbCr).unwrap();
    // The first AC scan's header: everything before it is the DC scans.
    let first_ac = data
        .windows(8)
        // FF DA, length, one component, its selector and tables, then Ss > 0.
        .position(|w| w[..2] == [0xFF, 0xDA] && w[4] == 1 && w[7] != 0)
        .expect("an AC scan");
    let cut = decode(&data[..first_ac], (128, 128), 8, ColorKind::YCbCr).unwrap();
    assert_eq!((cut.width, cut.height), (full.width, full.height));
    let max = cut
        .data
        .iter()
        .zip(&full.data)
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    assert!(
        max <= Some(8),
        "the cut file's 1/8 picture differs by up to {max:?}"
    );
}

/// A flipped bit anywhere in the entropy-coded data decodes (damage is rendered, never a panic
/// or a loop): the arithmetic decoder stops an interval at a model violation.
#[test]
fn damaged_arithmetic_data_never_panics() {
    let data = fixture("hopper_arith_prog_rst.jpg");
    let mut copy = data.clone();
    for at in (600..data.len() - 2).step_by(13) {
        copy[at] ^= 0x5A;
        for scale in [1, 4] {
            let _ = decode(&copy, (128, 128), scale, ColorKind::YCbCr);
        }
        copy[at] = data[at];
    }
}
