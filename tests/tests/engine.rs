//! The engine (`thumbd_engine::thumbnail`) on real files and hostile ones.
//!
//! - `corpus`: every committed corpus file gives what its class allows, outputs decode with an
//!   independent decoder at the expected size, and nothing panics (an `internal` error fails);
//! - `orientation`: EXIF orientations 1–8 come out upright (corner colours of generated fixtures);
//! - `quality`: thumbnails agree with vipsthumbnail's stored references (size ±1 px, PSNR);
//! - `plan`: property tests of the resize plan;
//! - `bad_input`: typed errors for empty, mislabelled, oversized, invalid requests, and a
//!   deterministic truncation / bit-flip sweep that must never panic;
//! - `allowance`: a decode allowance refuses each decode path over its bound, the full-size
//!   fallback of a JPEG the reduced decoder declines at decode time included;
//! - `avif` (features `avif` and `heif`): AVIF output decoded back through the engine's own
//!   AVIF decoder, against the lossless thumbnail.

use thumbd_engine::{thumbnail, Error, ErrorKind, Fit, Limits, OutputFormat, Request};

/// Outcome of one engine call, reduced to what the tests compare.
fn kind_of(result: &Result<Vec<thumbd_engine::Thumbnail>, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    }
}

mod corpus {
    use super::*;
    use thumbd_tests::{expected_cover, expected_inside, manifest, oriented, Class, Entry};

    /// Sizes asked of every file: the job (256) and a smaller one derived from the same
    /// decode.
    const SIZES: [u32; 2] = [256, 64];

    /// The error kinds a file may give, derived from its manifest row and class. `None`: it must
    /// give thumbnails.
    fn allowed_errors(entry: &Entry) -> Option<Vec<ErrorKind>> {
        use ErrorKind::*;
        let limit = Limits::default().max_pixels;
        // Hostile dimensions must be refused from the header, whatever the class says.
        if entry.pixels().is_some_and(|p| p > limit) {
            return Some(vec![TooManyPixels]);
        }
        if !matches!(entry.format.as_str(), "JPEG" | "PNG" | "GIF") {
            return Some(vec![Unsupported]);
        }
        match entry.class {
            Class::Ok | Class::Rotate => None,
            Class::Either | Class::Trunc => Some(vec![Truncated, Corrupt]),
            Class::ErrorLenient | Class::Error => Some(vec![Corrupt, Truncated]),
        }
    }

    /// Whether a thumbnail is acceptable at all for the class.
    fn ok_allowed(entry: &Entry) -> bool {
        let limit = Limits::default().max_pixels;
        (entry.class != Class::Error || DEVIATIONS.iter().any(|(f, _)| *f == entry.file))
            && entry.pixels().is_none_or(|p| p <= limit)
    }

    /// Files where the engine knowingly departs from the manifest, with why. Each entry is an
    /// open engine decision, not a pass: `deviations_are_still_current` fails once the engine
    /// matches the manifest again, so the entry cannot outlive the bug.
    const DEVIATIONS: &[(&str, &str)] = &[(
        "go_invalid-zlib.png",
        "only the zlib Adler-32 of IDAT is wrong (pixels complete); the png crate skips that \
         check by default, so the engine renders it where the manifest, libpng and Pillow say \
         error (Decoder::ignore_checksums(false) would refuse it)",
    )];

    #[test]
    fn deviations_are_still_current() {
        for (file, why) in DEVIATIONS {
            let data = std::fs::read(thumbd_tests::corpus_dir().join(file)).unwrap();
            let result = thumbnail(&data, &Request::default(), &Limits::default());
            assert!(
                result.is_ok(),
                "{file} now gives {}: remove it from DEVIATIONS ({why})",
                kind_of(&result)
            );
        }
    }

