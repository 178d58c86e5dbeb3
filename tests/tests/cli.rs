//! The `thumbd thumbnail` contract of issue 2, run against the real binary: output naming,
//! `--json` lines, exit codes 0/1/2, `--format`, `--fit cover`, `--size` repeated, limits.
//!
//! The binary belongs to another package (`thumbd`, in `worker/`), so Cargo does not build it for
//! this one: [`thumbd`] builds it once with the same cargo, profile and target dir as this test
//! (a no-op when it is fresh), with the `avif` feature when this package has it (the `avif`
//! tests then check AVIF output; without it, that `--format avif` is a usage error). Set
//! `THUMBD_BIN` to test a prebuilt binary instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use thumbd_tests::{corpus_dir, expected_cover, expected_inside, repo_root};

fn thumbd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("THUMBD_BIN") {
            return PathBuf::from(bin);
        }
        // This test runs as <target>/<profile dir>/deps/cli-<hash>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("unexpected test path {}", exe.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "thumbd", "--bin", "thumbd"])
            // The features this test was built with, so that the binary shares its engine build.
            .args(match (cfg!(feature = "heif"), cfg!(feature = "avif")) {
                (true, true) => &["--features", "heif,avif"][..],
                (true, false) => &["--features", "heif"][..],
                (false, true) => &["--features", "avif"][..],
                (false, false) => &[],
            })
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(repo_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p thumbd failed");
        profile_dir.join(format!("thumbd{}", std::env::consts::EXE_SUFFIX))
    })
}

fn run(args: &[&str], inputs: &[&Path]) -> Output {
    Command::new(thumbd())
        .arg("thumbnail")
        .args(args)
        .args(inputs)
        .output()
        .expect("running thumbd")
}

fn copy(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(corpus_dir().join(name), to).unwrap();
}

