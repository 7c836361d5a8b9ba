//! The `infraflux` binary: parse arguments, set up logging, run the command, exit.
//!
//! Exit codes: 0 success; 1 problems in the input or a failed operation; 2 bad usage
//! (clap's own); later stages add 2 for "changes present" under --detailed-exitcode and
//! 130 for an interrupted apply.

use std::process::ExitCode;

use std::io::IsTerminal;

use clap::Parser;

use infraflux::cli::{Cli, ColorChoice};
use infraflux::commands;

/// mimalloc rather than glibc's malloc: a plan at fleet scale allocates and frees
/// millions of small JSON values, and glibc's malloc/free (with its consolidation) were
/// a third of its CPU time (issue 15, `cargo bench --bench cli_plan`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose, cli.global.color);
    init_reports(cli.global.color);
    match commands::run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

/// Top-level errors go through miette: coloured on a terminal, plain elsewhere, and not
/// re-wrapped off a terminal, so IDs and commands in help lines can be copied whole.
fn init_reports(choice: ColorChoice) {
    let tty = std::io::stderr().is_terminal();
    let color = infraflux::commands::output::use_color(choice, tty);
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(true)
                .wrap_lines(tty)
                .build(),
        )
    }));
}

/// Logs go to stderr, coloured as `--color` says (on a terminal by default): log lines
/// must not carry escape codes into a file or CI log when colour is off.
fn init_logging(verbose: u8, choice: ColorChoice) {
    let color = infraflux::commands::output::use_color(choice, std::io::stderr().is_terminal());
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
        .with_ansi(color)
        .with_target(false)
        .init();
}
