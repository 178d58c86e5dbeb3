use std::process::ExitCode;

use clap::Parser;
use thumbd::cli::{Cli, Command};

/// mimalloc: fast multi-threaded allocation and prompt return of large freed buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("thumbd: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
