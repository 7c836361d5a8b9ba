//! Command-line types only. Each command's behaviour lives in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "infraflux",
    version,
    about = "Declarative provisioning for Proxmox + Talos Kubernetes + GitOps",
    propagate_version = true,
    // A flag given twice takes its last value (an alias or wrapper that sets `--color`
    // can still be overridden), as with git and cargo.
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
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
    /// Directory whose .infraflux/state/ holds the state [default: the directory that
    /// holds the configuration directory, e.g. `.` for `--config config`]
    #[arg(long, global = true, value_name = "DIR", env = "INFRAFLUX_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A directory laid out like the configuration whose files merge after the
    /// configuration's own (repeatable), e.g. the one `infraflux lab up` writes
    #[arg(long, global = true, value_name = "DIR", env = "INFRAFLUX_OVERLAY")]
    pub overlay: Vec<PathBuf>,
    /// A directory `${file:…}` may read besides the configuration's own (repeatable),
    /// e.g. /run/secrets; the configuration cannot allow this itself
    #[arg(
        long = "allow-file-dir",
        global = true,
        value_name = "DIR",
        env = "INFRAFLUX_ALLOW_FILE_DIRS",
        value_delimiter = ':'
    )]
    pub allow_file_dirs: Vec<PathBuf>,
    /// Where state lives: local files, or PostgreSQL (connection string in
    /// INFRAFLUX_STATE_POSTGRES_URL) [default: local]
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "BACKEND",
        env = "INFRAFLUX_STATE_BACKEND"
    )]
    pub state_backend: Option<StateBackend>,
    /// PostgreSQL backend: how long a lock lasts unless its run renews it (a killed run's
    /// lock expires after this) [default: 2m]
    #[arg(long, global = true, value_name = "DURATION", env = "INFRAFLUX_STATE_LEASE", value_parser = parse_duration)]
    pub state_lease: Option<Duration>,
    /// Offline mirror of the upstream release files InfraFlux installs (ArgoCD's
    /// `argo-cd-v3.5.1/install.yaml` and `ha-install.yaml`), read instead of the network
    /// and the cache; every file is checked against its pinned sha256
    #[arg(long, global = true, value_name = "DIR", env = "INFRAFLUX_MANIFESTS")]
    pub manifests: Option<PathBuf>,
}

impl GlobalArgs {
    /// The configuration directory with its overlays, for `load_config`/`load_model`.
    pub fn config_paths(&self) -> crate::config::ConfigPaths<'_> {
        crate::config::ConfigPaths {
            dir: &self.config,
            overlays: &self.overlay,
            file_dirs: &self.allow_file_dirs,
        }
    }
}

/// Where state documents are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateBackend {
    /// Files in .infraflux/state/ (see --state-dir)
    Local,
    /// A PostgreSQL database (INFRAFLUX_STATE_POSTGRES_URL), locks as leases
    Postgres,
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
    /// Inspect and edit the recorded state (one document per environment)
    #[command(subcommand)]
    State(StateCommand),
    /// Show what apply would change (exit 0; with --detailed-exitcode: 0 none, 2 changes)
    Plan(PlanArgs),
    /// Make the changes: plan and apply (asks for `yes`), or apply a saved plan
    Apply(ApplyArgs),
    /// Delete every resource of an environment (or cluster), dependants first
    Destroy(DestroyArgs),
    /// Print the resource graph in Graphviz DOT
    Graph(GraphArgs),
    /// Adopt an existing object under an address of the configuration
    Import(ImportArgs),
    /// Talos helpers
    #[command(subcommand)]
    Talos(TalosCommand),
    /// Age-encrypted secrets in the configuration (README "Secrets in configuration")
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// A local lab: simulated Proxmox, Talos and Kubernetes on loopback
    #[cfg(feature = "lab")]
    #[command(subcommand)]
    Lab(LabCommand),
    /// Apply each environment in promotion order (dev → staging → prod) and wait for its
    /// ready signal (exit 0 ready, 1 failed or not ready, 130 interrupted)
    Bootstrap(BootstrapArgs),
    /// Print a shell completion script, e.g. `infraflux completions bash >
    /// /etc/bash_completion.d/infraflux`
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Decrypt FILE into $VISUAL/$EDITOR, check the YAML, encrypt it again (creates FILE when missing)
    Edit(SecretsFileArgs),
    /// Encrypt a plaintext YAML file in place
    Encrypt(SecretsFileArgs),
    /// Print the plaintext of an encrypted file to stdout
    Decrypt(SecretsFileArgs),
}

