//! `infraflux state list|show|rm|mv|unlock`: read and edit the recorded state.
//!
//! Reads take no lock (writes replace the file atomically, so a read sees a whole
//! document); `rm` and `mv` edit under the environment's lock and bump the serial.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use miette::{Diagnostic, miette};
use serde::Serialize;

use crate::cli::{
    GlobalArgs, StateListArgs, StateMvArgs, StateRmArgs, StateShowArgs, StateUnlockArgs,
};
use crate::model::address::ResourceAddr;
use crate::state::lock::{hostname, process_alive};
use crate::state::{self, LocalStore, LockInfo, ResourceStatus, StateDocument, StateStore};

/// The store the CLI uses: `<--state-dir or working directory>/.infraflux/state/`.
/// `--state-dir`, or else the project the configuration belongs to: `.infraflux/state`
/// beside the configuration directory, wherever the command runs from.
pub(crate) fn open_store(global: &GlobalArgs) -> LocalStore {
    let project = match global.state_dir.as_deref() {
        Some(dir) => dir,
        None => global.config.parent().unwrap_or(Path::new("")),
    };
    LocalStore::in_project(project)
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

fn no_state(store: &LocalStore, environment: &str) -> miette::Report {
    miette!(
        code = "state::no-state",
        help = format!(
            "nothing has been applied to it yet, or its state is elsewhere: looked in `{}` (see --state-dir)",
            store.directory().display()
        ),
        "no state for environment `{environment}`"
    )
}

fn load_existing(store: &LocalStore, environment: &str) -> miette::Result<StateDocument> {
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
    let store = open_store(global);
    let environments = match &args.environment {
        Some(environment) => vec![environment.clone()],
        None => store.environments().map_err(report)?,
    };
    let mut documents = Vec::new();
    for environment in &environments {
        match store.load(environment).map_err(report)? {
            Some(document) => documents.push(document),
            None => eprintln!(
                "no state for environment `{environment}` in `{}`",
                store.directory().display()
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
    let store = open_store(global);
    let document = load_existing(&store, &address.environment)?;
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
    let store = open_store(global);
    for (environment, addresses) in by_environment {
        let _guard = store
            .lock_with_timeout(
                &environment,
                LockInfo::new("state rm"),
                args.lock.lock_timeout,
            )
            .map_err(report)?;
        let mut document = load_existing(&store, &environment)?;
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
    let store = open_store(global);
    let _guard = store
        .lock_with_timeout(
            &from.environment,
            LockInfo::new("state mv"),
            args.lock.lock_timeout,
        )
        .map_err(report)?;
    let mut document = load_existing(&store, &from.environment)?;
    document.move_resource(&from, &to).map_err(report)?;
    document.serial += 1;
    store.persist(&document).map_err(report)?;
    println!("moved {from} to {to}");
    Ok(ExitCode::SUCCESS)
}

pub fn unlock(global: &GlobalArgs, args: &StateUnlockArgs) -> miette::Result<ExitCode> {
    let store = open_store(global);
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
                        "no lock with ID `{}` in `{}`",
                        args.id,
                        store.directory().display()
                    ));
                }
            }
        }
    };
    let holder = store.force_unlock(&environment, &args.id).map_err(report)?;
    println!("unlocked environment `{environment}` (held by {holder})");
    if holder.host == hostname() && process_alive(holder.pid) == Some(true) {
        eprintln!(
            "warning: process {} that took the lock still runs; it may still write this state",
            holder.pid
        );
    }
    Ok(ExitCode::SUCCESS)
}
