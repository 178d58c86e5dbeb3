//! Reduced-scale JPEG decoding per scale and JPEG kind, against zune-jpeg's full decode, on
//! committed corpus files: `cargo bench -p thumbd-engine --bench jpeg_scaled`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use thumbd_engine::{probe, stages, Limits};

/// (kind, file in `corpus/`).
const FILES: &[(&str, &str)] = &[
    ("baseline-444", "plasma_PastelHills_3200x2000.jpg"),
    ("baseline-444-restart", "xplanet_earth.jpg"),
    ("progressive-422", "lomiri16_Wine_by_Jakkub_Mede.jpg"),
];

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut group = c.benchmark_group("jpeg_decode");
    group.sample_size(10);
    for &(kind, name) in FILES {
        let data = std::fs::read(dir.join(name)).expect("corpus file");
        let info = probe(&data, &Limits::default()).expect("probe");
        group.throughput(Throughput::Elements(info.pixels()));
        group.bench_with_input(BenchmarkId::new("full", kind), &data, |b, data| {
            b.iter(|| stages::decode(data, &info, 1).expect("full decode"))
        });
        for scale in [8u32, 4, 2] {
            let id = BenchmarkId::new(format!("reduced-1_{scale}"), kind);
            group.bench_with_input(id, &data, |b, data| {
                b.iter(|| stages::decode_jpeg_reduced(data, &info, scale).expect("reduced"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
