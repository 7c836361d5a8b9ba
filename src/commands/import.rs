//! `infraflux import ADDR ID`: adopt an object that already exists (a VM made by hand,
//! a cluster bootstrapped with talosctl) so InfraFlux manages it from now on. As in
//! Terraform, the address must be in the configuration first: the configuration says
//! what the object should be, import only records that it exists.

use std::process::ExitCode;

use infraflux_provider::{ImportRequest, ResourceRef};

use super::engine::{Context, diagnostic_text, load_desired_for};
use crate::cli::{GlobalArgs, ImportArgs};
use crate::state::{ResourceState, ResourceStatus};
use crate::vocabulary::ResourceAddr;

pub fn run(global: &GlobalArgs, args: &ImportArgs, context: &Context) -> miette::Result<ExitCode> {
    let addr: ResourceAddr = args
        .address
        .parse()
        .map_err(|e| super::engine::diagnostic(&e, None))?;
    let (environment, desired) = load_desired_for(
        global,
        Some(&addr.environment),
        Some(&addr.cluster),
        context,
    )?;
    let Some(resource) = desired.into_iter().find(|d| d.address == addr) else {
        return Err(diagnostic_text(
            format!("`{addr}` is not in the configuration"),
            Some("import adopts objects the configuration describes: check the address with `infraflux graph`, or add the resource to the configuration first".into()),
        ));
    };
    let Some(provider) = context.providers.get(&resource.provider).cloned() else {
        return Err(diagnostic_text(
            format!("no provider registered for `{}`", resource.provider),
            None,
        ));
    };
    let (_lock, mut state) =
        context.lock_and_load(&environment, "import", std::time::Duration::ZERO)?;
    if let Some(existing) = state.resources.get(&addr) {
        return Err(diagnostic_text(
            format!(
                "`{addr}` is already managed (id {})",
                existing.id.as_deref().unwrap_or("pending")
            ),
            Some(format!(
                "to adopt another object, forget this one first: `infraflux state rm {addr}`"
            )),
        ));
    }
    let request = ImportRequest {
        resource: ResourceRef {
            address: addr.to_string(),
            kind: resource.kind.clone(),
        },
        id: args.id.clone(),
    };
    let response = context
        .runtime()?
        .block_on(provider.import(request))
        .map_err(|e| {
            diagnostic_text(
                e.to_string(),
                Some(
                    "check the ID: it is the provider's own (a Proxmox VMID, a node address…)"
                        .into(),
                ),
            )
        })?;
    let sensitive = provider
        .schemas()
        .into_iter()
        .find(|s| s.kind == resource.kind)
        .map(|s| s.sensitive_attributes().map(str::to_string).collect())
        .unwrap_or_default();
    state.resources.insert(
        addr.clone(),
        ResourceState {
            kind: resource.kind,
            provider: resource.provider,
            id: Some(args.id.clone()),
            attributes: response.attributes,
            sensitive,
            dependencies: resource.depends_on,
            status: ResourceStatus::Ready,
        },
    );
    state.serial += 1;
    context
        .store
        .persist(&state)
        .map_err(|e| super::engine::diagnostic(&e, None))?;
    context.out.write(&format!(
        "Imported {addr} (id {}). Run `infraflux plan --env {environment}` to see how it differs from the configuration.\n",
        args.id
    ));
    Ok(ExitCode::SUCCESS)
}