    #[test]
    fn manifest_matches_the_committed_files() {
        let entries = manifest();
        assert_eq!(
            entries.len(),
            96,
            "corpus/README.md says 96 committed files"
        );
        for e in &entries {
            let len = std::fs::metadata(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.file))
                .len();
            assert_eq!(len, e.bytes, "{}: size differs from MANIFEST.tsv", e.file);
        }
        // Every class of the README is represented, so no branch below is dead.
        for class in [
            Class::Ok,
            Class::Rotate,
            Class::Either,
            Class::Trunc,
            Class::ErrorLenient,
            Class::Error,
        ] {
            assert!(entries.iter().any(|e| e.class == class), "{class:?}");
        }
    }

    /// Checks one file with one request; returns a failure description, or what happened.
    fn check(
        entry: &Entry,
        request: &Request,
        expect: fn(u32, u32, u32) -> (u32, u32),
    ) -> Result<String, String> {
        let data = std::fs::read(entry.path()).expect("corpus file");
        let result = thumbnail(&data, request, &Limits::default());
        let outcome = kind_of(&result);
        match result {
            Err(Error::Internal(msg)) => Err(format!("internal error (a panic or bug): {msg}")),
            Err(e) => match allowed_errors(entry) {
                Some(kinds) if kinds.contains(&e.kind()) => Ok(outcome.into()),
                Some(kinds) => Err(format!("error {} not in {kinds:?}: {e}", e.kind())),
                None => Err(format!("expected thumbnails, got {}: {e}", e.kind())),
            },
            Ok(_) if !ok_allowed(entry) => Err("expected an error, got thumbnails".into()),
            Ok(thumbs) => {
                let (w, h) = (entry.width.expect("width"), entry.height.expect("height"));
                if thumbs.len() != request.sizes.len() {
                    return Err(format!(
                        "{} outputs for {} sizes",
                        thumbs.len(),
                        request.sizes.len()
                    ));
                }
                for (thumb, &size) in thumbs.iter().zip(&request.sizes) {
                    let want = oriented(expect(w, h, size), entry.orientation);
                    let decoded = thumbd_tests::decode(&thumb.data);
                    let got = (decoded.width(), decoded.height());
                    if thumb.size != size || got != want || (thumb.width, thumb.height) != want {
                        return Err(format!(
                            "size {size}: decoded {got:?}, reported {:?}, expected {want:?}",
                            (thumb.width, thumb.height)
                        ));
                    }
                    let format = image::guess_format(&thumb.data).map_err(|e| e.to_string())?;
                    let want_format = match request.format {
                        OutputFormat::Jpeg => image::ImageFormat::Jpeg,
                        OutputFormat::Png => image::ImageFormat::Png,
                        OutputFormat::Webp => image::ImageFormat::WebP,
                        other => return Err(format!("no independent decoder for {other:?}")),
                    };
                    if format != want_format {
                        return Err(format!("encoded as {format:?}, asked {want_format:?}"));
                    }
                }
                Ok(outcome.into())
            }
        }
    }

    fn run_all(
        request: &Request,
        expect: fn(u32, u32, u32) -> (u32, u32),
        filter: fn(&Entry) -> bool,
    ) {
        let mut failures = Vec::new();
        let mut lenient = Vec::new();
        for entry in manifest().iter().filter(|e| filter(e)) {
            match check(entry, request, expect) {
                Ok(outcome) if !entry.must_decode() => {
                    lenient.push(format!("  {:?} {}: {outcome}", entry.class, entry.file))
                }
                Ok(_) => {}
                Err(why) => failures.push(format!("  {:?} {}: {why}", entry.class, entry.file)),
            }
        }
        // Shown with --nocapture: what the engine does with the files that may go either way.
        println!("non-OK classes, engine outcome:\n{}", lenient.join("\n"));
        assert!(
            failures.is_empty(),
            "{} corpus failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// The job (JPEG, fit inside) on every file, plus a second, derived size.
    #[test]
    fn every_file_jpeg_inside() {
        let request = Request {
            sizes: SIZES.to_vec(),
            ..Request::default()
        };
        run_all(&request, expected_inside, |_| true);
    }

    /// PNG output with fit cover on every file: N×N (or the source side when smaller).
    #[test]
    fn every_file_png_cover() {
        let request = Request {
            sizes: vec![128],
            fit: Fit::Cover,
            format: OutputFormat::Png,
            ..Request::default()
        };
        run_all(&request, expected_cover, |_| true);
    }

    /// WebP output on the files that must decode.
    #[test]
    fn good_files_webp_inside() {
        let request = Request {
            sizes: vec![200],
            format: OutputFormat::Webp,
            ..Request::default()
        };
        run_all(&request, expected_inside, Entry::must_decode);
    }

    /// PNG output keeps transparency: a source with transparent pixels (as the independent
    /// decoder sees it) gives a PNG thumbnail with transparent pixels.
    #[test]
    fn png_output_keeps_alpha() {
        let request = Request {
            format: OutputFormat::Png,
            ..Request::default()
        };
        let mut checked = 0;
        for entry in manifest()
            .iter()
            .filter(|e| e.must_decode() && e.format == "PNG")
        {
            let data = std::fs::read(entry.path()).unwrap();
            let Ok(source) = image::load_from_memory(&data) else {
                continue;
            };
            let source = source.to_rgba8();
            // Mostly transparent sources only: a few transparent pixels may average away.
            let transparent = source.pixels().filter(|p| p.0[3] < 128).count();
            if transparent * 4 < source.pixels().len() {
                continue;
            }
            let thumbs = thumbnail(&data, &request, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", entry.file));
            let out = thumbd_tests::decode(&thumbs[0].data);
            assert!(out.color().has_alpha(), "{}: alpha dropped", entry.file);
            let out = out.to_rgba8();
            assert!(
                out.pixels().any(|p| p.0[3] < 128),
                "{}: no transparent pixel left",
                entry.file
            );
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} mostly-transparent PNGs found");
    }

    /// JPEG output of a transparent source is composited over the background, not black.
    #[test]
    fn jpeg_output_flattens_over_the_background() {
        let mut rgba = image::RgbaImage::from_pixel(64, 64, image::Rgba([0, 0, 0, 0]));
        for x in 0..32 {
            for y in 0..64 {
                rgba.put_pixel(x, y, image::Rgba([0, 0, 255, 255]));
            }
        }
        let mut png = Vec::new();
        rgba.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        for background in [[255, 255, 255], [255, 0, 0]] {
            let request = Request {
                sizes: vec![32],
                background,
                ..Request::default()
            };
            let out = thumbnail(&png, &request, &Limits::default()).unwrap();
            let out = thumbd_tests::decode(&out[0].data).to_rgb8();
            let right = out.get_pixel(28, 16).0;
            let left = out.get_pixel(4, 16).0;
            let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 24);
            assert!(
                near(right, background),
                "transparent half {right:?}, background {background:?}"
            );
            assert!(near(left, [0, 0, 255]), "opaque half {left:?}");
        }
    }
}

/// Issue 2 wants outputs that browsers and other libraries read. Regression: with optimised
/// Huffman tables jpeg-encoder wrote one scan per component, and zune-jpeg 0.5.15 (the decoder of
/// the `image` crate and of thumbd itself) left the chroma of such files at zero (red came out
/// green), while libjpeg-turbo, Pillow and jpeg-decoder read them right.
mod interop {
    use super::*;

    #[test]
    fn jpeg_output_decodes_with_zune_jpeg() {
        let data = std::fs::read(thumbd_tests::fixtures_dir().join("orient/orient_1.jpg")).unwrap();
        let thumbs = thumbnail(&data, &Request::default(), &Limits::default()).unwrap();
        let reference = thumbd_tests::decode(&thumbs[0].data).to_rgb8();
        let zune = image::load_from_memory_with_format(&thumbs[0].data, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        let psnr = thumbd_tests::psnr(&reference, &zune);
        assert!(
            psnr > 40.0,
            "zune-jpeg and jpeg-decoder disagree: PSNR {psnr:.1} dB"
        );
    }
}

mod orientation {
    use super::*;
    use thumbd_tests::fixtures_dir;

    /// The fixtures' upright picture: quadrants red, green / blue, white (see
    /// tests/fixtures/orient/README.md).
    const QUADRANTS: [(f64, f64, [u8; 3]); 4] = [
        (0.25, 0.25, [255, 0, 0]),
        (0.75, 0.25, [0, 255, 0]),
        (0.25, 0.75, [0, 0, 255]),
        (0.75, 0.75, [255, 255, 255]),
    ];

    fn assert_upright(n: u32, request: &Request, want: (u32, u32)) {
        let path = fixtures_dir().join(format!("orient/orient_{n}.jpg"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The fixture really is stored rotated: portrait on disk for 5–8.
        let info = thumbd_engine::probe(&data, &Limits::default()).unwrap();
        let stored_portrait = info.height > info.width;
        assert_eq!(
            stored_portrait,
            n >= 5,
            "fixture orient_{n} stored {}x{}",
            info.width,
            info.height
        );

        let thumbs = thumbnail(&data, request, &Limits::default()).unwrap();
        let img = thumbd_tests::decode(&thumbs[0].data).to_rgb8();
        assert_eq!(img.dimensions(), want, "orient_{n}");
        for (fx, fy, colour) in QUADRANTS {
            let (x, y) = (
                (fx * f64::from(want.0)) as u32,
                (fy * f64::from(want.1)) as u32,
            );
            let got = img.get_pixel(x, y).0;
            // JPEG at q80 with 4:2:0 chroma keeps flat colours within a few levels; 40 still
            // tells every primary from every other.
            let close = got.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= 40);
            assert!(
                close,
                "orient_{n}: pixel ({x},{y}) is {got:?}, expected {colour:?}"
            );
        }
    }

    #[test]
    fn jpeg_inside_is_upright_for_every_orientation() {
        for n in 1..=8 {
            assert_upright(n, &Request::default(), (256, 171));
        }
    }

    #[test]
    fn png_cover_is_upright_for_every_orientation() {
        let request = Request {
            sizes: vec![96],
            fit: Fit::Cover,
            format: OutputFormat::Png,
            ..Request::default()
        };
        for n in 1..=8 {
            assert_upright(n, &request, (96, 96));
        }
    }

    #[test]
    fn several_sizes_are_all_upright() {
        let request = Request {
            sizes: vec![300, 64],
            format: OutputFormat::Webp,
            ..Request::default()
        };
        for n in [1, 3, 6, 7] {
            assert_upright(n, &request, (300, 200));
        }
    }
}

mod quality {
    use super::*;
    use thumbd_tests::{compare_to_reference, manifest};

    /// How a file is allowed to miss the bar. Every entry is a known engine bug or a
    /// decoder limit that the lead has been told about, not a pass: the test still holds the
    /// file to the stated value (so it cannot get worse unnoticed), and fails once the file
    /// meets the real bar, so the entry must then be deleted.
    enum Exception {
        /// PSNR below the floor; measured value rounded down (2026-11-28, libvips 8.14 refs).
        MinPsnr(f64),
    }
    use Exception::*;

    const EXCEPTIONS: &[(&str, Exception, &str)] = &[
        // Not an engine bug: the reference is off. libvips 8.14 leaves this 400 KB embedded
        // profile unapplied (its thumbnail is within 35 dB of the raw, unconverted pixels); the
        // engine's moxcms conversion agrees with lcms2 through Pillow's ImageCms at 35.4 dB.
        (
            "pil_icc_profile_big.jpg",
            MinPsnr(27.0),
            "embedded ICC conversion",
        ),
    ];

    #[test]
    fn thumbnails_match_vipsthumbnail() {
        let mut rows: Vec<(f64, String)> = Vec::new();
        let mut failures = Vec::new();
        let mut excepted = Vec::new();
        let mut compared = 0;
        // quality_judge.py's selection: every file whose manifest says a plain "ok".
        for entry in manifest().iter().filter(|e| e.strict_ok()) {
            let exception = EXCEPTIONS.iter().find(|(f, _, _)| *f == entry.file);
            let data = std::fs::read(entry.path()).unwrap();
            let ours = match thumbnail(&data, &Request::default(), &Limits::default()) {
                Ok(t) => thumbd_tests::decode(&t[0].data).to_rgb8(),
                Err(e) => {
                    failures.push(format!("{}: no thumbnail: {e}", entry.file));
                    continue;
                }
            };
            let refs: Vec<image::RgbImage> = ["plain", "srgb"]
                .iter()
                .filter_map(|v| entry.vips_reference(v))
                .collect();
            if refs.is_empty() {
                // vipsthumbnail refused it too (see tests/make-references' output).
                println!("no reference: {}", entry.file);
                continue;
            }
            let (w, h) = ours.dimensions();
            let (rw, rh) = refs[0].dimensions();
            if w.abs_diff(rw) > 1 || h.abs_diff(rh) > 1 {
                failures.push(format!(
                    "{}: size {w}x{h}, vipsthumbnail {rw}x{rh}",
                    entry.file
                ));
                continue;
            }
            let (value, floor) = refs
                .iter()
                .map(|r| compare_to_reference(&ours, r, entry.is_cmyk()))
                .fold(
                    (f64::MIN, 0.0),
                    |best, x| if x.0 > best.0 { x } else { best },
                );
            compared += 1;
            rows.push((
                value,
                format!("{value:6.2} dB  {} (floor {floor})", entry.file),
            ));
            match exception {
                None if value < floor => {
                    failures.push(format!("{}: PSNR {value:.2} dB < {floor} dB", entry.file))
                }
                None => {}
                Some((_, MinPsnr(min), why)) if value < floor && value >= *min => {
                    excepted.push(format!("{}: {value:.2} dB < {floor} ({why})", entry.file))
                }
                Some((_, MinPsnr(min), _)) if value < *min => failures.push(format!(
                    "{}: PSNR {value:.2} dB, worse than its exception's {min}",
                    entry.file
                )),
                Some(_) => failures.push(format!(
                    "{}: meets the bar now ({value:.2} dB, floor {floor}): delete its exception",
                    entry.file
                )),
            }
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("PSNR vs vipsthumbnail (best of plain / -e srgb), lowest first:");
        for (_, row) in &rows {
            println!("  {row}");
        }
        if let Some((_, lowest)) = rows.first() {
            println!("lowest PSNR: {}", lowest.trim());
        }
        println!(
            "excepted ({}):\n  {}",
            excepted.len(),
            excepted.join("\n  ")
        );
        assert!(
            compared >= 60,
            "only {compared} files compared: references missing?"
        );
        assert!(
            failures.is_empty(),
            "{} quality failures:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

/// Damaged JPEGs (truncated files, zeroed entropy data) that libjpeg renders with a warning:
/// the engine renders them as libjpeg does (missing rows grey, garbled band as decoded), so
/// vipsthumbnail's picture is the reference and the 30 dB bar applies.
mod damaged {
    use super::*;
    use thumbd_tests::{compare_to_reference, manifest};

    #[test]
    fn damaged_jpegs_render_as_libjpeg_does() {
        let mut failures = Vec::new();
        let mut compared = 0;
        for entry in manifest()
            .iter()
            .filter(|e| e.format == "JPEG" && !e.strict_ok() && e.expect.contains("libjpeg"))
        {
            let Some(reference) = entry.vips_reference("plain") else {
                println!("no reference: {}", entry.file);
                continue;
            };
            let data = std::fs::read(entry.path()).unwrap();
            let ours = match thumbnail(&data, &Request::default(), &Limits::default()) {
                Ok(t) => thumbd_tests::decode(&t[0].data).to_rgb8(),
                Err(e) => {
                    failures.push(format!("{}: no thumbnail: {e}", entry.file));
                    continue;
                }
            };
            if ours.dimensions() != reference.dimensions() {
                failures.push(format!(
                    "{}: size {:?}, vipsthumbnail {:?}",
                    entry.file,
                    ours.dimensions(),
                    reference.dimensions()
                ));
                continue;
            }
            let (value, floor) = compare_to_reference(&ours, &reference, entry.is_cmyk());
            println!("{value:6.2} dB  {}", entry.file);
            compared += 1;
            if value < floor {
                failures.push(format!("{}: PSNR {value:.2} dB < {floor} dB", entry.file));
            }
        }
        assert!(compared >= 4, "only {compared} damaged files compared");
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

mod plan {
    use proptest::prelude::*;
    use thumbd_engine::{plan, Fit};

    /// Sources up to PNG's 2³¹−1 per side; boxes up to the default output limit.
    fn dims() -> impl Strategy<Value = (u32, u32, u32)> {
        let side = prop_oneof![1u32..=300, 1u32..=65_535, 1u32..=i32::MAX as u32];
        (side.clone(), side, 1u32..=8192)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 4096,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn inside_fits_never_enlarges_keeps_aspect((w, h, n) in dims()) {
            let (pw, ph) = plan(w, h, n, Fit::Inside);
            prop_assert!(pw >= 1 && ph >= 1, "zero side");
            prop_assert!(pw <= w && ph <= h, "enlarged {w}x{h} -> {pw}x{ph}");
            prop_assert!(pw <= n && ph <= n, "outside the {n} box: {pw}x{ph}");
            // The long side reaches the box (or stays the source's).
            prop_assert_eq!(pw.max(ph), n.min(w.max(h)));
            // Aspect within a pixel: the short side is the exact scaled side ±1 (or 1).
            let (long, short, plong, pshort) = if w >= h { (w, h, pw, ph) } else { (h, w, ph, pw) };
            let exact = f64::from(short) * f64::from(plong) / f64::from(long);
            prop_assert!(
                (f64::from(pshort) - exact.max(1.0)).abs() <= 1.0,
                "{w}x{h} -> {pw}x{ph}, exact short side {exact}"
            );
        }

        /// The engine plans on stored dimensions and swaps after EXIF rotation; that is only
        /// right if the plan is symmetric.
        #[test]
        fn inside_is_symmetric_under_transposition((w, h, n) in dims()) {
            let (pw, ph) = plan(w, h, n, Fit::Inside);
            prop_assert_eq!(plan(h, w, n, Fit::Inside), (ph, pw));
        }

        #[test]
        fn cover_fills_the_box((w, h, n) in dims()) {
            let (pw, ph) = plan(w, h, n, Fit::Cover);
            prop_assert_eq!((pw, ph), (w.min(n), h.min(n)));
        }

        #[test]
        fn inside_agrees_with_the_independent_rule((w, h, n) in dims()) {
            prop_assert_eq!(plan(w, h, n, Fit::Inside), thumbd_tests::expected_inside(w, h, n));
        }
    }
}

mod bad_input {
    use super::*;
    use thumbd_tests::corpus_dir;

    fn err_kind(data: &[u8], request: &Request, limits: &Limits) -> ErrorKind {
        match thumbnail(data, request, limits) {
            Ok(t) => panic!("expected an error, got {} thumbnails", t.len()),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn empty_and_non_image_inputs_are_unsupported() {
        let r = Request::default();
        let l = Limits::default();
        assert_eq!(err_kind(b"", &r, &l), ErrorKind::Unsupported);
        assert_eq!(
            err_kind(b"this is not an image\n", &r, &l),
            ErrorKind::Unsupported
        );
        // A GIF or WebP container that holds nothing is a damaged image, not an unknown format.
        for stub in [&b"GIF89a\x01\x00\x01\x00"[..], b"RIFF\0\0\0\0WEBPVP8 "] {
            let kind = err_kind(stub, &r, &l);
            assert!(
                matches!(kind, ErrorKind::Truncated | ErrorKind::Corrupt),
                "{kind}"
            );
        }
        // The format comes from the bytes: a PNG named .jpg is a PNG (the engine never sees
        // names), and a JPEG magic with nothing after it is a typed error.
        let png = std::fs::read(corpus_dir().join("go_pngsuite_basn0g04.png")).unwrap();
        assert!(thumbnail(&png, &r, &l).is_ok());
        let kind = err_kind(b"\xff\xd8\xff", &r, &l);
        assert!(
            matches!(kind, ErrorKind::Truncated | ErrorKind::Corrupt),
            "{kind}"
        );
    }

    #[test]
    fn limits_are_typed() {
        let data = std::fs::read(corpus_dir().join("pil_itxt_chunks.png")).unwrap(); // 2400x2000
        let r = Request::default();
        let small_input = Limits {
            max_input_bytes: 1000,
            ..Limits::default()
        };
        assert_eq!(err_kind(&data, &r, &small_input), ErrorKind::InputTooLarge);
        let few_pixels = Limits {
            max_pixels: 2400 * 2000 - 1,
            ..Limits::default()
        };
        assert_eq!(err_kind(&data, &r, &few_pixels), ErrorKind::TooManyPixels);
        let exact = Limits {
            max_pixels: 2400 * 2000,
            ..Limits::default()
        };
        assert!(
            thumbnail(&data, &r, &exact).is_ok(),
            "the limit is inclusive"
        );
    }

    #[test]
    fn invalid_requests_are_typed() {
        let data = std::fs::read(corpus_dir().join("go_pngsuite_basn0g04.png")).unwrap();
        let l = Limits::default();
        let bad = [
            Request {
                sizes: vec![],
                ..Request::default()
            },
            Request {
                sizes: vec![0],
                ..Request::default()
            },
            Request {
                sizes: vec![256, 0],
                ..Request::default()
            },
            Request {
                sizes: vec![l.max_output_dimension + 1],
                ..Request::default()
            },
            Request {
                quality: 0,
                ..Request::default()
            },
            Request {
                quality: 101,
                ..Request::default()
            },
        ];
        for request in &bad {
            assert_eq!(
                err_kind(&data, request, &l),
                ErrorKind::InvalidRequest,
                "{request:?}"
            );
        }
        // The request is checked before the input: a bad request on garbage is still invalid_request.
        assert_eq!(err_kind(b"", &bad[1], &l), ErrorKind::InvalidRequest);
    }

    /// Deterministic xorshift, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Every prefix length class and random byte corruptions of small corpus files: typed
    /// errors or thumbnails inside the box, never `internal` (a caught panic).
    #[test]
    fn truncations_and_bit_flips_never_panic() {
        let files = [
            "go_video-001.q50.420.jpeg",
            "go_video-001.q50.411.progressive.jpeg",
            "go_video-005.gray.q50.2x2.progressive.jpeg",
            "pil_pil_sample_cmyk.jpg",
            "pil_hopper_16bit_qtables.jpg",
            "go_pngsuite_basn3p04-31i.png",
            "go_pngsuite_basn6a16.png",
            "skimage_foo3x5x4indexed.png",
            "pil_p_trns_single.png",
        ];
        let request = Request {
            sizes: vec![48, 16],
            ..Request::default()
        };
        let limits = Limits::default();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut failures = Vec::new();
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for name in files {
            let original = std::fs::read(corpus_dir().join(name)).unwrap();
            let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
            let step = (original.len() / 64).max(1);
            for cut in (0..original.len()).step_by(step) {
                cases.push((format!("cut at {cut}"), original[..cut].to_vec()));
            }
            for i in 0..120 {
                let mut data = original.clone();
                let flips = 1 + (rng.next() % 4) as usize;
                for _ in 0..flips {
                    let at = (rng.next() as usize) % data.len();
                    data[at] ^= 1 << (rng.next() % 8);
                }
                cases.push((format!("flip case {i}"), data));
            }
            for (label, data) in cases {
                let result = thumbnail(&data, &request, &limits);
                *counts.entry(kind_of(&result)).or_default() += 1;
                match result {
                    Err(Error::Internal(msg)) => failures.push(format!("{name} {label}: {msg}")),
                    Ok(thumbs) => {
                        for t in thumbs {
                            let img = thumbd_tests::decode(&t.data);
                            if img.width().max(img.height()) > t.size {
                                failures.push(format!(
                                    "{name} {label}: {}x{}",
                                    img.width(),
                                    img.height()
                                ));
                            }
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        println!("outcomes: {counts:?}");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// The decode allowance (`Limits::max_decode_bytes`): each decode path is checked against its
/// bound before it allocates, the full-size fallback the header check cannot foresee included.
mod allowance {
    use super::*;
    use thumbd_engine::stages::{self, DecodeBytes};
    use thumbd_engine::{plan, probe, ImageInfo};
    use thumbd_tests::{corpus_dir, jpeg_declined_at_decode_time};

    fn within(bytes: u64) -> Limits {
        Limits {
            max_decode_bytes: bytes,
            ..Limits::default()
        }
    }

    fn request(size: u32) -> Request {
        Request {
            sizes: vec![size],
            ..Request::default()
        }
    }

    /// The bounds of the decode `thumbnail` makes of `data` for `request`.
    fn bounds(data: &[u8], request: &Request) -> (ImageInfo, DecodeBytes) {
        let info = probe(data, &Limits::default()).unwrap();
        let target = plan(info.width, info.height, request.sizes[0], request.fit);
        let shrink = stages::shrink_on_load_factor(&info, target);
        (info, stages::decode_bytes(data, &info, shrink))
    }

    #[test]
    fn a_full_size_fallback_the_header_check_cannot_see_is_refused_over_budget() {
        let data = jpeg_declined_at_decode_time();
        let request = request(256);
        let (info, bytes) = bounds(&data, &request);
        assert!(stages::jpeg_reduced_decode_expected(&data, &info));
        assert!(
            stages::decode_jpeg_reduced(&data, &info, 8).is_err(),
            "the reduced decoder must decline the repeated DC first pass"
        );
        // Within what the reduced decode needs: refused when the fallback comes, with what the
        // full-size decode needs.
        match thumbnail(&data, &request, &within(bytes.planned)) {
            Err(Error::OverBudget { needed, allowed }) => {
                assert_eq!(allowed, bytes.planned);
                assert_eq!(needed, bytes.full);
                assert!(needed >= info.pixels() * 3, "{needed}");
                assert!(needed > 20 * allowed, "{needed} vs {allowed}");
            }
            other => panic!("expected over_budget, got {}", kind_of(&other)),
        }
        // With that much, the same thumbnails as without an allowance.
        let unlimited = thumbnail(&data, &request, &Limits::default()).unwrap();
        let within_needed = thumbnail(&data, &request, &within(bytes.full)).unwrap();
        assert_eq!(within_needed, unlimited);
        assert_eq!(ErrorKind::OverBudget.as_str(), "over_budget");
    }

    #[test]
    fn every_decode_path_is_checked_against_its_bound() {
        for (file, size, path) in [
            (
                "plasma_PastelHills_3200x2000.jpg",
                256,
                "baseline JPEG, reduced",
            ),
            (
                "lomiri16_Wine_by_Jakkub_Mede.jpg",
                512,
                "progressive JPEG, reduced",
            ),
            ("plasma_PastelHills_3200x2000.jpg", 2048, "JPEG full size"),
            ("plasma_FlyingKonqui_2560x1600.png", 256, "PNG row shrink"),
            ("go_benchRGB-interlace.png", 64, "interlaced PNG"),
            ("pil_exif.png", 512, "PNG full size"),
        ] {
            let data = std::fs::read(corpus_dir().join(file)).unwrap();
            let request = request(size);
            let (_, bytes) = bounds(&data, &request);
            let result = thumbnail(&data, &request, &within(bytes.planned - 1));
            assert!(
                matches!(
                    result,
                    Err(Error::OverBudget { needed, allowed })
                        if needed == bytes.planned && allowed == bytes.planned - 1
                ),
                "{path} ({file}): {}",
                kind_of(&result)
            );
            let result = thumbnail(&data, &request, &within(bytes.planned));
            assert!(result.is_ok(), "{path} ({file}): {}", kind_of(&result));
        }
    }
}

/// AVIF output (feature `avif`), decoded back through the engine's own HEIF/AVIF decoder
/// (feature `heif`): same size as the lossless thumbnail, close to it in PSNR, smaller than
/// JPEG at the same quality.
#[cfg(all(feature = "avif", feature = "heif"))]
mod avif {
    use super::*;
    use thumbd_tests::corpus_dir;

    fn thumb(data: &[u8], format: OutputFormat, size: u32) -> thumbd_engine::Thumbnail {
        let request = Request {
            sizes: vec![size],
            format,
            ..Request::default()
        };
        let mut thumbs = thumbnail(data, &request, &Limits::default()).expect("thumbnail");
        thumbs.remove(0)
    }

    /// The engine's decode of an AVIF at its own size, as RGB (through a lossless PNG).
    fn decode_avif(data: &[u8]) -> image::RgbImage {
        let info = thumbd_engine::probe(data, &Limits::default()).expect("AVIF probes");
        assert_eq!(info.format, thumbd_engine::InputFormat::Avif);
        let png = thumb(data, OutputFormat::Png, info.width.max(info.height));
        assert_eq!((png.width, png.height), (info.width, info.height));
        thumbd_tests::decode(&png.data).to_rgb8()
    }

    #[test]
    fn avif_thumbnails_decode_back_close_to_the_source() {
        // PSNR at q80 (measured): 39.4, 34.2, 34.7, 35.3 dB.
        for name in [
            "plasma_PastelHills_3200x2000.jpg",
            "lomiri16_Wine_by_Jakkub_Mede.jpg",
            "derived_trunc40_BytheWater_2560x1600.jpg",
            "pil_hopper_orientation_2.jpg",
        ] {
            let data = std::fs::read(corpus_dir().join(name)).unwrap();
            let avif = thumb(&data, OutputFormat::Avif, 256);
            assert_eq!(avif.format, OutputFormat::Avif);
            assert_eq!(&avif.data[4..12], b"ftypavif", "{name}");
            let lossless = thumb(&data, OutputFormat::Png, 256);
            assert_eq!((avif.width, avif.height), (lossless.width, lossless.height));
            let reference = thumbd_tests::decode(&lossless.data).to_rgb8();
            let back = decode_avif(&avif.data);
            assert_eq!(back.dimensions(), reference.dimensions(), "{name}");
            let db = thumbd_tests::psnr(&reference, &back);
            assert!(db >= 33.0, "{name}: {db:.2} dB");
            let jpeg = thumb(&data, OutputFormat::Jpeg, 256);
            assert!(
                avif.data.len() < jpeg.data.len(),
                "{name}: AVIF {} bytes, JPEG {}",
                avif.data.len(),
                jpeg.data.len()
            );
        }
    }

    #[test]
    fn avif_keeps_alpha() {
        let data = std::fs::read(corpus_dir().join("pil_pil123rgba.png")).unwrap();
        let avif = thumb(&data, OutputFormat::Avif, 100);
        let info = thumbd_engine::probe(&avif.data, &Limits::default()).unwrap();
        assert_eq!(info.channels, 4, "an alpha plane");
        let png = thumb(&avif.data, OutputFormat::Png, 100);
        let rgba = thumbd_tests::decode(&png.data).to_rgba8();
        assert!(rgba.pixels().any(|p| p.0[3] < 128), "transparent pixels");
        assert!(rgba.pixels().any(|p| p.0[3] > 200), "opaque pixels");
    }
}
