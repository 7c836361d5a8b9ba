//! The `infraflux` binary: parse arguments, set up logging, run the command, exit.
//!
//! Exit codes: 0 success; 1 problems in the input or a failed operation; 2 bad usage
//! (clap's own); later stages add 2 for "changes present" under --detailed-exitcode and
//! 130 for an interrupted apply.

use std::process::ExitCode;

use clap::Parser;

use infraflux::cli::Cli;
use infraflux::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "infraflux=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFRAFLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
