//! The regression guard CI runs (`benches/guard`). Wall-clock timings on a shared 2-core machine
//! swing by 10–30 %, so the guard counts instructions instead: each case runs one engine stage
//! on a small fixed file of the committed corpus under `valgrind --tool=callgrind`, collecting
//! only inside [`measure`], and the count is compared with `benches/guard-baseline.json`.
//!
//! ```text
//! cargo bench -p thumbd-benches --bench guard -- check [--update] [--tolerance PCT] [CASE...]
//! cargo bench -p thumbd-benches --bench guard -- list
//! cargo bench -p thumbd-benches --bench guard -- run CASE   # the workload `check` runs under valgrind
//! ```
//! Exit status of `check`: 0 all within tolerance (or baseline updated), 1 a regression or a
//! failed case, 2 a usage or set-up error (no valgrind, no baseline).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use thumbd_benches::{callgrind_total, committed_file, workspace_root};
use thumbd_engine::stages::{self, Pixels};
use thumbd_engine::{plan, probe, Filter, Fit, Limits, OutputFormat, Request};

/// What one case exercises.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// `stages::decode` at full size (shrink 1): the decoder's own cost.
    Decode,
    /// `stages::decode` with the shrink-on-load factor the pipeline takes for the 256 px box.
    DecodeShrunk,
    /// The reduced JPEG decoder alone at 1/`scale` (`stages::decode_jpeg_reduced`).
    DecodeReduced(u32),
    /// `stages::resize` of the full decode to the 256 px box with this filter.
    Resize(Filter),
    /// `stages::encode` of the 256 px thumbnail in this format.
    Encode(OutputFormat),
    /// `thumbnail()` with the default request: what users get.
    EndToEnd,
}

/// A guard case: a stage on a fixed input from the committed corpus.
struct Case {
    name: &'static str,
    input: &'static str,
    stage: Stage,
}

/// Small inputs (≤ 0.8 MP; one JPEG-in-TIFF and one RGBA PNG of 4 MP) so the whole guard stays
/// near a minute under valgrind.
const CASES: &[Case] = &[
    Case {
        name: "decode_jpeg_baseline",
        input: "pil_junk_jpeg_header.jpg", // 1024x768 4:2:0 baseline
        stage: Stage::Decode,
    },
    Case {
        name: "decode_jpeg_progressive",
        input: "imdoc_wizard.jpg", // 265x352 4:4:4 progressive
        stage: Stage::Decode,
    },
    Case {
        name: "decode_jpeg_reduced_baseline_1_4",
        input: "xplanet_earth.jpg", // 2048x1024 4:4:4 baseline, restart markers
        stage: Stage::DecodeReduced(4),
    },
    Case {
        name: "decode_jpeg_reduced_progressive_1_8",
        input: "lomiri16_Wine_by_Jakkub_Mede.jpg", // 2560x3837 4:2:2 progressive: DC scans only
        stage: Stage::DecodeReduced(8),
    },
    Case {
        name: "decode_jpeg_reduced_progressive_1_2",
        input: "imdoc_wizard.jpg", // 265x352 4:4:4 progressive: every scan, 4x4 basis sums
        stage: Stage::DecodeReduced(2),
    },
    Case {
        name: "decode_png_rgb8",
        input: "pil_exif.png", // 512x512 RGB 8-bit
        stage: Stage::Decode,
    },
    Case {
        name: "decode_png_rgb8_paeth",
        input: "pil_hopper_idat_after_image_end.png", // 128x128 RGB: 99 of 128 rows Paeth (SSE4.1 pairs)
        stage: Stage::Decode,
    },
    Case {
        name: "decode_png_rgba8",
        input: "pil_uncompressed_rgb.png", // 800x600 RGBA 8-bit
        stage: Stage::Decode,
    },
    Case {
        name: "decode_png_rgba8_shrunk",
        input: "plasma_FlyingKonqui_2560x1600.png", // RGBA 8-bit, box-reduced by 5 on load
        stage: Stage::DecodeShrunk,
    },
    Case {
        name: "decode_png_rgba16",
        input: "imdoc_cylinder_shaded.png", // 320x200 RGBA 16-bit
        stage: Stage::Decode,
    },
    Case {
        name: "decode_gif",
        input: "formats/derived_gif_static_rocket.gif", // palette expansion, full size
        stage: Stage::Decode,
    },
    Case {
        name: "decode_tiff_lzw",
        input: "formats/derived_tiff_orient6_lzw_coffee.tif", // RGB 8-bit LZW
        stage: Stage::Decode,
    },
    Case {
        name: "decode_tiff_jpeg",
        input: "formats/derived_tiff_jpeg_ycbcr_BytheWater.tif", // JPEG-in-TIFF, YCbCr to RGB
        stage: Stage::Decode,
    },
    Case {
        name: "decode_webp_animated",
        input: "formats/derived_webp_anim4_BytheWater.webp", // first frame onto the canvas
        stage: Stage::Decode,
    },
    Case {
        name: "end_to_end_gif_alpha",
        input: "formats/derived_gif_transparent_astronaut.gif", // flatten for JPEG output
        stage: Stage::EndToEnd,
    },
    Case {
        name: "resize_lanczos3_rgb",
        input: "pil_junk_jpeg_header.jpg",
        stage: Stage::Resize(Filter::Lanczos3),
    },
    Case {
        name: "resize_lanczos3_rgba",
        input: "imdoc_cylinder_shaded.png",
        stage: Stage::Resize(Filter::Lanczos3),
    },
    Case {
        name: "encode_jpeg",
        input: "pil_junk_jpeg_header.jpg",
        stage: Stage::Encode(OutputFormat::Jpeg),
    },
    Case {
        name: "encode_png",
        input: "pil_junk_jpeg_header.jpg",
        stage: Stage::Encode(OutputFormat::Png),
    },
    Case {
        name: "encode_webp",
        input: "pil_junk_jpeg_header.jpg",
        stage: Stage::Encode(OutputFormat::Webp),
    },
    Case {
        name: "end_to_end_jpeg",
        input: "pil_junk_jpeg_header.jpg",
        stage: Stage::EndToEnd,
    },
    Case {
        name: "end_to_end_png",
        input: "pil_exif.png",
        stage: Stage::EndToEnd,
    },
];

