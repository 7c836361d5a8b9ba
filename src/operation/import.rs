//! `import ADDR ID`: adopt an object that already exists (a VM made by hand, a cluster
//! bootstrapped with talosctl) so InfraFlux manages it from now on. As in Terraform, the
//! address must be in the configuration first: the configuration says what the object
//! should be, import only records that it exists.

use infraflux_provider::{ImportRequest, ResourceRef};

use crate::state::{ResourceState, ResourceStatus};
use crate::vocabulary::ResourceAddr;

use super::context::Context;
use super::diagnostic::{diagnostic, diagnostic_text};
use super::load::{Workspace, load_environment};

/// Record the object `id` as the resource at `address`; returns its environment.
pub fn run(
    workspace: &Workspace,
    address: &ResourceAddr,
    id: &str,
    context: &Context,
) -> miette::Result<String> {
    let loaded = load_environment(
        workspace,
        Some(&address.environment),
        Some(&address.cluster),
        context,
    )?;
    let environment = loaded.environment;
    let Some(resource) = loaded.desired.into_iter().find(|d| d.address == *address) else {
        return Err(diagnostic_text(
            format!("`{address}` is not in the configuration"),
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
    if let Some(existing) = state.resources.get(address) {
        return Err(diagnostic_text(
            format!(
                "`{address}` is already managed (id {})",
                existing.id.as_deref().unwrap_or("pending")
            ),
            Some(format!(
                "to adopt another object, forget this one first: `infraflux state rm {address}`"
            )),
        ));
    }
    let request = ImportRequest {
        resource: ResourceRef {
            address: address.to_string(),
            kind: resource.kind.clone(),
        },
        id: id.to_string(),
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
    let schema = provider
        .schemas()
        .into_iter()
        .find(|s| s.kind == resource.kind);
    let sensitive = schema
        .as_ref()
        .map(|s| s.sensitive_attributes().map(str::to_string).collect())
        .unwrap_or_default();
    // As apply records it: never the attributes state does not hold.
    let attributes = match &schema {
        Some(schema) => schema.recorded(response.attributes),
        None => response.attributes,
    };
    state.resources.insert(
        address.clone(),
        ResourceState {
            kind: resource.kind,
            provider: resource.provider,
            id: Some(id.to_string()),
            attributes: attributes.into(),
            sensitive,
            dependencies: resource.depends_on,
            status: ResourceStatus::Ready,
        },
    );
    state.serial += 1;
    context
        .store
        .persist(&state)
        .map_err(|e| diagnostic(&e, None))?;
    Ok(environment)
}