#[derive(Debug, Args)]
pub struct SecretsFileArgs {
    /// The file, e.g. config/secrets/prod.yaml or config/environments/prod.age.yaml
    pub file: PathBuf,
}

#[cfg(feature = "lab")]
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Plan, apply and plan again against a lab in this process (exit 1 if a step fails or the second plan is not empty)
    Run(LabRunArgs),
    /// Start a lab in the background and write a configuration overlay pointing at it
    Up(LabUpArgs),
    /// Stop the background lab and remove its overlay and state
    Down,
    /// Show whether a background lab runs, and where (exit 1 when none does)
    Status,
    /// Run the lab in the foreground until SIGTERM (what `lab up` starts)
    #[command(hide = true)]
    Serve(LabUpArgs),
}

#[cfg(feature = "lab")]
#[derive(Debug, Args)]
pub struct LabRunArgs {
    /// The environment to run
    #[arg(long = "env", short = 'e', default_value = "dev")]
    pub environment: String,
}

#[cfg(feature = "lab")]
#[derive(Debug, Args)]
pub struct LabUpArgs {
    /// Only this environment [default: every environment of the configuration]
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Write every manifest and machine config it would apply into DIR instead, touching
    /// no cluster (DIR/<env>/<cluster>/{kubernetes,talos}/)
    #[arg(long, value_name = "DIR")]
    pub render: Option<PathBuf>,
    /// How long to wait for each cluster's ready signal (e.g. 30s, 10m)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Do not ask for confirmation before applying
    #[arg(long)]
    pub auto_approve: bool,
    /// Operations in flight at once
    #[arg(long, default_value_t = crate::apply::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
    /// Print the result as JSON on standard output (README, "Bootstrap"); plans and
    /// progress go to standard error
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses of the resources in state, one per line
    List(StateListArgs),
    /// Show what state records about one resource (secrets shown as `(sensitive)`)
    Show(StateShowArgs),
    /// Forget resources: they keep running, InfraFlux stops managing them
    Rm(StateRmArgs),
    /// Rename a resource in state (same environment, same type)
    Mv(StateMvArgs),
    /// Break a lock left behind by a run that is gone
    Unlock(StateUnlockArgs),
    /// Re-encrypt state to the configured recipients (INFRAFLUX_STATE_RECIPIENTS), e.g. after a key rotation
    Rekey(StateRekeyArgs),
    /// Copy every environment's state to another backend (local files ↔ PostgreSQL)
    Migrate(StateMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StateMigrateArgs {
    /// The backend to copy to; the other one is read
    #[arg(long, value_enum)]
    pub to: StateBackend,
    /// Only this environment [default: every environment with state]
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct StateRekeyArgs {
    /// Only this environment [default: every environment with state]
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct StateListArgs {
    /// Only this environment [default: every environment with state]
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
    /// Print a JSON array of {address, type, provider, id, status}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateShowArgs {
    /// Resource address: environment/cluster/type.name, e.g. prod/workload/proxmox_vm.cp-1
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// Print JSON instead of YAML
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateRmArgs {
    /// Resource addresses: environment/cluster/type.name, e.g. prod/workload/proxmox_vm.cp-1
    #[arg(value_name = "ADDR", required = true)]
    pub addresses: Vec<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct StateMvArgs {
    /// Current address
    #[arg(value_name = "FROM")]
    pub from: String,
    /// New address (same environment and type)
    #[arg(value_name = "TO")]
    pub to: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct StateUnlockArgs {
    /// The lock ID, as shown by the command that found the state locked
    #[arg(value_name = "ID")]
    pub id: String,
    /// The locked environment [default: the one whose lock has this ID]
    #[arg(long = "env", short = 'e')]
    pub environment: Option<String>,
}

/// Options of every command that takes the state lock.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// How long to wait for a lock held by another run (e.g. 30s, 5m, 1h30m); 0 fails at once
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub lock_timeout: Duration,
}

/// `0`, `500ms`, `30s`, `5m`, `1h30m`: whole numbers, each with a unit (ms, s, m, h).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || format!("invalid duration `{text}`: expected e.g. 30s, 5m, 1h30m or 0");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `plan --refresh`: how much of what exists a plan reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Refresh {
    /// What each provider's listings show, and in full what they show changed.
    True,
    /// Every resource in full (see each provider's README for the cost in API calls).
    Deep,
    /// Nothing but records an interrupted apply left pending.
    False,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Only this resource and what it depends on (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Replace this resource even if nothing changed (repeatable)
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Read the current state of every resource first: `true` (the cheap read, from
    /// listings), `deep` (every resource read in full; more API calls), `false` (skip)
    #[arg(long, value_enum, default_value_t = Refresh::True, num_args = 0..=1, default_missing_value = "true", value_name = "true|deep|false")]
    pub refresh: Refresh,
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
    #[command(flatten)]
    pub lock: LockArgs,
    /// A plan saved by `infraflux plan --out FILE` (applied as it is, without asking)
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Operations in flight at once
    #[arg(long, default_value_t = crate::apply::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
    /// Apply even though the previous environment (by sync wave) was not last applied
    /// with this configuration; the override is recorded in state
    #[arg(long)]
    pub skip_promotion_check: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub lock: LockArgs,
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

#[derive(Debug, Subcommand)]
pub enum TalosCommand {
    /// Write a talosconfig for talosctl from the cluster's secrets in state
    Config(TalosConfigArgs),
    /// Write every node's machine config (`<node>.yaml`, mode 0600) from the configuration
    /// and the cluster's secrets in state, for review or `talosctl apply-config`
    Render(TalosRenderArgs),
}

#[derive(Debug, Args)]
pub struct TalosRenderArgs {
    #[arg(long = "env", short = 'e')]
    pub environment: String,
    #[arg(long, short = 'c')]
    pub cluster: String,
    /// Directory to write the configs into (created mode 0700 when missing)
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct TalosConfigArgs {
    #[arg(long = "env", short = 'e')]
    pub environment: String,
    #[arg(long, short = 'c')]
    pub cluster: String,
    /// Where to write it (mode 0600); `-` prints it to standard output
    #[arg(long, default_value = "talosconfig")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Resource address from the configuration, e.g. prod/workload/proxmox_vm.cp-1
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// The provider's ID of the existing object (e.g. a Proxmox VMID)
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let ok = |text| parse_duration(text).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        for bad in ["", "5", "s", "5x", "1.5s", "-1s", "5m3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// Issue 14: `--refresh=deep` is documented, so it is accepted.
    #[test]
    fn refresh_takes_true_deep_or_false() {
        let refresh = |args: &[&str]| {
            let cli = Cli::try_parse_from(["infraflux", "plan"].iter().chain(args))
                .map_err(|e| e.to_string())?;
            match cli.command {
                Command::Plan(plan) => Ok(plan.refresh),
                other => Err(format!("{other:?}")),
            }
        };
        assert_eq!(refresh(&[]), Ok(Refresh::True));
        assert_eq!(refresh(&["--refresh"]), Ok(Refresh::True));
        assert_eq!(refresh(&["--refresh=deep"]), Ok(Refresh::Deep));
        assert_eq!(refresh(&["--refresh", "false"]), Ok(Refresh::False));
        let error = refresh(&["--refresh=shallow"]).unwrap_err();
        assert!(
            error.contains("possible values: true, deep, false"),
            "{error}"
        );
    }
}
