//! What thumbd's integration tests share: the committed corpus and its expectations, the size
//! rule computed independently of the engine, an independent decoder (the `image` crate) for the
//! engine's outputs, and PSNR as `../shared/bench/quality_judge.py` computes it.
//!
//! The test binaries live in `tests/tests/`: `engine.rs` (corpus, orientation, quality, plan
//! properties, bad input), `alloc.rs` (hostile dimensions refused before allocation, with a
//! counting global allocator) and `cli.rs` (the `thumbd thumbnail` contract).

use std::path::{Path, PathBuf};

use image::RgbImage;

/// The repository root (this crate sits in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `corpus/` at the repository root.
pub fn corpus_dir() -> PathBuf {
    repo_root().join("corpus")
}

/// `tests/fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `tests/reference/`: vipsthumbnail's thumbnails of the corpus (see `tests/make-references`).
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reference")
}

/// The test-facing outcome class of a corpus file (`class` column of `corpus/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A thumbnail.
    Ok,
    /// A thumbnail with the EXIF orientation applied.
    Rotate,
    /// A thumbnail or a clean error.
    Either,
    /// A partial thumbnail or a clean error.
    Trunc,
    /// A clean error is expected, but lenient decoders render these.
    ErrorLenient,
    /// A clean error.
    Error,
}

impl Class {
    fn parse(s: &str) -> Option<Class> {
        Some(match s {
            "OK" => Class::Ok,
            "ROTATE" => Class::Rotate,
            "EITHER" => Class::Either,
            "TRUNC" => Class::Trunc,
            "ERROR*" => Class::ErrorLenient,
            "ERROR" => Class::Error,
            _ => return None,
        })
    }
}

/// One row of `corpus/MANIFEST.tsv` plus its class from `corpus/README.md`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name inside `corpus/`.
    pub file: String,
    /// Size in bytes, per the manifest.
    pub bytes: u64,
    /// `JPEG`, `PNG` or `GIF`.
    pub format: String,
    /// Stored width (empty in the manifest for `pil_broken.png`).
    pub width: Option<u32>,
    /// Stored height.
    pub height: Option<u32>,
    /// Container facts.
    pub notes: String,
    /// Free-text expectation.
    pub expect: String,
    /// Test-facing class.
    pub class: Class,
    /// EXIF orientation from the notes (`orientation=N`), 1 when absent or unreadable.
    pub orientation: u32,
}

impl Entry {
    /// Path of the file.
    pub fn path(&self) -> PathBuf {
        corpus_dir().join(&self.file)
    }

    /// File name without the extension (the `%s` of vipsthumbnail's `-o`).
    pub fn stem(&self) -> &str {
        Path::new(&self.file)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file name")
    }

    /// Whether the manifest demands a thumbnail without hedging: quality_judge.py's rule
    /// (`expect` starts with `ok` and says none of ` or `, `if `, `else`, `optional`).
    pub fn strict_ok(&self) -> bool {
        let e = self.expect.to_lowercase();
        e.starts_with("ok")
            && ![" or ", "if ", "else", "optional"]
                .iter()
                .any(|k| e.contains(k))
    }

    /// vipsthumbnail's stored thumbnail of this file in `variant` (`plain` or `srgb`, see
    /// `tests/make-references`), if vipsthumbnail made one.
    pub fn vips_reference(&self, variant: &str) -> Option<image::RgbImage> {
        let path = reference_dir()
            .join(variant)
            .join(format!("{}.jpg", self.stem()));
        let data = std::fs::read(path).ok()?;
        Some(decode(&data).to_rgb8())
    }

    /// CMYK or YCCK source: profile choices differ between tools, so the PSNR floor is lower.
    pub fn is_cmyk(&self) -> bool {
        self.notes.contains("CMYK") || self.notes.contains("YCCK")
    }

    /// Declared pixel count, if the manifest knows the dimensions.
    pub fn pixels(&self) -> Option<u64> {
        Some(u64::from(self.width?) * u64::from(self.height?))
    }

    /// Whether a good thumbnail is expected (classes OK and ROTATE).
    pub fn must_decode(&self) -> bool {
        matches!(self.class, Class::Ok | Class::Rotate)
    }
}

