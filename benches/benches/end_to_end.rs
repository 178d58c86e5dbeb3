//! The whole pipeline (probe, decode, resize, colour, orientation, encode) on one thread, per
//! input format and size class, with throughput in input pixels (criterion's `elem/s` is
//! input pixels per second, so `Melem/s` reads as input MP/s).

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, SamplingMode, Throughput};
use thumbd_benches::SizeClass;
use thumbd_engine::{InputFormat, Limits, Request};

fn main() {
    let Some(corpus) = common::corpus("end_to_end") else {
        return;
    };
    let mut c = common::criterion();
    let (request, limits) = (Request::default(), Limits::default());
    let mut group = c.benchmark_group("end_to_end");
    group.sampling_mode(SamplingMode::Flat);
    for format in [InputFormat::Jpeg, InputFormat::Png] {
        for class in SizeClass::ALL {
            let files = corpus.pick(common::PER_CLASS, |s| {
                s.info.format == format && s.class() == class
            });
            if files.is_empty() {
                eprintln!(
                    "end_to_end: no {} {class} file in the corpus",
                    format.name()
                );
                continue;
            }
            let pixels = files.iter().map(|s| s.info.pixels()).sum();
            group.throughput(Throughput::Elements(pixels));
            group.bench_function(BenchmarkId::new(format.name(), class.name()), |b| {
                b.iter(|| {
                    for s in &files {
                        let _ = black_box(thumbd_engine::thumbnail(&s.data, &request, &limits));
                    }
                })
            });
        }
    }
    group.finish();
    c.final_summary();
}
