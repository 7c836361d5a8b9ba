//! One file per command: arguments → options → a pipeline call → output.

mod config;
mod diff_env;
pub mod output;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};

pub fn run(cli: Cli) -> miette::Result<ExitCode> {
    let output = output::Output::new(cli.global.color);
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Show(args)) => config::show(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Schema(args)) => config::schema(&args),
        Command::DiffEnv(args) => diff_env::run(&cli.global, &args, &output),
    }
}
