//! `infraflux state list|show|rm|mv|unlock|rekey|migrate`: read and edit the recorded
//! state, in whichever backend is selected ([`open_store`]).
//!
//! Reads take no lock (every backend replaces a document atomically, so a read sees a
//! whole one); `rm` and `mv` edit under the environment's lock and bump the serial.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Once};

use miette::{Diagnostic, miette};
use serde::Serialize;

use crate::cli::{
    GlobalArgs, StateBackend, StateListArgs, StateMigrateArgs, StateMvArgs, StateRekeyArgs,
    StateRmArgs, StateShowArgs, StateUnlockArgs,
};
use crate::state::lock::{hostname, process_alive};
use crate::state::migrate::{Copied, copy_environment};
use crate::state::{
    self, Encryption, IdentitySource, LocalStore, LockInfo, PostgresStore, ResourceStatus,
    StateDocument, StateStore, select,
};
use crate::vocabulary::ResourceAddr;
use crate::vocabulary::Sensitive;

pub use crate::encryption::{IDENTITY_FILE_VAR, IDENTITY_VAR, PASSPHRASE_VAR, RECIPIENTS_VAR};

/// The encryption the user configured through the environment variables above (empty
/// values count as unset); `None` when none is.
pub(crate) fn encryption_from(variable: impl Fn(&str) -> Option<String>) -> Option<Encryption> {
    let get = |name: &str| variable(name).filter(|value| !value.trim().is_empty());
    let mut encryption = Encryption::default();
    if let Some(recipients) = get(RECIPIENTS_VAR) {
        encryption.recipients = recipients
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(path) = get(IDENTITY_FILE_VAR) {
        encryption
            .identities
            .push(IdentitySource::File(path.into()));
    }
    if let Some(key) = get(IDENTITY_VAR) {
        encryption
            .identities
            .push(IdentitySource::Key(Sensitive::new(key)));
    }
    encryption.passphrase = get(PASSPHRASE_VAR).map(Sensitive::new);
    (!encryption.is_empty()).then_some(encryption)
}

/// Once per process, before the first plaintext write.
fn warn_plaintext_once() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "warning: state is stored unencrypted, secrets included (Talos PKI, kubeconfigs, tokens); set {RECIPIENTS_VAR} or {IDENTITY_FILE_VAR} to encrypt it with age (README: State encryption)"
        );
    });
}

/// After the local backend broke a lock whose holder is gone (a killed run on this host).
fn say_stale_lock_broken(environment: &str, holder: &LockInfo) {
    eprintln!(
        "warning: broke the stale lock of environment `{environment}`: it was held by {holder}, and that process no longer runs"
    );
}

/// The store every command uses: the backend `--state-backend` (INFRAFLUX_STATE_BACKEND)
/// selects, else `state.backend` of the configuration's defaults files, else local.
/// `layers`: the configuration as the command already read it (`None`: read the defaults
/// files here, when the flags leave a setting open).
pub(crate) fn open_store(
    global: &GlobalArgs,
    layers: Option<&crate::config::LoadedConfig>,
) -> Result<Arc<dyn StateStore>, state::Error> {
    let configured = configured_state(global, layers);
    let backend = match (global.state_backend, configured.backend.as_deref()) {
        (Some(backend), _) => backend,
        (None, Some("postgres")) => StateBackend::Postgres,
        (None, Some("local") | None) => StateBackend::Local,
        (None, Some(other)) => {
            return Err(state::Error::BackendConfig {
                reason: format!(
                    "state.backend `{other}` in the configuration is neither `local` nor `postgres`"
                ),
            });
        }
    };
    Ok(match backend {
        StateBackend::Local => Arc::new(local_store(global)),
        StateBackend::Postgres => {
            let lease = match (global.state_lease, configured.lease.as_deref()) {
                (Some(lease), _) => Some(lease),
                (None, Some(text)) => Some(crate::cli::parse_duration(text).map_err(|reason| {
                    state::Error::BackendConfig {
                        reason: format!("state.lease in the configuration: {reason}"),
                    }
                })?),
                (None, None) => None,
            };
            Arc::new(postgres_store(lease)?)
        }
    })
}

