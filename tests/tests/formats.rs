//! Every format beyond JPEG and PNG, on the real files of `corpus/formats/` (issue 13).
//!
//! Each file must give what its manifest row says (`expect`: `ok`, `ok or error`, or `error:
//! …`), and a thumbnail must agree with vipsthumbnail's stored reference
//! (`tests/reference/formats/`, made by `tests/make-references formats`): the same size ±1 px and
//! PSNR ≥ 30 dB (20 dB for CMYK). A broken file must give a typed error, never a panic
//! (`internal`). One test per format, so each decoder's state reads on its own.

use std::path::{Path, PathBuf};

use thumbd_engine::{thumbnail, ErrorKind, Limits, Request};
use thumbd_tests::{compare_to_reference, expected_inside, repo_root};

/// One row of `corpus/formats/MANIFEST.tsv`.
struct Row {
    file: String,
    /// The manifest's format label: `WebP`, `GIF`, `TIFF`, `BMP`, `HEIF/HEIC`, `AVIF`, `AVIF
    /// sequence`.
    format: String,
    width: u32,
    height: u32,
    notes: String,
    expect: String,
}

impl Row {
    fn path(&self) -> PathBuf {
        formats_dir().join(&self.file)
    }

    fn stem(&self) -> &str {
        Path::new(&self.file)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file name")
    }

    /// vipsthumbnail's thumbnails of the file (`plain` and `srgb`), where it made them.
    fn references(&self) -> Vec<image::RgbImage> {
        ["plain", "srgb"]
            .iter()
            .filter_map(|variant| {
                let path = repo_root()
                    .join("tests/reference/formats")
                    .join(variant)
                    .join(format!("{}.jpg", self.stem()));
                let data = std::fs::read(path).ok()?;
                Some(thumbd_tests::decode(&data).to_rgb8())
            })
            .collect()
    }
}

fn formats_dir() -> PathBuf {
    repo_root().join("corpus/formats")
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(formats_dir().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    assert_eq!(
        header,
        [
            "file", "bytes", "format", "width", "height", "notes", "source", "license", "expect",
            "sha256"
        ],
        "corpus/formats/MANIFEST.tsv columns changed"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                f.len(),
                10,
                "MANIFEST.tsv row has {} fields: {line}",
                f.len()
            );
            Row {
                file: f[0].to_string(),
                format: f[2].to_string(),
                width: f[3].parse().expect("width"),
                height: f[4].parse().expect("height"),
                notes: f[5].to_string(),
                expect: f[8].to_string(),
            }
        })
        .collect()
}

/// What a file may give: a thumbnail (when `thumbnail`), or one of `errors`; an `ok` row allows
/// no error, an `error: …` row no thumbnail, an `ok or error` row either.
struct Expect {
    thumbnail: bool,
    errors: Vec<ErrorKind>,
}

fn expectation(row: &Row) -> Expect {
    use ErrorKind::*;
    let hostile = vec![Truncated, Corrupt, TooManyPixels];
    if row.expect.starts_with("ok or error") {
        let mut errors = hostile;
        // A valid image sequence that libheif 1.15 does not read (no still primary item).
        if row.format == "AVIF sequence" {
            errors.push(Unsupported);
        }
        Expect {
            thumbnail: true,
            errors,
        }
    } else if row.expect.starts_with("ok") {
        Expect {
            thumbnail: true,
            errors: vec![],
        }
    } else {
        assert!(
            row.expect.starts_with("error"),
            "{}: {}",
            row.file,
            row.expect
        );
        Expect {
            thumbnail: false,
            errors: hostile,
        }
    }
}

/// Runs every manifest row whose format label is in `labels` and fails with one line per file
/// that does not give what it should. `unsupported`: this build refuses the format as a whole
/// (HEIF without its feature), so every file must give `unsupported`.
fn check(labels: &[&str], unsupported: bool) {
    let rows: Vec<Row> = manifest()
        .into_iter()
        .filter(|r| labels.contains(&r.format.as_str()))
        .collect();
    assert!(!rows.is_empty(), "no {labels:?} files in corpus/formats");
    let mut failures = Vec::new();
    for row in &rows {
        let data = std::fs::read(row.path()).expect("corpus file");
        let result = thumbnail(&data, &Request::default(), &Limits::default());
        let expect = expectation(row);
        let thumb = match result {
            Err(e) if unsupported => {
                if e.kind() != ErrorKind::Unsupported {
                    failures.push(format!("{}: {e} (expected unsupported)", row.file));
                } else {
                    println!("        unsupported  {}", row.file);
                }
                continue;
            }
            Err(e) if expect.errors.contains(&e.kind()) => {
                println!("  {:>17}  {}: {e}", e.kind().as_str(), row.file);
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {} ({e})", row.file, e.kind().as_str()));
                continue;
            }
            Ok(_) if unsupported => {
                failures.push(format!("{}: a thumbnail, expected unsupported", row.file));
                continue;
            }
            Ok(_) if !expect.thumbnail => {
                failures.push(format!("{}: a thumbnail, expected an error", row.file));
                continue;
            }
            Ok(mut thumbs) => thumbd_tests::decode(&thumbs.remove(0).data).to_rgb8(),
        };
        let (w, h) = thumb.dimensions();
        let refs = row.references();
        let Some(reference) = refs.first() else {
            // vipsthumbnail refused it: the size rule on the manifest's dimensions, either way up
            // (the manifest gives stored sizes for some files and displayed sizes for others).
            let (ew, eh) = expected_inside(row.width, row.height, 256);
            if (w, h) != (ew, eh) && (w, h) != (eh, ew) {
                failures.push(format!("{}: {w}x{h}, expected {ew}x{eh}", row.file));
            }
            println!("  {:>17}  {} ({w}x{h}, no reference)", "ok", row.file);
            continue;
        };
        let (rw, rh) = reference.dimensions();
        if w.abs_diff(rw) > 1 || h.abs_diff(rh) > 1 {
            failures.push(format!("{}: {w}x{h}, vipsthumbnail {rw}x{rh}", row.file));
            continue;
        }
        let cmyk = row.notes.contains("CMYK");
        let (value, floor) = refs
            .iter()
            .map(|r| compare_to_reference(&thumb, r, cmyk))
            .fold(
                (f64::MIN, 0.0),
                |best, x| if x.0 > best.0 { x } else { best },
            );
        println!("  {value:14.2} dB  {} ({w}x{h}, floor {floor})", row.file);
        if value < floor {
            failures.push(format!("{}: PSNR {value:.2} dB < {floor} dB", row.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {labels:?} files:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn webp() {
    check(&["WebP"], false);
}

#[test]
fn gif() {
    check(&["GIF"], false);
}

#[test]
fn tiff() {
    check(&["TIFF"], false);
}

#[test]
fn bmp() {
    check(&["BMP"], false);
}

/// HEIC and AVIF need libheif (the `heif` feature); without it every file is `unsupported`.
#[test]
#[cfg(not(feature = "heif"))]
fn heif_and_avif() {
    check(&["HEIF/HEIC", "AVIF", "AVIF sequence"], true);
}

/// With the `heif` feature (system libheif), every HEIC and AVIF file against vipsthumbnail,
/// which reads them through libheif too.
#[test]
#[cfg(feature = "heif")]
fn heif_and_avif() {
    check(&["HEIF/HEIC", "AVIF", "AVIF sequence"], false);
}
