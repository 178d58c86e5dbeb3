//! AVIF against WebP and JPEG on corpus photos at 256 px: encode time (one thread, median of
//! several runs), bytes and PSNR against the lossless (PNG) thumbnail.
//!
//! `cargo run --release -p thumbd-tests --features heif,avif --example avif_measure -- [FILE...]`
//! (with no files: ten photos of `corpus/`). `-q N` sets the quality (default 80), `-r N` the
//! runs per encode (default 15). The AVIF output is decoded back through the engine's own
//! HEIF/AVIF decoder (an identity-size thumbnail to PNG).
use std::path::PathBuf;
use std::time::Instant;

use image::RgbImage;
use thumbd_engine::stages::{self, Pixels};
use thumbd_engine::{plan, probe, Filter, Fit, Limits, OutputFormat, Request};

const PHOTOS: &[&str] = &[
    "plasma_PastelHills_3200x2000.jpg",
    "lomiri16_Wine_by_Jakkub_Mede.jpg",
    "xplanet_earth.jpg",
    "derived_cmyk_free_by_Peter_Nerlich.jpg",
    "formats/derived_avif_8bit_420_ColorfulCups.avif",
    "derived_trunc40_BytheWater_2560x1600.jpg",
    "pil_junk_jpeg_header.jpg",
    "go_video-001.jpeg",
    "pil_hopper_orientation_2.jpg",
    "imdoc_wizard.jpg",
    "formats/derived_heic_8bit_q50_Kite.heic",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut quality, mut runs, mut files) = (80u8, 15usize, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-q" => quality = args.next().and_then(|v| v.parse().ok()).expect("-q N"),
            "-r" => runs = args.next().and_then(|v| v.parse().ok()).expect("-r N"),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        let corpus = thumbd_tests::corpus_dir();
        files = PHOTOS.iter().map(|name| corpus.join(name)).collect();
    }
    let formats = [
        ("jpeg", OutputFormat::Jpeg),
        ("webp", OutputFormat::Webp),
        ("avif", OutputFormat::Avif),
    ];
    println!("quality {quality}, {runs} runs, median ms per encode");
    println!(
        "{:<44} {:>9} | {:>7} {:>7} {:>6} | {:>7} {:>7} {:>6} | {:>7} {:>7} {:>6}",
        "file",
        "size",
        "jpeg ms",
        "bytes",
        "dB",
        "webp ms",
        "bytes",
        "dB",
        "avif ms",
        "bytes",
        "dB"
    );
    let mut totals = [(0.0f64, 0usize, 0.0f64); 3];
    let mut count = 0;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let Some(small) = thumbnail_pixels(&data) else {
            eprintln!("{}: does not decode, skipped", file.display());
            continue;
        };
        let reference = decode_rgb(&encode(&small, OutputFormat::Png, quality));
        let name = file.file_name().unwrap().to_string_lossy();
        let mut line = format!(
            "{name:<44} {:>9}",
            format!("{}x{}", small.width(), small.height())
        );
        for (i, &(label, format)) in formats.iter().enumerate() {
            let out = encode(&small, format, quality);
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(encode(&small, format, quality));
                    start.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let ms = times[times.len() / 2];
            let back = decode_rgb(&out);
            let db = thumbd_tests::psnr(&reference, &back);
            assert!(!label.is_empty());
            line += &format!(" | {ms:>7.2} {:>7} {db:>6.2}", out.len());
            totals[i].0 += ms;
            totals[i].1 += out.len();
            totals[i].2 += db;
        }
        println!("{line}");
        count += 1;
    }
    let n = f64::from(count);
    let mut line = format!("{:<44} {:>9}", format!("mean of {count}"), "");
    for (ms, bytes, db) in totals {
        line += &format!(
            " | {:>7.2} {:>7.0} {:>6.2}",
            ms / n,
            bytes as f64 / n,
            db / n
        );
    }
    println!("{line}");
    let (jpeg, webp, avif) = (totals[0], totals[1], totals[2]);
    println!(
        "avif/webp time {:.2}x, avif/jpeg time {:.2}x; avif/webp bytes {:.2}, avif/jpeg bytes {:.2}",
        avif.0 / webp.0,
        avif.0 / jpeg.0,
        avif.1 as f64 / webp.1 as f64,
        avif.1 as f64 / jpeg.1 as f64
    );
}

/// The 256 px thumbnail before encoding, as the engine makes it.
fn thumbnail_pixels(data: &[u8]) -> Option<Pixels> {
    let info = probe(data, &Limits::default()).ok()?;
    let target = plan(info.width, info.height, 256, Fit::Inside);
    let shrink = stages::shrink_on_load_factor(&info, target);
    let decoded = stages::decode(data, &info, shrink).ok()?;
    stages::resize(&decoded, target, Fit::Inside, Filter::Lanczos3).ok()
}

fn encode(pixels: &Pixels, format: OutputFormat, quality: u8) -> Vec<u8> {
    let request = Request {
        format,
        quality,
        ..Request::default()
    };
    stages::encode(pixels, &request).expect("encodes")
}

/// JPEG, PNG and WebP through the independent decoders; AVIF through the engine (libheif).
fn decode_rgb(data: &[u8]) -> RgbImage {
    if data.get(4..12) == Some(b"ftypavif") {
        let info = probe(data, &Limits::default()).expect("AVIF probes");
        let request = Request {
            sizes: vec![info.width.max(info.height)],
            format: OutputFormat::Png,
            ..Request::default()
        };
        let thumbs = thumbd_engine::thumbnail(data, &request, &Limits::default()).expect("AVIF");
        return thumbd_tests::decode(&thumbs[0].data).to_rgb8();
    }
    thumbd_tests::decode(data).to_rgb8()
}
