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
    /// Show what apply would change (exit 0; with --detailed-exitcode: 0 none, 2 changes)
    Plan(PlanArgs),
    /// Make the changes: plan and apply (asks for `yes`), or apply a saved plan
    Apply(ApplyArgs),
    /// Delete every resource of an environment (or cluster), dependants first
    Destroy(DestroyArgs),
    /// Print the resource graph in Graphviz DOT
    Graph(GraphArgs),
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

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Only this resource and what it depends on (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Replace this resource even if nothing changed (repeatable)
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Read the current state of every resource first (`--refresh=false` to skip)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Only record changes made outside InfraFlux; change nothing
    #[arg(long, conflicts_with_all = ["targets", "replace"])]
    pub refresh_only: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON (docs/plan-json.md)
    #[arg(long)]
    pub json: bool,
    /// Save the plan for `infraflux apply FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// A plan saved by `infraflux plan --out FILE` (applied as it is, without asking)
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Operations in flight at once
    #[arg(long, default_value_t = crate::apply::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Only this resource and what depends on it (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Operations in flight at once
    #[arg(long, default_value_t = crate::apply::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
}
