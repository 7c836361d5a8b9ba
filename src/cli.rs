//! Command-line types only. Each command's behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "infraflux",
    version,
    about = "Declarative provisioning for Proxmox + Talos Kubernetes + GitOps",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration directory (defaults/, templates/, environments/, clusters/)
    #[arg(
        long,
        global = true,
        default_value = "config",
        env = "INFRAFLUX_CONFIG"
    )]
    pub config: PathBuf,
    /// When to colour output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// More log output (-v debug, -vv trace); logs go to stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check the configuration (exit 0 when clean, 1 with problems)
    Validate(ValidateArgs),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Compare the platform of two environments (the parity report)
    DiffEnv(DiffEnvArgs),
}

#[derive(Debug, Args)]
pub struct DiffEnvArgs {
    /// The environment promoted from, e.g. staging
    pub left: String,
    /// The environment promoted to, e.g. prod
    pub right: String,
    /// Print the differences as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only this environment
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    /// Only this cluster
    #[arg(long, short = 'c')]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Print findings as JSON (format documented in README, "validate --json")
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of one (environment, cluster) pair
    Show(ShowArgs),
    /// Print the JSON Schema of the configuration files (for editors)
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long = "env", short = 'e')]
    pub environment: String,
    #[arg(long, short = 'c')]
    pub cluster: String,
    /// Annotate each value with the file:line that set it
    #[arg(long)]
    pub provenance: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Schema of one kind of file (defaults, template, environment, cluster); default: any
    #[arg(long)]
    pub layer: Option<String>,
}
