use std::process::ExitCode;

use clap::Parser;
use thumbd::cli::{Cli, Command};

/// mimalloc: fast multi-threaded allocation and prompt return of large freed buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A pod's log is read line by line: a worker's bad flag or THUMBD_* value (say, from
        // a ConfigMap) is one line and exit code 2, as the worker's own checks report.
        Err(err) if err.use_stderr() && is_service(std::env::args().nth(1).as_deref()) => {
            eprintln!(
                "thumbd {}: invalid configuration: {}",
                std::env::args().nth(1).unwrap_or_default(),
                one_line(&err.render().to_string())
            );
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    // Freed decode buffers go back to the OS at once (see `alloc.rs` for the measurements).
    thumbd::alloc::purge_promptly();
    let result = match cli.command {
        Command::Thumbnail(args) => thumbd::batch::run(args),
        Command::Worker(args) => match thumbd::service::run(*args) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(err @ thumbd::service::WorkerError::Config(_)) => {
                eprintln!("thumbd worker: {err}");
                return ExitCode::from(2);
            }
            Err(err) => Err(anyhow::Error::new(err)),
        },
        Command::Serve(args) => match thumbd::app::run(*args) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(err) if err.is_config() => {
                eprintln!("thumbd serve: {err}");
                return ExitCode::from(2);
            }
            Err(err) => Err(anyhow::Error::new(err)),
        },
        Command::Notify(args) => match thumbd::notify::run(*args) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(err @ thumbd::notify::NotifyError::Config(_)) => {
                eprintln!("thumbd notify: {err}");
                return ExitCode::from(2);
            }
            Err(err) => Err(anyhow::Error::new(err)),
        },
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("thumbd: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// The long-running subcommands, whose logs are read line by line.
fn is_service(subcommand: Option<&str>) -> bool {
    matches!(subcommand, Some("worker" | "serve" | "notify"))
}

/// clap's multi-line error as one line, without its "error:" label and "--help" hint.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}
