//! Thread sweep: the same batch through a rayon pool of 1..=cores threads, one image per task
//! as the batch CLI and the worker run it. Perfect scaling keeps elem/s (input pixels/s)
//! proportional to the thread count.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, SamplingMode, Throughput};
use rayon::prelude::*;
use thumbd_benches::{Sample, SizeClass};
use thumbd_engine::{InputFormat, Limits, Request};

fn main() {
    let Some(corpus) = common::corpus("threads") else {
        return;
    };
    let mut c = common::criterion();
    let (request, limits) = (Request::default(), Limits::default());
    // A small mixed batch: a couple of files of each format and class.
    let mut batch: Vec<&Sample> = Vec::new();
    for format in [InputFormat::Jpeg, InputFormat::Png] {
        for class in SizeClass::ALL {
            batch.extend(corpus.pick(2, |s| s.info.format == format && s.class() == class));
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("threads");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(
        batch.iter().map(|s| s.info.pixels()).sum(),
    ));
    for threads in 1..=cores {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        group.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter(|| {
                pool.install(|| {
                    batch.par_iter().with_max_len(1).for_each(|s| {
                        let _ = black_box(thumbd_engine::thumbnail(&s.data, &request, &limits));
                    })
                })
            })
        });
    }
    group.finish();
    c.final_summary();
}