/// `state.backend` and `state.lease` of the configuration's defaults files. Only the
/// layer files are read (no composition); their problems are the command's to report
/// when it loads the configuration, so they are ignored here.
struct ConfiguredState {
    backend: Option<String>,
    lease: Option<String>,
}

fn configured_state(
    global: &GlobalArgs,
    layers: Option<&crate::config::LoadedConfig>,
) -> ConfiguredState {
    if global.state_backend.is_some() && global.state_lease.is_some() {
        return ConfiguredState {
            backend: None,
            lease: None,
        };
    }
    let read;
    let config = match layers {
        Some(layers) => layers,
        None => {
            read = crate::operation::Workspace::read(
                global.config_paths(),
                &crate::config::ProcessVariables,
            );
            read.layers()
        }
    };
    ConfiguredState {
        backend: config.state_setting("backend"),
        lease: config.state_setting("lease"),
    }
}

/// The local backend: `--state-dir`, or else the project the configuration belongs to:
/// `.infraflux/state` beside the configuration directory, wherever the command runs from.
fn local_store(global: &GlobalArgs) -> LocalStore {
    let project = match global.state_dir.as_deref() {
        Some(dir) => dir,
        None => global.config.parent().unwrap_or(Path::new("")),
    };
    let store = LocalStore::in_project(project).on_stale_lock_broken(say_stale_lock_broken);
    match encryption_from(|name| std::env::var(name).ok()) {
        Some(encryption) => store.with_encryption(Some(encryption)),
        None => store.on_plaintext_write(warn_plaintext_once),
    }
}

/// The PostgreSQL backend: INFRAFLUX_STATE_POSTGRES_URL, `--state-lease` (or the
/// configuration's `state.lease`).
fn postgres_store(lease: Option<std::time::Duration>) -> Result<PostgresStore, state::Error> {
    let variable = |name: &str| std::env::var(name).ok();
    let store = select::postgres_from(variable, lease)?;
    Ok(match encryption_from(variable) {
        Some(encryption) => store.with_encryption(Some(encryption)),
        None => store.on_plaintext_write(warn_plaintext_once),
    })
}

/// A state error as a diagnostic: its message, its cause chain, a code and a help line.
pub(crate) fn report(error: state::Error) -> miette::Report {
    miette::Report::new(StateDiagnostic(error))
}

struct StateDiagnostic(state::Error);

impl fmt::Debug for StateDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StateDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for StateDiagnostic {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

impl Diagnostic for StateDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.help()))
    }
}

fn parse_address(text: &str) -> miette::Result<ResourceAddr> {
    text.parse().map_err(|error| {
        miette!(
            code = "state::invalid-address",
            help = "list the addresses in state with `infraflux state list`",
            "{error}"
        )
    })
}

fn no_state(store: &dyn StateStore, environment: &str) -> miette::Report {
    miette!(
        code = "state::no-state",
        help = format!(
            "nothing has been applied to it yet, or its state is elsewhere: looked in {} (see --state-dir and --state-backend)",
            store.location()
        ),
        "no state for environment `{environment}`"
    )
}

fn load_existing(store: &dyn StateStore, environment: &str) -> miette::Result<StateDocument> {
    store
        .load(environment)
        .map_err(report)?
        .ok_or_else(|| no_state(store, environment))
}

/// One line of `state list --json`.
#[derive(Serialize)]
struct ListedResource<'a> {
    address: &'a ResourceAddr,
    #[serde(rename = "type")]
    kind: &'a str,
    provider: &'a str,
    id: Option<&'a str>,
    status: ResourceStatus,
}

