//! One file per command: arguments → options → a pipeline call → output.

pub mod apply;
mod config;
pub mod destroy;
pub mod engine;
pub mod graph;
pub mod output;
pub mod plan;
pub mod state_store;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};

pub fn run(cli: Cli) -> miette::Result<ExitCode> {
    let output = output::Output::new(cli.global.color);
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Show(args)) => config::show(&cli.global, &args, &output),
        Command::Config(ConfigCommand::Schema(args)) => config::schema(&args),
        Command::Plan(args) => plan::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Apply(args) => apply::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Destroy(args) => destroy::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Graph(args) => graph::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
    }
}
