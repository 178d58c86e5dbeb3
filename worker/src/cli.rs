//! Command-line interface. Every flag's default is shown in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thumbd_engine::{Filter, Fit, Limits, OutputFormat, Request};

/// thumbd: fast, memory-bounded thumbnails of JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC and AVIF images.
#[derive(Debug, Parser)]
#[command(name = "thumbd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make thumbnails of files and folders (a batch run on all cores).
    ///
    /// Each input file becomes `<OUT>/<name>/<size>.<ext>`, as the worker names thumbnails:
    /// a file given directly is named by its file name (`a.jpg` → `<OUT>/a.jpg/256.jpg`), a
    /// file found in a folder by the folder's name and its inner path (`photos/a.jpg` →
    /// `<OUT>/photos/a.jpg/256.jpg`); inputs of the same name from different places keep as
    /// many parent folders as it takes to tell them apart (`one/a.jpg`, `two/a.jpg`). Folders
    /// are walked recursively for image-named files (jpg, jpeg, jpe, jfif, mpo, png, gif,
    /// webp, bmp, tif, tiff, avif, heic, heif, jxl; hidden files skipped); the format is always
    /// sniffed from the bytes. Exit status: 0 all inputs succeeded, 1 some failed (the others
    /// are still processed), 2 usage error.
    Thumbnail(ThumbnailArgs),

    /// Run the streaming worker: Cloud Storage notifications on Pub/Sub → thumbnails in Cloud
    /// Storage (with `--subscription`), or a local folder → a local folder (with `--watch`).
    ///
    /// Every flag has a `THUMBD_*` environment variable (shown below); the image settings'
    /// variables also apply to `thumbd thumbnail`. Thumbnails are written as
    /// `<prefix><object name>/<size>.<ext>`. The standard `PUBSUB_EMULATOR_HOST` and
    /// `STORAGE_EMULATOR_HOST` switch to the emulators with anonymous credentials; otherwise
    /// Application Default Credentials are used. Exit status: 0 after a clean shutdown
    /// (SIGTERM/SIGINT), 1 on a runtime failure, 2 on invalid configuration.
    Worker(Box<crate::service::config::WorkerArgs>),

    /// Run the application: a gallery page and an upload API in front of the worker.
    ///
    /// Clients upload images (checked from their header before anything is stored), watch
    /// thumbnails appear live, and list recent uploads. `--local DIR` runs everything in this
    /// process with folders; otherwise uploads go to `--upload-bucket`, thumbnails are read
    /// from `--thumbnail-bucket`, and live updates come from `--events-subscription` (the
    /// worker's events). Every flag has a `THUMBD_*` environment variable; the standard
    /// `PUBSUB_EMULATOR_HOST` and `STORAGE_EMULATOR_HOST` switch to the emulators. Exit
    /// status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a runtime failure, 2 on invalid
    /// configuration.
    Serve(Box<crate::app::config::ServeArgs>),

    /// Mail one message per ready or failed image: pulls a subscription on the worker's
    /// `--events-topic` and sends through an SMTP server.
    ///
    /// Every flag has a `THUMBD_*` environment variable (shown below); the SMTP password is
    /// read from `THUMBD_SMTP_PASSWORD` only. A message is acked once the mail server accepted
    /// its mail, nacked (redelivered) when it did not; copies of an event already mailed are
    /// skipped. `PUBSUB_EMULATOR_HOST` switches to the emulator with anonymous credentials.
    /// Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a runtime failure, 2 on
    /// invalid configuration.
    Notify(Box<crate::notify::config::NotifyArgs>),
}

#[derive(Debug, Args)]
pub struct ThumbnailArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output folder (created if missing).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Worker threads [default: the CPUs this container may use (cgroup CPU quota aware)].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Print one JSON object per input on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// Thumbnail settings shared by the batch CLI and the worker.
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Box side in pixels; repeat for several sizes from one decode.
    #[arg(long = "size", short = 's', value_name = "N", default_value = "256",
          env = "THUMBD_SIZE", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub sizes: Vec<u32>,

    /// How the image fits the N×N box: `inside` keeps it whole, `cover` fills and centre-crops.
    #[arg(long, value_enum, default_value_t = FitArg::Inside, env = "THUMBD_FIT")]
    pub fit: FitArg,

    /// Output format. `avif` needs a thumbd built with the `avif` feature (system libheif with
    /// its aom encoder); without it, `avif` is refused as a usage error (exit status 2).
    #[arg(long, value_name = "FORMAT", default_value = "jpeg", env = "THUMBD_FORMAT",
          value_parser = format_parser())]
    pub format: FormatArg,

    /// JPEG/WebP/AVIF quality, 1-100 (AVIF maps it to about JPEG's quality at the same number).
    #[arg(long, short = 'q', default_value_t = 80, env = "THUMBD_QUALITY",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Write progressive JPEG.
    #[arg(long, env = "THUMBD_PROGRESSIVE")]
    pub progressive: bool,

    /// Resampling filter of the final resize step.
    #[arg(long, value_enum, default_value_t = FilterArg::Lanczos3, env = "THUMBD_FILTER")]
    pub filter: FilterArg,

    /// Background for transparent pixels in JPEG output, as RRGGBB hex.
    #[arg(long, value_name = "RRGGBB", default_value = "ffffff", value_parser = parse_hex_color,
          env = "THUMBD_BACKGROUND")]
    pub background: [u8; 3],

    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_pixels,
          env = "THUMBD_MAX_PIXELS")]
    pub max_pixels: u64,

    /// Refuse inputs larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_input_bytes,
          env = "THUMBD_MAX_INPUT_BYTES")]
    pub max_input_bytes: u64,
}