pub fn list(global: &GlobalArgs, args: &StateListArgs) -> miette::Result<ExitCode> {
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    let environments = match &args.environment {
        Some(environment) => vec![environment.clone()],
        None => store.environments().map_err(report)?,
    };
    let mut documents = Vec::new();
    for environment in &environments {
        match store.load(environment).map_err(report)? {
            Some(document) => documents.push(document),
            None => eprintln!(
                "no state for environment `{environment}` in {}",
                store.location()
            ),
        }
    }
    let resources = documents.iter().flat_map(|d| d.resources.iter());
    if args.json {
        let listed: Vec<ListedResource> = resources
            .map(|(address, resource)| ListedResource {
                address,
                kind: &resource.kind,
                provider: &resource.provider,
                id: resource.id.as_deref(),
                status: resource.status,
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&listed).expect("listing serializes")
        );
    } else {
        for (address, _) in resources {
            println!("{address}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `state show` prints; attributes masked.
#[derive(Serialize)]
struct ShownResource<'a> {
    address: &'a ResourceAddr,
    #[serde(rename = "type")]
    kind: &'a str,
    provider: &'a str,
    id: Option<&'a str>,
    status: ResourceStatus,
    attributes: infraflux_provider::Attributes,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    dependencies: &'a [ResourceAddr],
}

pub fn show(global: &GlobalArgs, args: &StateShowArgs) -> miette::Result<ExitCode> {
    let address = parse_address(&args.address)?;
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    let document = load_existing(store, &address.environment)?;
    let resource = document.resources.get(&address).ok_or_else(|| {
        report(state::Error::NotFound {
            address: address.clone(),
        })
    })?;
    let shown = ShownResource {
        address: &address,
        kind: &resource.kind,
        provider: &resource.provider,
        id: resource.id.as_deref(),
        status: resource.status,
        attributes: resource.masked_attributes(),
        dependencies: &resource.dependencies,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&shown).expect("resource serializes")
        );
    } else {
        print!(
            "{}",
            serde_yaml::to_string(&shown).expect("resource serializes")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(global: &GlobalArgs, args: &StateRmArgs) -> miette::Result<ExitCode> {
    let mut by_environment: BTreeMap<String, Vec<ResourceAddr>> = BTreeMap::new();
    for text in &args.addresses {
        let address = parse_address(text)?;
        let addresses = by_environment
            .entry(address.environment.clone())
            .or_default();
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    for (environment, addresses) in by_environment {
        let _guard = store
            .lock_with_timeout(
                &environment,
                LockInfo::new("state rm"),
                args.lock.lock_timeout,
            )
            .map_err(report)?;
        let mut document = load_existing(store, &environment)?;
        let removed = document.remove_resources(&addresses).map_err(report)?;
        document.serial += 1;
        store.persist(&document).map_err(report)?;
        for (address, _) in removed {
            println!("removed {address}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn mv(global: &GlobalArgs, args: &StateMvArgs) -> miette::Result<ExitCode> {
    let from = parse_address(&args.from)?;
    let to = parse_address(&args.to)?;
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    let _guard = store
        .lock_with_timeout(
            &from.environment,
            LockInfo::new("state mv"),
            args.lock.lock_timeout,
        )
        .map_err(report)?;
    let mut document = load_existing(store, &from.environment)?;
    document.move_resource(&from, &to).map_err(report)?;
    document.serial += 1;
    store.persist(&document).map_err(report)?;
    println!("moved {from} to {to}");
    Ok(ExitCode::SUCCESS)
}

pub fn unlock(global: &GlobalArgs, args: &StateUnlockArgs) -> miette::Result<ExitCode> {
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    let environment = match &args.environment {
        Some(environment) => environment.clone(),
        None => {
            let locks = store.locks().map_err(report)?;
            let found = locks.iter().find(|(_, info)| info.id == args.id);
            match found {
                Some((environment, _)) => environment.clone(),
                None => {
                    let held = if locks.is_empty() {
                        "no environment is locked".to_string()
                    } else {
                        let ids: Vec<String> = locks
                            .iter()
                            .map(|(environment, info)| format!("`{environment}`: {}", info.id))
                            .collect();
                        format!("current locks: {}", ids.join(", "))
                    };
                    return Err(miette!(
                        code = "state::lock-id-mismatch",
                        help = format!(
                            "{held}; pass the ID shown by the command that found the state locked"
                        ),
                        "no lock with ID `{}` in {}",
                        args.id,
                        store.location()
                    ));
                }
            }
        }
    };
    let holder = store.force_unlock(&environment, &args.id).map_err(report)?;
    println!("unlocked environment `{environment}` (held by {holder})");
    if holder.host == hostname() && process_alive(holder.pid) == Some(true) && !holder.is_stale() {
        eprintln!(
            "warning: process {} that took the lock still runs; it may still write this state",
            holder.pid
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rekey(global: &GlobalArgs, args: &StateRekeyArgs) -> miette::Result<ExitCode> {
    let store = open_store(global, None).map_err(report)?;
    let store = store.as_ref();
    if store.encryption().is_none() {
        return Err(miette!(
            code = "state::no-encryption",
            help = format!(
                "set {RECIPIENTS_VAR} to the new recipients (comma-separated `age1…` keys) and {IDENTITY_FILE_VAR} to an identity that decrypts the current state"
            ),
            "no state encryption is configured, so there is nothing to encrypt to"
        ));
    }
    let environments = match &args.environment {
        Some(environment) => vec![environment.clone()],
        None => store.environments().map_err(report)?,
    };
    if environments.is_empty() {
        eprintln!("no state in {}", store.location());
    }
    for environment in &environments {
        let _guard = store
            .lock_with_timeout(
                environment,
                LockInfo::new("state rekey"),
                args.lock.lock_timeout,
            )
            .map_err(report)?;
        if store.rekey(environment).map_err(report)? {
            println!("re-encrypted the state of environment `{environment}`");
        } else {
            eprintln!(
                "no state for environment `{environment}` in {}",
                store.location()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `state migrate --to <backend>`: copy every environment (or one) from the other backend.
pub fn migrate(global: &GlobalArgs, args: &StateMigrateArgs) -> miette::Result<ExitCode> {
    let local = local_store(global);
    let postgres = postgres_store(global.state_lease).map_err(report)?;
    let (source, target): (&dyn StateStore, &dyn StateStore) = match args.to {
        StateBackend::Postgres => (&local, &postgres),
        StateBackend::Local => (&postgres, &local),
    };
    let environments = match &args.environment {
        Some(environment) => vec![environment.clone()],
        None => source.environments().map_err(report)?,
    };
    if environments.is_empty() {
        eprintln!("no state in {}: nothing to migrate", source.location());
    }
    for environment in &environments {
        let copied = copy_environment(source, target, environment, args.lock.lock_timeout)
            .map_err(report)?;
        match copied {
            Copied::Copied {
                serial,
                resources,
                replaced,
            } => println!(
                "copied environment `{environment}` (serial {serial}, {resources} resources{}) from {} to {}",
                replaced
                    .map(|old| format!(", replacing serial {old}"))
                    .unwrap_or_default(),
                source.location(),
                target.location()
            ),
            Copied::AlreadyThere { serial } => println!(
                "environment `{environment}` is already in {} (serial {serial})",
                target.location()
            ),
            Copied::NoState => eprintln!(
                "no state for environment `{environment}` in {}",
                source.location()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_comes_from_the_environment_variables() {
        let none = |_: &str| None;
        assert_eq!(encryption_from(none), None);
        let blank = |_: &str| Some("  ".to_string());
        assert_eq!(encryption_from(blank), None);
        let set = |name: &str| match name {
            RECIPIENTS_VAR => Some("age1aaa, age1bbb,".to_string()),
            IDENTITY_FILE_VAR => Some("/keys/state.txt".to_string()),
            IDENTITY_VAR => Some("AGE-SECRET-KEY-1XYZ".to_string()),
            PASSPHRASE_VAR => Some("pw".to_string()),
            _ => None,
        };
        let encryption = encryption_from(set).unwrap();
        assert_eq!(encryption.recipients, vec!["age1aaa", "age1bbb"]);
        assert_eq!(
            encryption.identities,
            vec![
                IdentitySource::File("/keys/state.txt".into()),
                IdentitySource::Key(Sensitive::new("AGE-SECRET-KEY-1XYZ".to_string())),
            ]
        );
        assert_eq!(
            encryption.passphrase,
            Some(Sensitive::new("pw".to_string()))
        );
    }
}