/// Reads `corpus/MANIFEST.tsv` (split on tabs exactly: some fields are empty) and joins each row
/// with its class from the table in `corpus/README.md`. Panics on any inconsistency, so a corpus
/// edit that forgets one of the two files fails loudly.
pub fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).expect("README.md");
    let classes: Vec<(String, Class)> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // "", file, fmt, bytes, size, class, edge case, ""
            let class = Class::parse(cells.get(5)?)?;
            Some((cells[1].trim_matches('`').to_string(), class))
        })
        .collect();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    assert_eq!(
        header,
        [
            "file", "bytes", "format", "width", "height", "notes", "source", "license", "expect",
            "sha256"
        ],
        "MANIFEST.tsv columns changed"
    );
    let entries: Vec<Entry> = lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                f.len(),
                10,
                "MANIFEST.tsv row has {} fields: {line}",
                f.len()
            );
            let class = classes
                .iter()
                .find(|(name, _)| name == f[0])
                .unwrap_or_else(|| panic!("{} has no class in corpus/README.md", f[0]))
                .1;
            Entry {
                file: f[0].to_string(),
                bytes: f[1].parse().expect("bytes"),
                format: f[2].to_string(),
                width: f[3].parse().ok(),
                height: f[4].parse().ok(),
                notes: f[5].to_string(),
                expect: f[8].to_string(),
                class,
                orientation: orientation_from_notes(f[5]),
            }
        })
        .collect();
    assert_eq!(
        entries.len(),
        classes.len(),
        "MANIFEST.tsv and the README table list different files"
    );
    entries
}

fn orientation_from_notes(notes: &str) -> u32 {
    notes
        .split([',', ';'])
        .filter_map(|part| part.trim().strip_prefix("orientation="))
        .find_map(|v| v.parse().ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1)
}

/// The size rule, written independently of `thumbd_engine::plan`: fit inside a
/// `size`×`size` box, never enlarge, longest side = min(size, longest source side), the other
/// side rounded to nearest and at least 1.
pub fn expected_inside(width: u32, height: u32, size: u32) -> (u32, u32) {
    if width <= size && height <= size {
        return (width, height);
    }
    let scale = f64::from(size) / f64::from(width.max(height));
    let short = |side: u32| ((f64::from(side) * scale).round() as u32).max(1);
    if width >= height {
        (size, short(height))
    } else {
        (short(width), size)
    }
}

/// Cover: each side min(size, source side).
pub fn expected_cover(width: u32, height: u32, size: u32) -> (u32, u32) {
    (width.min(size), height.min(size))
}

/// Swaps for EXIF orientations 5–8 (the upright image is transposed).
pub fn oriented((w, h): (u32, u32), orientation: u32) -> (u32, u32) {
    if (5..=8).contains(&orientation) {
        (h, w)
    } else {
        (w, h)
    }
}

/// A committed progressive JPEG that passes the engine's header check
/// (`stages::jpeg_reduced_decode_expected`) and is then declined by its reduced decoder at
/// decode time: `lomiri16_Wine_by_Jakkub_Mede.jpg` (2560×3837) with its first scan, a DC first
/// pass, repeated right after itself. The header check does not judge the order of progressive
/// scans; the reduced decoder refuses a DC first pass twice, so the engine falls back to a
/// full-size decode (zune-jpeg decodes the repeat as the same coefficients again).
pub fn jpeg_declined_at_decode_time() -> Vec<u8> {
    let data = std::fs::read(corpus_dir().join("lomiri16_Wine_by_Jakkub_Mede.jpg"))
        .expect("committed corpus file");
    // Walk the marker segments to the first SOS (FF DA).
    let mut start = 2;
    while data[start + 1] != 0xDA {
        start += 2 + usize::from(u16::from_be_bytes([data[start + 2], data[start + 3]]));
    }
    // The scan header, then entropy-coded data up to the next marker that is not a stuffed
    // byte (FF 00) or a restart marker.
    let mut end = start + 2 + usize::from(u16::from_be_bytes([data[start + 2], data[start + 3]]));
    while data[end] != 0xFF || matches!(data[end + 1], 0x00 | 0xD0..=0xD7) {
        end += 1;
    }
    [&data[..end], &data[start..end], &data[end..]].concat()
}

/// Decodes an encoded image independently of the engine's own decoders: JPEG with
/// `jpeg-decoder` (not zune-jpeg, which the engine uses and which misreads non-interleaved
/// baseline JPEG, see `corpus::jpeg_output_decodes_with_zune_jpeg`), PNG and WebP with the
/// `image` crate.
pub fn decode(data: &[u8]) -> image::DynamicImage {
    if data.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(data).unwrap_or_else(|e| panic!("JPEG does not decode: {e}"));
    }
    image::load_from_memory(data).unwrap_or_else(|e| panic!("output does not decode: {e}"))
}

