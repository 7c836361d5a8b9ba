//! VMID allocation for creates without listing the cluster per create.
//!
//! A create needs the cluster's VMs twice: to pick a free VMID in its range and to spot
//! a VM an interrupted create of the same resource left behind. Listing the whole
//! cluster (`/cluster/resources?type=vm`, every VM of every node) for each of 30
//! parallel creates made that listing most of a create's cost. Instead the provider —
//! which lives for the whole plan and apply — keeps the last listing it made (a refresh
//! makes one anyway) and shares it between creates while it is younger than
//! [`super::ProviderOptions::vm_listing_max_age`]; only the first create after that
//! lists again, and parallel creates that find it stale wait for that one listing.
//!
//! Staleness is safe: VMIDs this process picks are reserved in-process (parallel
//! creates never pick the same one), and a VMID someone else took since the listing
//! makes PVE answer "already exists", which drops the listing and picks again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ClusterResource, ResourceType};
use crate::client::Client;
use crate::error::ApiError;

struct Listing {
    taken_at: Instant,
    /// The guests (`qemu` and `lxc` entries) of the cluster.
    guests: Arc<Vec<ClusterResource>>,
}

/// The shared listing and the VMIDs this process has claimed.
#[derive(Default)]
pub struct VmidAllocator {
    /// An async lock: parallel creates that find the listing stale wait for one call.
    listing: tokio::sync::Mutex<Option<Listing>>,
    /// Picked by creates of this process. Kept after a successful create too: a shared
    /// listing taken before it does not show that VM.
    claimed: Mutex<BTreeSet<u32>>,
}

fn is_guest(resource: &ClusterResource) -> bool {
    resource.kind == "qemu" || resource.kind == "lxc"
}

impl VmidAllocator {
    /// Keep the guests of a cluster listing made for another reason (a refresh).
    pub async fn remember(&self, listing: &[ClusterResource]) {
        let guests = listing.iter().filter(|r| is_guest(r)).cloned().collect();
        *self.listing.lock().await = Some(Listing {
            taken_at: Instant::now(),
            guests: Arc::new(guests),
        });
    }

    /// The cluster's guests: the shared listing while younger than `max_age`, else a
    /// new one (one call, whoever else is waiting).
    pub async fn guests(
        &self,
        client: &Client,
        max_age: Duration,
    ) -> Result<Arc<Vec<ClusterResource>>, ApiError> {
        let mut listing = self.listing.lock().await;
        if let Some(current) = listing.as_ref()
            && current.taken_at.elapsed() <= max_age
        {
            return Ok(current.guests.clone());
        }
        let guests: Vec<_> = client
            .cluster_resources(ResourceType::Vm)
            .await?
            .into_iter()
            .filter(is_guest)
            .collect();
        let guests = Arc::new(guests);
        *listing = Some(Listing {
            taken_at: Instant::now(),
            guests: guests.clone(),
        });
        Ok(guests)
    }

    /// The listing no longer describes the cluster (someone took a VMID it shows free,
    /// or a VM it shows is gone): the next create lists again.
    pub async fn forget(&self) {
        *self.listing.lock().await = None;
    }

    /// Claim the lowest VMID of `start..=end` that neither `guests` nor this process
    /// uses, or `None` when the range is full.
    pub fn claim(&self, guests: &[ClusterResource], (start, end): (u32, u32)) -> Option<u32> {
        let taken: BTreeSet<u32> = guests.iter().filter_map(|r| r.vmid).collect();
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        let vmid = (start..=end).find(|v| !taken.contains(v) && !claimed.contains(v))?;
        claimed.insert(vmid);
        Some(vmid)
    }

    /// Give back a VMID no VM was created with.
    pub fn release(&self, vmid: u32) {
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&vmid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u32) -> ClusterResource {
        ClusterResource {
            id: format!("qemu/{vmid}"),
            kind: "qemu".into(),
            vmid: Some(vmid),
            ..ClusterResource::default()
        }
    }

    #[test]
    fn claims_skip_listed_and_claimed_vmids_and_stay_in_range() {
        let allocator = VmidAllocator::default();
        let guests = [guest(1000), guest(1002)];
        assert_eq!(allocator.claim(&guests, (1000, 1003)), Some(1001));
        // The same (stale) listing: the claim keeps the next create off 1001.
        assert_eq!(allocator.claim(&guests, (1000, 1003)), Some(1003));
        assert_eq!(allocator.claim(&guests, (1000, 1003)), None);
        allocator.release(1001);
        assert_eq!(allocator.claim(&guests, (1000, 1003)), Some(1001));
    }

    #[tokio::test]
    async fn a_remembered_listing_keeps_its_guests_only() {
        let allocator = VmidAllocator::default();
        let node = ClusterResource {
            id: "node/pve1".into(),
            kind: "node".into(),
            ..ClusterResource::default()
        };
        allocator.remember(&[guest(5000), node]).await;
        let listing = allocator.listing.lock().await;
        let guests = &listing.as_ref().unwrap().guests;
        assert_eq!(guests.len(), 1);
        assert_eq!(guests[0].vmid, Some(5000));
    }
}