/// Callgrind collects only between entry and exit of this function (`--toggle-collect`), so
/// reading the file and preparing the stage's input do not count.
#[inline(never)]
fn measure<T>(work: &dyn Fn() -> T) -> T {
    black_box(work())
}

/// The symbol pattern callgrind toggles collection on (this bench crate is named `guard`).
const TOGGLE: &str = "*guard::measure*";

/// Runs one case in this process (the child side of `check`).
fn run_case(case: &Case) -> Result<()> {
    let path = committed_file(case.input);
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let limits = Limits::default();
    let info = probe(&data, &limits)?;
    let request = Request::default();
    let decoded = || stages::decode(&data, &info, 1);
    let thumb = |full: &Pixels| {
        let target = plan(full.width(), full.height(), 256, Fit::Inside);
        stages::resize(full, target, Fit::Inside, Filter::Lanczos3)
    };
    // Every case runs its work once before the measured run, so one-off set-up (CPU feature
    // detection, thread-local scratch buffers, lazily built tables) is not counted.
    match case.stage {
        Stage::Decode => {
            decoded()?;
            measure(&decoded)?;
        }
        Stage::DecodeShrunk => {
            let target = plan(info.width, info.height, 256, Fit::Inside);
            let shrink = stages::shrink_on_load_factor(&info, target);
            let work = || stages::decode(&data, &info, shrink);
            work()?;
            measure(&work)?;
        }
        Stage::DecodeReduced(scale) => {
            let work = || stages::decode_jpeg_reduced(&data, &info, scale);
            work()?;
            measure(&work)?;
        }
        Stage::Resize(filter) => {
            let full = decoded()?;
            let target = plan(full.width(), full.height(), 256, Fit::Inside);
            let work = || stages::resize(&full, target, Fit::Inside, filter);
            work()?;
            measure(&work)?;
        }
        Stage::Encode(format) => {
            let small = thumb(&decoded()?)?;
            let request = Request { format, ..request };
            let work = || stages::encode(&small, &request);
            work()?;
            measure(&work)?;
        }
        Stage::EndToEnd => {
            let work = || thumbd_engine::thumbnail(&data, &request, &limits);
            work()?;
            measure(&work)?;
        }
    }
    Ok(())
}

/// The committed baseline.
#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    /// How the numbers were made; a different toolchain shifts counts by a few percent, so a
    /// mismatch is reported next to any failure.
    about: String,
    rustc: String,
    valgrind: String,
    /// Allowed increase, in percent.
    tolerance_pct: f64,
    cases: BTreeMap<String, BaselineCase>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BaselineCase {
    input: String,
    instructions: u64,
}

