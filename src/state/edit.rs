//! The edits `infraflux state rm` and `infraflux state mv` make to a document. They
//! change the document only; the caller bumps the serial and persists under the lock.

use super::{Error, ResourceState, StateDocument};
use crate::vocabulary::ResourceAddr;

impl StateDocument {
    /// Forget these resources (they keep running; InfraFlux stops managing them). Every
    /// address must be in the document, or nothing is removed. Other resources' recorded
    /// `dependencies` on them are kept: they only order a later destroy. What they
    /// recorded by reference to them is copied in (`by_reference`).
    pub fn remove_resources(
        &mut self,
        addresses: &[ResourceAddr],
    ) -> Result<Vec<(ResourceAddr, ResourceState)>, Error> {
        for address in addresses {
            self.check_own(address)?;
            if !self.resources.contains_key(address) {
                return Err(Error::NotFound {
                    address: address.clone(),
                });
            }
        }
        // What other records hold of them by reference, they keep as a copy.
        for address in addresses {
            self.copy_references_to(address);
        }
        Ok(addresses
            .iter()
            .filter_map(|address| self.resources.remove_entry(address))
            .collect())
    }

    /// Rename a resource within this environment, keeping its type. Other resources'
    /// `dependencies` on it, and what they recorded by reference to it, follow the new
    /// address.
    pub fn move_resource(&mut self, from: &ResourceAddr, to: &ResourceAddr) -> Result<(), Error> {
        let invalid = |reason| Error::InvalidMove {
            from: from.clone(),
            to: to.clone(),
            reason,
        };
        if from.environment != to.environment {
            return Err(invalid(
                "the addresses are in different environments (each has its own state)",
            ));
        }
        if from.kind != to.kind {
            return Err(invalid("the resource types differ"));
        }
        if from == to {
            return Err(invalid("the addresses are the same"));
        }
        self.check_own(from)?;
        if self.resources.contains_key(to) {
            return Err(Error::AlreadyExists {
                address: to.clone(),
            });
        }
        let resource = self.resources.remove(from).ok_or_else(|| Error::NotFound {
            address: from.clone(),
        })?;
        self.resources.insert(to.clone(), resource);
        for resource in self.resources.values_mut() {
            for dependency in &mut resource.dependencies {
                if dependency == from {
                    *dependency = to.clone();
                }
            }
        }
        self.move_references(from, to);
        Ok(())
    }

    fn check_own(&self, address: &ResourceAddr) -> Result<(), Error> {
        if address.environment == self.environment {
            Ok(())
        } else {
            Err(Error::ForeignResource {
                environment: self.environment.clone(),
                address: address.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ResourceStatus;

    fn addr(text: &str) -> ResourceAddr {
        text.parse().unwrap()
    }

    fn resource(kind: &str, dependencies: &[&str]) -> ResourceState {
        ResourceState {
            kind: kind.into(),
            provider: "proxmox".into(),
            id: Some("1".into()),
            attributes: Default::default(),
            sensitive: vec![],
            dependencies: dependencies.iter().map(|d| addr(d)).collect(),
            status: ResourceStatus::Ready,
        }
    }

    fn document() -> StateDocument {
        let mut doc = StateDocument::new("dev");
        doc.resources
            .insert(addr("dev/w/proxmox_vm.a"), resource("proxmox_vm", &[]));
        doc.resources.insert(
            addr("dev/w/talos_config.a"),
            resource("talos_config", &["dev/w/proxmox_vm.a"]),
        );
        doc
    }

    #[test]
    fn remove_is_all_or_nothing() {
        let mut doc = document();
        let before = doc.clone();
        let error = doc
            .remove_resources(&[addr("dev/w/proxmox_vm.a"), addr("dev/w/proxmox_vm.zz")])
            .unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error}");
        assert_eq!(doc, before);
        let removed = doc.remove_resources(&[addr("dev/w/proxmox_vm.a")]).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(doc.resources.len(), 1);
        let error = doc
            .remove_resources(&[addr("prod/w/talos_config.a")])
            .unwrap_err();
        assert!(matches!(error, Error::ForeignResource { .. }), "{error}");
    }

    #[test]
    fn move_renames_and_rewrites_dependencies() {
        let mut doc = document();
        doc.move_resource(&addr("dev/w/proxmox_vm.a"), &addr("dev/x/proxmox_vm.b"))
            .unwrap();
        assert!(doc.resources.contains_key(&addr("dev/x/proxmox_vm.b")));
        assert!(!doc.resources.contains_key(&addr("dev/w/proxmox_vm.a")));
        assert_eq!(
            doc.resources[&addr("dev/w/talos_config.a")].dependencies,
            vec![addr("dev/x/proxmox_vm.b")]
        );
    }

    #[test]
    fn move_refuses_existing_targets_other_types_and_environments() {
        let mut doc = document();
        doc.resources
            .insert(addr("dev/w/proxmox_vm.b"), resource("proxmox_vm", &[]));
        let before = doc.clone();
        let cases = [
            ("dev/w/proxmox_vm.a", "dev/w/proxmox_vm.b", "already"),
            ("dev/w/proxmox_vm.a", "dev/w/talos_config.z", "types differ"),
            (
                "dev/w/proxmox_vm.a",
                "prod/w/proxmox_vm.a",
                "different environments",
            ),
            ("dev/w/proxmox_vm.a", "dev/w/proxmox_vm.a", "the same"),
            ("dev/w/proxmox_vm.q", "dev/w/proxmox_vm.r", "no resource"),
        ];
        for (from, to, expected) in cases {
            let error = doc.move_resource(&addr(from), &addr(to)).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{from} → {to}: {error}"
            );
            assert_eq!(doc, before);
        }
    }
}
