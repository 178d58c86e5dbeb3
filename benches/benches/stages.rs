//! One stage at a time: decode (JPEG baseline/progressive and PNG, by size class), resize
//! (per filter and scale factor) and encode (JPEG, PNG, WebP), each with pixel throughput.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use thumbd_benches::{Corpus, Sample, SizeClass};
use thumbd_engine::stages::{self, Pixels};
use thumbd_engine::{plan, Filter, Fit, InputFormat, OutputFormat, Request};

fn main() {
    let Some(corpus) = common::corpus("stages") else {
        return;
    };
    let mut c = common::criterion();
    decode(&mut c, &corpus);
    resize(&mut c, &corpus);
    encode(&mut c, &corpus);
    c.final_summary();
}

/// Decode as the pipeline runs it for the default 256 px box (shrink-on-load included).
fn decode(c: &mut Criterion, corpus: &Corpus) {
    type Kind = (&'static str, fn(&Sample) -> bool);
    let kinds: [Kind; 3] = [
        ("jpeg-baseline", Sample::is_baseline),
        ("jpeg-progressive", Sample::is_progressive),
        ("png", |s| s.info.format == InputFormat::Png),
    ];
    for (kind, keep) in kinds {
        let mut group = c.benchmark_group(format!("decode/{kind}"));
        for class in SizeClass::ALL {
            if class == SizeClass::Large {
                group.sampling_mode(SamplingMode::Flat);
            }
            for sample in corpus.pick(common::PER_CLASS, |s| keep(s) && s.class() == class) {
                let target = plan(sample.info.width, sample.info.height, 256, Fit::Inside);
                let shrink = stages::shrink_on_load_factor(&sample.info, target);
                group.throughput(Throughput::Elements(sample.info.pixels()));
                group.bench_with_input(
                    BenchmarkId::new(class.name(), &sample.name),
                    sample,
                    |b, s| b.iter(|| stages::decode(black_box(&s.data), &s.info, shrink)),
                );
            }
        }
        group.finish();
    }
}

/// A mid-size photo decoded in full, the source of the resize and encode benches.
fn source(corpus: &Corpus) -> Option<(String, Pixels)> {
    let sample = corpus
        .pick(1, |s| {
            s.info.format == InputFormat::Jpeg && s.class() == SizeClass::Mid
        })
        .into_iter()
        .chain(corpus.pick(1, |_| true))
        .next()?;
    let pixels = stages::decode(&sample.data, &sample.info, 1).ok()?;
    Some((sample.name.clone(), pixels))
}

/// The final high-quality resize, per filter and per scale factor (what remains after
/// shrink-on-load is a factor of 2–4; 8 shows the cost without it).
fn resize(c: &mut Criterion, corpus: &Corpus) {
    let Some((name, src)) = source(corpus) else {
        return;
    };
    eprintln!(
        "stages: resize source {name} ({}x{})",
        src.width(),
        src.height()
    );
    let filters = [
        ("lanczos3", Filter::Lanczos3),
        ("catmull-rom", Filter::CatmullRom),
        ("mitchell", Filter::Mitchell),
        ("hamming", Filter::Hamming),
        ("bilinear", Filter::Bilinear),
        ("box", Filter::Box),
    ];
    let mut group = c.benchmark_group("resize");
    group.throughput(Throughput::Elements(
        u64::from(src.width()) * u64::from(src.height()),
    ));
    for (filter_name, filter) in filters {
        for factor in [2u32, 4, 8] {
            let target = (
                (src.width() / factor).max(1),
                (src.height() / factor).max(1),
            );
            group.bench_function(BenchmarkId::new(filter_name, format!("1/{factor}")), |b| {
                b.iter(|| stages::resize(black_box(&src), target, Fit::Inside, filter))
            });
        }
    }
    group.finish();
}

/// Encoding a 256 px thumbnail (colour conversion and alpha flattening included).
fn encode(c: &mut Criterion, corpus: &Corpus) {
    let Some((_, src)) = source(corpus) else {
        return;
    };
    let target = plan(src.width(), src.height(), 256, Fit::Inside);
    let Ok(thumb) = stages::resize(&src, target, Fit::Inside, Filter::Lanczos3) else {
        return;
    };
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(
        u64::from(thumb.width()) * u64::from(thumb.height()),
    ));
    for (name, format) in [
        ("jpeg", OutputFormat::Jpeg),
        ("png", OutputFormat::Png),
        ("webp", OutputFormat::Webp),
    ] {
        let request = Request {
            format,
            ..Request::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| stages::encode(black_box(&thumb), &request))
        });
    }
    group.finish();
}