/// Every file under `dir`, relative, as `/`-joined strings.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn dims(path: &Path) -> (u32, u32) {
    let img = thumbd_tests::decode(&std::fs::read(path).unwrap());
    (img.width(), img.height())
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--format avif` (a build with the `avif` feature): `<out>/<name>/<size>.avif`, AVIF files
/// (an `ftyp` box of brand `avif` first) of the planned size, which the `--json` line reports.
#[cfg(feature = "avif")]
#[test]
fn avif_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photo.jpg");
    copy("lomiri16_Wine_by_Jakkub_Mede.jpg", &input); // 2560x3837
    let out_dir = tmp.path().join("out");
    let out = run(
        &[
            "--format", "avif", "--size", "256", "--size", "64", "--json", "-o",
        ],
        &[&out_dir, &input],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        tree(&out_dir),
        BTreeSet::from(["photo.jpg/256.avif".to_string(), "photo.jpg/64.avif".into()])
    );
    let data = std::fs::read(out_dir.join("photo.jpg/256.avif")).unwrap();
    assert_eq!(&data[4..12], b"ftypavif", "{:?}", &data[..16]);
    assert!(
        data.len() > 1000 && data.len() < 40_000,
        "{} bytes",
        data.len()
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = line.to_string();
    assert!(text.contains("256.avif") && text.contains("171"), "{text}");
}

/// `--format avif` in a build without the `avif` feature: a usage error (exit status 2) that
/// names the feature, and nothing written.
#[cfg(not(feature = "avif"))]
#[test]
fn avif_output_needs_the_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("a.jpg");
    copy("go_video-001.jpeg", &input);
    let out_dir = tmp.path().join("out");
    let out = run(&["--format", "avif", "-o"], &[&out_dir, &input]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("built without the `avif` feature"),
        "{}",
        stderr(&out)
    );
    assert!(tree(&out_dir).is_empty());
}

#[test]
fn output_paths_mirror_the_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    copy("imdoc_wizard.jpg", &photos.join("a.jpg")); // 265x352
    copy("pil_rgb_trns.png", &photos.join("sub/b.png")); // 64x64
    copy("pil_itxt_chunks.png", &photos.join("sub/deeper/c.PNG")); // 2400x2000
    std::fs::write(photos.join("notes.txt"), "not an image, not picked up").unwrap();
    let direct = tmp.path().join("go_video-001.q50.420.jpeg"); // 150x103, dots in the stem
    copy("go_video-001.q50.420.jpeg", &direct);
    let out_dir = tmp.path().join("out");

    let out = run(
        &[
            "--size",
            "256",
            "--size",
            "64",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[&photos, &direct],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected: BTreeSet<String> = [
        "photos/a.jpg/256.jpg",
        "photos/a.jpg/64.jpg",
        "photos/sub/b.png/256.jpg",
        "photos/sub/b.png/64.jpg",
        "photos/sub/deeper/c.PNG/256.jpg",
        "photos/sub/deeper/c.PNG/64.jpg",
        "go_video-001.q50.420.jpeg/256.jpg",
        "go_video-001.q50.420.jpeg/64.jpg",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Exactly these: nothing for notes.txt, no temporary files left behind.
    assert_eq!(tree(&out_dir), expected);
    for (path, source, size) in [
        ("photos/a.jpg/256.jpg", (265, 352), 256),
        ("photos/a.jpg/64.jpg", (265, 352), 64),
        ("photos/sub/b.png/256.jpg", (64, 64), 256),
        ("photos/sub/deeper/c.PNG/64.jpg", (2400, 2000), 64),
        ("go_video-001.q50.420.jpeg/256.jpg", (150, 103), 256),
    ] {
        let want = expected_inside(source.0, source.1, size);
        assert_eq!(dims(&out_dir.join(path)), want, "{path}");
    }
    // Not a terminal and no --json: nothing on stdout (no progress bar); the summary on stderr.
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("4 images"),
        "summary: {}",
        stderr(&out)
    );
}

#[test]
fn no_input_fails_because_of_another_inputs_name() {
    let tmp = tempfile::tempdir().unwrap();
    // One name, two formats, in one folder; and one file name in two folders, given directly.
    copy("imdoc_wizard.jpg", &tmp.path().join("photos/photo.jpg"));
    copy("pil_rgb_trns.png", &tmp.path().join("photos/photo.png"));
    let one = tmp.path().join("one/a.jpg");
    let two = tmp.path().join("two/a.jpg");
    copy("imdoc_wizard.jpg", &one);
    copy("plasma_Grey_screenshot_400x250.jpg", &two);
    let out_dir = tmp.path().join("out");

    let out = run(
        &["--out", out_dir.to_str().unwrap()],
        &[&tmp.path().join("photos"), &one, &two],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected: BTreeSet<String> = [
        "photos/photo.jpg/256.jpg",
        "photos/photo.png/256.jpg",
        "one/a.jpg/256.jpg",
        "two/a.jpg/256.jpg",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tree(&out_dir), expected);
    assert_eq!(dims(&out_dir.join("photos/photo.png/256.jpg")), (64, 64));
    assert_eq!(
        dims(&out_dir.join("two/a.jpg/256.jpg")),
        expected_inside(400, 250, 256)
    );
}

#[test]
fn json_lines_and_partial_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.jpg");
    copy("plasma_Grey_screenshot_400x250.jpg", &good);
    let corrupt = tmp.path().join("crc.png");
    copy("go_invalid-crc32.png", &corrupt);
    let gif = tmp.path().join("bomb.gif");
    copy("pil_decompression_bomb.gif", &gif);
    let text = tmp.path().join("notanimage.jpg");
    std::fs::write(&text, "this is not an image\n").unwrap();
    let missing = tmp.path().join("missing.jpg");
    let out_dir = tmp.path().join("out");

    let out = run(
        &["--json", "--out", out_dir.to_str().unwrap()],
        &[&corrupt, &good, &gif, &text, &missing],
    );
    // Some failed, the good one was still made.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        tree(&out_dir),
        BTreeSet::from(["good.jpg/256.jpg".to_string()])
    );

    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5, "one line per input: {lines:?}");
    let keys = BTreeSet::from(["input", "ok", "outputs", "error", "ms"]);
    let mut kinds = Vec::new();
    for line in &lines {
        let obj = line.as_object().expect("object");
        assert_eq!(
            obj.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            keys,
            "{line}"
        );
        assert!(obj["input"].is_string() && obj["ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        let input = obj["input"].as_str().unwrap();
        if obj["ok"] == Value::Bool(true) {
            assert_eq!(input, good.to_str().unwrap());
            assert!(obj["error"].is_null());
            let outputs = obj["outputs"].as_array().unwrap();
            assert_eq!(outputs.len(), 1);
            let o = outputs[0].as_object().unwrap();
            let okeys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
            assert_eq!(okeys, BTreeSet::from(["path", "width", "height", "bytes"]));
            let path = Path::new(o["path"].as_str().unwrap());
            assert_eq!(path, out_dir.join("good.jpg/256.jpg"));
            let size = std::fs::metadata(path).unwrap().len();
            assert_eq!(o["bytes"].as_u64(), Some(size));
            let (w, h) = dims(path);
            assert_eq!((w, h), expected_inside(400, 250, 256));
            assert_eq!(
                (o["width"].as_u64(), o["height"].as_u64()),
                (Some(w.into()), Some(h.into()))
            );
        } else {
            assert_eq!(obj["ok"], Value::Bool(false), "{line}");
            assert_eq!(obj["outputs"], Value::Array(vec![]), "{line}");
            let err = obj["error"].as_object().expect("error object");
            let ekeys: BTreeSet<&str> = err.keys().map(String::as_str).collect();
            assert_eq!(ekeys, BTreeSet::from(["kind", "message"]));
            assert!(!err["message"].as_str().unwrap().is_empty());
            kinds.push((
                Path::new(input)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                err["kind"].as_str().unwrap().to_string(),
            ));
        }
    }
    kinds.sort();
    let expected = [
        ("bomb.gif", "truncated"),
        ("missing.jpg", "not_found"),
        ("notanimage.jpg", "unsupported"),
        ("crc.png", "corrupt"),
    ];
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    expected.sort();
    assert_eq!(kinds, expected);
}

#[test]
fn usage_errors_exit_2_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("a.jpg");
    copy("go_video-001.jpeg", &input);
    let out_dir = tmp.path().join("out");
    let out_s = out_dir.to_str().unwrap();
    let cases: [&[&str]; 8] = [
        &["--size", "0", "--out", out_s],
        &["--size", "abc", "--out", out_s],
        &["--quality", "101", "--out", out_s],
        &["--quality", "0", "--out", out_s],
        &["--fit", "sideways", "--out", out_s],
        &["--format", "gif", "--out", out_s],
        &["--threads", "0", "--out", out_s],
        &[], // missing --out
    ];
    for args in cases {
        let out = run(args, &[&input]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}: no message");
        assert!(
            tree(&out_dir).is_empty(),
            "{args:?} wrote {:?}",
            tree(&out_dir)
        );
    }
    // No input at all.
    let out = run(&["--out", out_s], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn formats_and_cover() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("wide.png");
    copy("plasma_FlyingKonqui_2560x1600.png", &a);
    let b = tmp.path().join("tall.jpg");
    copy("lomiri16_Wine_by_Jakkub_Mede.jpg", &b); // 2560x3837
    let c = tmp.path().join("thin.png");
    copy("imdoc_splitbar_6x1024.png", &c);
    let d = tmp.path().join("clear.png");
    copy("pil_pil123rgba.png", &d); // 162x150 with transparent pixels
    for (format, ext, magic) in [
        ("png", "png", image::ImageFormat::Png),
        ("webp", "webp", image::ImageFormat::WebP),
        ("jpeg", "jpg", image::ImageFormat::Jpeg),
    ] {
        for fit in ["inside", "cover"] {
            let out_dir = tmp.path().join(format!("out-{format}-{fit}"));
            let out = run(
                &[
                    "--format", format, "--fit", fit, "--size", "100", "--size", "300", "-o",
                ],
                &[&out_dir, &a, &b, &c, &d],
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{format} {fit}: {}",
                stderr(&out)
            );
            for (name, (w, h)) in [
                ("wide.png", (2560, 1600)),
                ("tall.jpg", (2560, 3837)),
                ("thin.png", (6, 1024)),
                ("clear.png", (162, 150)),
            ] {
                for size in [100, 300] {
                    let path = out_dir.join(name).join(format!("{size}.{ext}"));
                    let data =
                        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    assert_eq!(
                        image::guess_format(&data).unwrap(),
                        magic,
                        "{}",
                        path.display()
                    );
                    let want = if fit == "cover" {
                        expected_cover(w, h, size)
                    } else {
                        expected_inside(w, h, size)
                    };
                    assert_eq!(dims(&path), want, "{}", path.display());
                }
            }
            // The transparent source keeps transparency in PNG and WebP, loses it in JPEG.
            let img = thumbd_tests::decode(
                &std::fs::read(out_dir.join(format!("clear.png/100.{ext}"))).unwrap(),
            );
            let transparent = img.to_rgba8().pixels().any(|p| p.0[3] < 128);
            assert_eq!(transparent, format != "jpeg", "{format}");
        }
    }
}

#[test]
fn max_pixels_flag_refuses_from_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.png");
    copy("pil_itxt_chunks.png", &big); // 2400x2000 = 4.8 MP
    let small = tmp.path().join("small.png");
    copy("pil_rgb_trns.png", &small);
    let out_dir = tmp.path().join("out");
    let out = run(
        &[
            "--json",
            "--max-pixels",
            "1000000",
            "--threads",
            "1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[&big, &small],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    let kind_of = |name: &str| {
        lines
            .iter()
            .find(|l| l["input"].as_str().unwrap().ends_with(name))
            .map(|l| l["error"]["kind"].clone())
            .unwrap()
    };
    assert_eq!(kind_of("big.png"), Value::from("too_many_pixels"));
    assert_eq!(kind_of("small.png"), Value::Null);
}

#[test]
fn whole_corpus_never_crashes() {
    // The committed corpus in one batch: every input gets a JSON line, none is an internal
    // error, and the exit code says "some failed" (the corpus has bad files). The files are
    // named one by one so that a fetched corpus/full/ does not join in.
    let tmp = tempfile::tempdir().unwrap();
    let manifest = thumbd_tests::manifest();
    let paths: Vec<PathBuf> = manifest.iter().map(|e| e.path()).collect();
    let inputs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = run(&["--json", "--out", tmp.path().to_str().unwrap()], &inputs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), manifest.len());
    for line in &lines {
        assert_ne!(line["error"]["kind"], Value::from("internal"), "{line}");
    }
    for entry in manifest.iter().filter(|e| e.must_decode()) {
        let line = lines
            .iter()
            .find(|l| {
                l["input"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{}", entry.file))
            })
            .unwrap_or_else(|| panic!("no line for {}", entry.file));
        assert_eq!(line["ok"], Value::Bool(true), "{line}");
    }
}
