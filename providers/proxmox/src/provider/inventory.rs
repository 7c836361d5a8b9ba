//! The inventory for placement at plan time: one `/cluster/resources` call gives every
//! node's memory and every storage's content types, so placement and the preflight of
//! the images to create cost one request per PVE cluster.

use infraflux_provider::{Diagnostic, Host, Inventory, InventoryItem, Severity};
use serde_json::Value;

use super::ProxmoxProvider;
use super::image;
use crate::api::ClusterResource;
use crate::error::ApiError;

/// What to tell a user whose image storage does not take `import` content.
pub fn import_content_problem(storage: &str, node: &str, content: &[String]) -> (String, String) {
    let mut fixed: Vec<String> = content.to_vec();
    fixed.push("import".into());
    (
        format!(
            "storage `{storage}` on node `{node}` does not allow the content type `import` (it allows: {})",
            if content.is_empty() {
                "nothing".to_string()
            } else {
                content.join(", ")
            },
        ),
        format!(
            "enable it with `pvesm set {storage} --content {}` (or Datacenter → Storage → {storage} → Content: Import), or set `proxmox.image_storage` to a file-based storage that has it",
            fixed.join(",")
        ),
    )
}

fn content_types(resource: &ClusterResource) -> Vec<String> {
    resource
        .content
        .as_deref()
        .unwrap_or_default()
        .split([',', ';', ' '])
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Hosts and preflight problems from one cluster listing.
pub fn inventory_from(
    scope: &str,
    listing: &[ClusterResource],
    items: &[InventoryItem],
) -> Inventory {
    let hosts = listing
        .iter()
        .filter(|r| r.kind == "node")
        .filter_map(|r| {
            let online = r.status.as_deref() == Some("online");
            let total = r.maxmem.unwrap_or(0);
            Some(Host {
                name: r.node.clone()?,
                online,
                memory_free: if online {
                    total.saturating_sub(r.mem.unwrap_or(0))
                } else {
                    0
                },
                memory_total: total,
            })
        })
        .collect();
    let mut problems = Vec::new();
    for item in items.iter().filter(|i| i.resource.kind == image::KIND) {
        let text = |name: &str| item.desired.get(name).and_then(Value::as_str);
        let (Some(node), Some(storage)) = (text("node"), text("storage")) else {
            continue;
        };
        let entry = listing.iter().find(|r| {
            r.kind == "storage"
                && r.node.as_deref() == Some(node)
                && r.storage.as_deref() == Some(storage)
        });
        let problem = match entry {
            None if listing
                .iter()
                .any(|r| r.kind == "node" && r.node.as_deref() == Some(node)) =>
            {
                Some((
                    format!("storage `{storage}` is not available on node `{node}`"),
                    format!(
                        "enable storage `{storage}` for node `{node}` (Datacenter → Storage → {storage} → Nodes) or set `proxmox.image_storage` to one that is"
                    ),
                ))
            }
            // A node PVE does not know: placement reports it.
            None => None,
            Some(entry) => {
                let content = content_types(entry);
                (!content.iter().any(|c| c == "import"))
                    .then(|| import_content_problem(storage, node, &content))
            }
        };
        if let Some((summary, detail)) = problem {
            problems.push((
                item.resource.address.clone(),
                Diagnostic {
                    severity: Severity::Error,
                    attribute: Some("storage".into()),
                    summary,
                    detail: Some(detail),
                },
            ));
        }
    }
    Inventory {
        scope: scope.to_string(),
        hosts,
        problems,
    }
}

impl ProxmoxProvider {
    pub(super) async fn list_inventory(
        &self,
        items: &[InventoryItem],
    ) -> Result<Inventory, ApiError> {
        let listing = self.client.cluster_resources_all().await?;
        Ok(inventory_from(self.client.base_url(), &listing, items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infraflux_provider::ResourceRef;
    use serde_json::json;

    fn node(name: &str, online: bool, mem: u64) -> ClusterResource {
        ClusterResource {
            id: format!("node/{name}"),
            kind: "node".into(),
            node: Some(name.into()),
            status: Some(if online { "online" } else { "offline" }.into()),
            maxmem: Some(8 << 30),
            mem: Some(mem),
            ..ClusterResource::default()
        }
    }

    fn storage(node: &str, name: &str, content: &str) -> ClusterResource {
        ClusterResource {
            id: format!("storage/{node}/{name}"),
            kind: "storage".into(),
            node: Some(node.into()),
            storage: Some(name.into()),
            content: Some(content.into()),
            ..ClusterResource::default()
        }
    }

    fn image(node: &str) -> InventoryItem {
        InventoryItem {
            resource: ResourceRef {
                address: format!("dev/w/proxmox_image.talos-{node}"),
                kind: image::KIND.into(),
            },
            desired: json!({"node": node, "storage": "local"})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn free_memory_per_node_and_offline_nodes_have_none() {
        let listing = [node("pve1", true, 2 << 30), node("pve2", false, 0)];
        let inventory = inventory_from("https://pve:8006/api2/json", &listing, &[]);
        assert_eq!(inventory.hosts.len(), 2);
        assert_eq!(inventory.hosts[0].memory_free, 6 << 30);
        assert!(!inventory.hosts[1].online);
        assert_eq!(inventory.hosts[1].memory_free, 0);
    }

    #[test]
    fn an_image_storage_without_import_is_a_preflight_problem_with_the_fix() {
        let listing = [
            node("pve1", true, 0),
            node("pve2", true, 0),
            storage("pve1", "local", "iso,vztmpl,backup"),
            storage("pve2", "local", "iso,import"),
        ];
        let inventory = inventory_from("x", &listing, &[image("pve1"), image("pve2")]);
        assert_eq!(inventory.problems.len(), 1, "{:?}", inventory.problems);
        let (address, problem) = &inventory.problems[0];
        assert_eq!(address, "dev/w/proxmox_image.talos-pve1");
        assert!(
            problem
                .summary
                .contains("does not allow the content type `import`")
        );
        assert!(
            problem
                .detail
                .as_deref()
                .unwrap()
                .contains("pvesm set local --content iso,vztmpl,backup,import")
        );
    }
}
