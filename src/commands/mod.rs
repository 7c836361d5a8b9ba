//! One file per command: arguments → options → a pipeline call → output.

mod config;
mod diff_env;
pub mod output;
mod state;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand, StateCommand};

pub fn run(cli: Cli) -> miette::Result<ExitCode> {
    let output = output::Output::new(cli.global.color);
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Show(args)) => config::show(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Schema(args)) => config::schema(&args),
        Command::DiffEnv(args) => diff_env::run(&cli.global, &args, &output),
        Command::State(command) => match command {
            StateCommand::List(args) => state::list(&cli.global, &args),
            StateCommand::Show(args) => state::show(&cli.global, &args),
            StateCommand::Rm(args) => state::rm(&cli.global, &args),
            StateCommand::Mv(args) => state::mv(&cli.global, &args),
            StateCommand::Unlock(args) => state::unlock(&cli.global, &args),
        },
    }
}
