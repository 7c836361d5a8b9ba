//! The command layer: one small file per command, clap arguments → a request → an
//! operation ([`crate::operation`]) → output. [`run`] wires the real process;
//! [`run_in`] runs an engine command in a context of the caller's (tests, the lab).

pub mod apply;
pub mod bootstrap;
mod config;
pub mod destroy;
mod diff_env;
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
pub mod wiring;

use std::process::ExitCode;

use crate::cli::{
    Cli, Command, ConfigCommand, GlobalArgs, SecretsCommand, StateCommand, TalosCommand,
};
use crate::config::ProcessVariables;
use crate::operation::{Context, Workspace};

pub use wiring::{providers, providers_with};

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
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Written whole at the end: clap_complete panics on a write error, and a
            // reader that stops early (`| head`) is no reason to.
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "infraflux", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets(command) => match command {
            SecretsCommand::Edit(args) => secrets::edit(&args),
            SecretsCommand::Encrypt(args) => secrets::encrypt(&args),
            SecretsCommand::Decrypt(args) => secrets::decrypt(&args),
        },
        #[cfg(feature = "lab")]
        Command::Lab(command) => lab::run(&cli.global, command, &output),
        engine => {
            // The configuration is read here, once: the state backend setting and every
            // stage of the operation are taken from this one read.
            let workspace = Workspace::read(cli.global.config_paths(), &ProcessVariables);
            let context = wiring::process_context(&cli.global, &output, &workspace);
            run_engine(&cli.global, &engine, &workspace, &context)
        }
    }
}

/// Run an engine command (plan, apply, destroy, graph, import, bootstrap, talos) in
/// `context`, reading the configuration once with the context's variables.
pub fn run_in(cli: &Cli, context: &Context) -> miette::Result<ExitCode> {
    let workspace = Workspace::read(cli.global.config_paths(), context.variables.as_ref());
    run_engine(&cli.global, &cli.command, &workspace, context)
}

fn run_engine(
    global: &GlobalArgs,
    command: &Command,
    workspace: &Workspace,
    context: &Context,
) -> miette::Result<ExitCode> {
    match command {
        Command::Plan(args) => plan::run(args, workspace, context),
        Command::Apply(args) => apply::run(global, args, workspace, context),
        Command::Destroy(args) => destroy::run(args, workspace, context),
        Command::Graph(args) => graph::run(args, workspace, context),
        Command::Import(args) => import::run(args, workspace, context),
        Command::Bootstrap(args) => bootstrap::run(global, args, workspace, context),
        Command::Talos(TalosCommand::Config(args)) => talos::config(args, workspace, context),
        Command::Talos(TalosCommand::Render(args)) => talos::render(args, workspace, context),
        other => Err(miette::miette!("not an engine command: {other:?}")),
    }
}
