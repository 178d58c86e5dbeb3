//! Times the JPEG decode stage alone, per file (best of 5), to compare decode paths:
//!
//! ```text
//! cargo run --release -p thumbd-engine --example decode_timing -- full|2|4|8 FILE...
//! ```
//!
//! `full` is the engine's decode without shrinking (zune-jpeg); 2, 4 and 8 run the reduced
//! decoder alone at that scale, without its fallback. Prints each file's milliseconds (or
//! `failed`: the reduced decoder declined it) and the total of the files that decoded.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, paths)) = args.split_first() else {
        eprintln!("usage: decode_timing full|2|4|8 FILE...");
        std::process::exit(2);
    };
    let scale: Option<u32> = match mode.as_str() {
        "full" => None,
        s => Some(s.parse().expect("scale must be full, 2, 4 or 8")),
    };
    let mut total = 0.0;
    for path in paths {
        let data = std::fs::read(path).expect("read input");
        let Ok(info) = thumbd_engine::probe(&data, &thumbd_engine::Limits::default()) else {
            println!("  failed {path}");
            continue;
        };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            let result = match scale {
                None => thumbd_engine::stages::decode(&data, &info, 1),
                Some(scale) => thumbd_engine::stages::decode_jpeg_reduced(&data, &info, scale),
            };
            if let Err(err) = result {
                println!("  failed {path}: {err}");
                best = f64::NAN;
                break;
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
        }
        if !best.is_nan() {
            println!("{best:8.2} {path}");
            total += best;
        }
    }
    println!("total {total:.1} ms");
}