impl ImageArgs {
    pub fn request(&self) -> Request {
        let mut sizes = self.sizes.clone();
        sizes.dedup();
        Request {
            sizes,
            fit: match self.fit {
                FitArg::Inside => Fit::Inside,
                FitArg::Cover => Fit::Cover,
            },
            format: match self.format {
                FormatArg::Jpeg => OutputFormat::Jpeg,
                FormatArg::Png => OutputFormat::Png,
                FormatArg::Webp => OutputFormat::Webp,
                #[cfg(feature = "avif")]
                FormatArg::Avif => OutputFormat::Avif,
            },
            quality: self.quality,
            progressive: self.progressive,
            filter: match self.filter {
                FilterArg::Lanczos3 => Filter::Lanczos3,
                FilterArg::CatmullRom => Filter::CatmullRom,
                FilterArg::Mitchell => Filter::Mitchell,
                FilterArg::Hamming => Filter::Hamming,
                FilterArg::Bilinear => Filter::Bilinear,
                FilterArg::Box => Filter::Box,
            },
            background: self.background,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.max_pixels,
            max_input_bytes: self.max_input_bytes,
            ..Limits::default()
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FitArg {
    Inside,
    Cover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    Jpeg,
    Png,
    Webp,
    /// Only in a build with the `avif` feature.
    #[cfg(feature = "avif")]
    Avif,
}

/// What a build without the `avif` feature says to `--format avif` (or `THUMBD_FORMAT=avif`).
pub const AVIF_NOT_BUILT: &str = "this thumbd was built without the `avif` feature (AVIF output \
     needs the system libheif with its aom encoder: build with `--features avif`)";

/// `--format`: every format is listed, `avif` too; a build without the `avif` feature refuses
/// it with [`AVIF_NOT_BUILT`], a usage error like any bad value.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = FormatArg> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let avif = PossibleValue::new("avif");
    #[cfg(not(feature = "avif"))]
    let avif = avif.help("not in this build (needs the `avif` feature)");
    PossibleValuesParser::new([
        PossibleValue::new("jpeg"),
        PossibleValue::new("png"),
        PossibleValue::new("webp"),
        avif,
    ])
    .try_map(|name: String| match name.as_str() {
        "jpeg" => Ok(FormatArg::Jpeg),
        "png" => Ok(FormatArg::Png),
        "webp" => Ok(FormatArg::Webp),
        #[cfg(feature = "avif")]
        "avif" => Ok(FormatArg::Avif),
        #[cfg(not(feature = "avif"))]
        "avif" => Err(AVIF_NOT_BUILT.to_string()),
        other => Err(format!("unknown format `{other}`")),
    })
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FilterArg {
    Lanczos3,
    CatmullRom,
    Mitchell,
    Hamming,
    Bilinear,
    Box,
}

fn parse_hex_color(s: &str) -> Result<[u8; 3], String> {
    let hex = s.trim_start_matches('#');
    let valid = hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return Err(format!("`{s}` is not an RRGGBB hex colour"));
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn format_of(args: &[&str]) -> Result<FormatArg, clap::Error> {
        let argv = ["thumbd", "thumbnail", "-o", "out", "in.jpg"];
        let cli = Cli::try_parse_from(argv.iter().chain(args))?;
        match cli.command {
            Command::Thumbnail(t) => Ok(t.image.format),
            _ => unreachable!(),
        }
    }

    #[test]
    fn formats_parse_and_avif_needs_its_feature() {
        assert_eq!(format_of(&[]).unwrap(), FormatArg::Jpeg);
        assert_eq!(format_of(&["--format", "webp"]).unwrap(), FormatArg::Webp);
        assert!(format_of(&["--format", "gif"]).is_err());
        let avif = format_of(&["--format", "avif"]);
        #[cfg(feature = "avif")]
        assert_eq!(avif.unwrap(), FormatArg::Avif);
        #[cfg(not(feature = "avif"))]
        {
            let err = avif.unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(AVIF_NOT_BUILT), "{err}");
        }
    }

    #[test]
    fn hex_colours() {
        assert_eq!(parse_hex_color("#ff8000"), Ok([255, 128, 0]));
        assert!(parse_hex_color("fff").is_err());
    }
}