/// JPEG through `jpeg-decoder`, as 8-bit gray or RGB.
pub fn decode_jpeg(data: &[u8]) -> Result<image::DynamicImage, String> {
    let mut decoder = jpeg_decoder::Decoder::new(data);
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no image info")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageLuma8)
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            image::RgbImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageRgb8)
        }
        other => return Err(format!("unexpected pixel format {other:?}")),
    };
    image.ok_or_else(|| "pixel buffer of the wrong size".into())
}

/// PSNR in dB over the RGB planes of two same-size images (99 when identical, as
/// quality_judge.py reports it).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "psnr needs equal sizes");
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = sum / a.as_raw().len() as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Area-average (box) resize to `w`×`h` with fractional pixel coverage, as Pillow's
/// `Image.BOX` does; used to compare thumbnails whose sizes differ by a pixel.
pub fn box_resize(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let weights = |from: u32, to: u32| -> Vec<Vec<(usize, f64)>> {
        let scale = f64::from(from) / f64::from(to);
        (0..to)
            .map(|i| {
                let (lo, hi) = (f64::from(i) * scale, f64::from(i + 1) * scale);
                let mut taps = Vec::new();
                let mut x = lo.floor() as usize;
                while (x as f64) < hi && x < from as usize {
                    let cover = hi.min(x as f64 + 1.0) - lo.max(x as f64);
                    if cover > 0.0 {
                        taps.push((x, cover / scale));
                    }
                    x += 1;
                }
                taps
            })
            .collect()
    };
    let (wx, wy) = (weights(src.width(), w), weights(src.height(), h));
    let mut out = RgbImage::new(w, h);
    for (oy, ty) in wy.iter().enumerate() {
        for (ox, tx) in wx.iter().enumerate() {
            let mut acc = [0.0f64; 3];
            for &(sy, fy) in ty {
                for &(sx, fx) in tx {
                    let p = src.get_pixel(sx as u32, sy as u32).0;
                    for c in 0..3 {
                        acc[c] += f64::from(p[c]) * fx * fy;
                    }
                }
            }
            out.put_pixel(
                ox as u32,
                oy as u32,
                image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    out
}

/// quality_judge.py's comparison: PSNR at full size when the sizes match, else (sizes 1 px apart)
/// at 1/8 of the smaller size after a box filter. Returns the PSNR and the floor that applies.
pub fn compare_to_reference(ours: &RgbImage, reference: &RgbImage, cmyk: bool) -> (f64, f64) {
    let same = ours.dimensions() == reference.dimensions();
    let value = if same {
        psnr(ours, reference)
    } else {
        let w = (ours.width().min(reference.width()) / 8).max(1);
        let h = (ours.height().min(reference.height()) / 8).max(1);
        psnr(&box_resize(ours, w, h), &box_resize(reference, w, h))
    };
    let floor = if cmyk {
        20.0
    } else if same {
        30.0
    } else {
        28.0
    };
    (value, floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule_examples() {
        assert_eq!(expected_inside(4352, 2448, 256), (256, 144));
        assert_eq!(expected_inside(1, 118, 256), (1, 118));
        assert_eq!(expected_inside(6, 1024, 256), (2, 256));
        assert_eq!(expected_inside(100, 2, 256), (100, 2));
        assert_eq!(expected_inside(50000, 1, 256), (256, 1));
        assert_eq!(oriented((2, 1), 8), (1, 2));
    }

    #[test]
    fn psnr_and_box() {
        let a = RgbImage::from_pixel(16, 16, image::Rgb([100, 100, 100]));
        let mut b = a.clone();
        assert_eq!(psnr(&a, &b), 99.0);
        b.put_pixel(0, 0, image::Rgb([110, 110, 110]));
        // mse = 100 * 3 / 768
        let expected = 10.0 * (255.0f64 * 255.0 / (300.0 / 768.0)).log10();
        assert!((psnr(&a, &b) - expected).abs() < 1e-9);
        // A flat image stays flat at any box size, fractional coverage included.
        let small = box_resize(&a, 5, 3);
        assert!(small.pixels().all(|p| p.0 == [100, 100, 100]));
    }

    #[test]
    fn notes_orientation() {
        assert_eq!(orientation_from_notes("baseline, orientation=6, 0.0MP"), 6);
        assert_eq!(orientation_from_notes("orientation=bad-exif, 0.3MP"), 1);
        assert_eq!(orientation_from_notes("baseline"), 1);
    }
}
