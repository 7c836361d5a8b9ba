//! One file per command: arguments → options → a pipeline call → output.

pub mod apply;
pub mod bootstrap;
mod config;
pub mod destroy;
mod diff_env;
pub mod engine;
pub mod graph;
pub mod import;
#[cfg(feature = "lab")]
pub mod lab;
pub mod output;
pub mod plan;
pub mod secrets;
pub(crate) mod state;
pub mod talos;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand, SecretsCommand, StateCommand, TalosCommand};

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
            StateCommand::Rekey(args) => state::rekey(&cli.global, &args),
            StateCommand::Migrate(args) => state::migrate(&cli.global, &args),
        },
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
        Command::Import(args) => import::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Talos(TalosCommand::Config(args)) => talos::config(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Secrets(command) => match command {
            SecretsCommand::Edit(args) => secrets::edit(&args),
            SecretsCommand::Encrypt(args) => secrets::encrypt(&args),
            SecretsCommand::Decrypt(args) => secrets::decrypt(&args),
        },
        #[cfg(feature = "lab")]
        Command::Lab(command) => lab::run(&cli.global, command, &output),
        Command::Bootstrap(args) => bootstrap::run(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
        Command::Talos(TalosCommand::Render(args)) => talos::render(
            &cli.global,
            &args,
            &engine::Context::from_process(&cli.global, &output),
        ),
    }
}