fn tool_version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `case` under callgrind and returns the instructions executed inside [`measure`].
fn count_instructions(case: &Case, scratch: &Path) -> Result<u64> {
    let exe = std::env::current_exe().context("locating the guard executable")?;
    let out = scratch.join(format!("callgrind.{}.out", case.name));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect={TOGGLE}"))
        .arg(&exe)
        .args(["run", case.name])
        .output()
        .context("running valgrind (install it: apt-get install valgrind)")?;
    if !output.status.success() {
        bail!(
            "{} failed under valgrind: {}",
            case.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    callgrind_total(&text).with_context(|| format!("no totals in {}", out.display()))
}

struct CheckArgs {
    update: bool,
    tolerance: Option<f64>,
    baseline: PathBuf,
    only: Vec<String>,
}

fn parse_check_args(args: &[String]) -> Result<CheckArgs> {
    let mut parsed = CheckArgs {
        update: false,
        tolerance: None,
        baseline: workspace_root().join("benches/guard-baseline.json"),
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--update" => parsed.update = true,
            "--tolerance" => {
                let v = it.next().context("--tolerance needs a percentage")?;
                parsed.tolerance = Some(v.parse().context("--tolerance: not a number")?);
            }
            "--baseline" => {
                parsed.baseline = it.next().context("--baseline needs a path")?.into();
            }
            name if CASES.iter().any(|c| c.name == name) => parsed.only.push(name.into()),
            other => bail!("unknown argument {other:?} (see `benches/guard list`)"),
        }
    }
    Ok(parsed)
}

/// Counts every case and compares with (or with `--update`, rewrites) the baseline.
fn check(args: CheckArgs) -> Result<ExitCode> {
    let previous: Option<Baseline> = match std::fs::read_to_string(&args.baseline) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", args.baseline.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.update => None,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "reading {} (create it with `benches/guard --update`)",
                    args.baseline.display()
                )
            })
        }
    };
    let tolerance = args
        .tolerance
        .or(previous.as_ref().map(|b| b.tolerance_pct))
        .unwrap_or(5.0);
    let rustc = tool_version("rustc", "-V");
    let valgrind = tool_version("valgrind", "--version");
    if valgrind == "unknown" {
        bail!("valgrind not found on PATH (apt-get install valgrind)");
    }
    let scratch = std::env::temp_dir().join(format!("thumbd-guard-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|o| o == c.name))
        .collect();
    println!(
        "{:<26} {:>15} {:>15} {:>8}  verdict",
        "case", "baseline Ir", "measured Ir", "change"
    );
    let mut measured = BTreeMap::new();
    let mut failed = false;
    for case in cases {
        let count = match count_instructions(case, &scratch) {
            Ok(n) => n,
            Err(e) => {
                println!("{:<26} error: {e:#}", case.name);
                failed = true;
                continue;
            }
        };
        let base = previous
            .as_ref()
            .and_then(|b| b.cases.get(case.name))
            .map(|c| c.instructions);
        let (change, verdict) = match base {
            Some(b) => {
                let pct = (count as f64 / b as f64 - 1.0) * 100.0;
                let verdict = if pct > tolerance {
                    failed |= !args.update;
                    "REGRESSION"
                } else if pct < -tolerance {
                    "faster (run benches/guard --update to keep it)"
                } else {
                    "ok"
                };
                (format!("{pct:+.2}%"), verdict)
            }
            None => ("-".into(), "new (no baseline)"),
        };
        let base = base.map_or("-".into(), |b| b.to_string());
        println!(
            "{:<26} {base:>15} {count:>15} {change:>8}  {verdict}",
            case.name
        );
        measured.insert(
            case.name.to_string(),
            BaselineCase {
                input: format!("corpus/{}", case.input),
                instructions: count,
            },
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);

    if args.update {
        let mut cases = previous.map(|b| b.cases).unwrap_or_default();
        cases.extend(measured);
        let baseline = Baseline {
            about: "Instructions (callgrind Ir) executed inside one run of each stage; \
                    written by `benches/guard --update`"
                .into(),
            rustc,
            valgrind,
            tolerance_pct: tolerance,
            cases,
        };
        std::fs::write(
            &args.baseline,
            serde_json::to_string_pretty(&baseline)? + "\n",
        )?;
        println!("wrote {}", args.baseline.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(b) = &previous {
        if failed && (b.rustc != rustc || b.valgrind != valgrind) {
            println!(
                "note: baseline made with {} / {}, this run {rustc} / {valgrind}: a toolchain \
                 change shifts counts; if no engine code changed, run benches/guard --update",
                b.rustc, b.valgrind
            );
        }
    }
    if failed {
        println!("guard: FAILED (tolerance {tolerance}%)");
        Ok(ExitCode::from(1))
    } else {
        println!("guard: ok (tolerance {tolerance}%)");
        Ok(ExitCode::SUCCESS)
    }
}

fn main() -> ExitCode {
    // `cargo bench` appends `--bench` to a bench target's arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => match args.get(1).and_then(|n| CASES.iter().find(|c| c.name == n)) {
            Some(case) => run_case(case).map(|()| ExitCode::SUCCESS),
            None => Err(anyhow::anyhow!(
                "run: unknown case (see `benches/guard list`)"
            )),
        },
        Some("check") => parse_check_args(&args[1..]).and_then(check),
        Some("list") => {
            for case in CASES {
                println!("{:<26} corpus/{}", case.name, case.input);
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!(
                "usage: benches/guard [--update] [--tolerance PCT] [--baseline FILE] [CASE...]\n\
                 \x20      (the guard executable: check ... | list | run CASE)"
            );
            return ExitCode::from(2);
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("guard: {e:#}");
        ExitCode::from(2)
    })
}
