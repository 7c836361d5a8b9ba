//! How many operations that take PVE's storage lock run at once on one node's storage.
//!
//! What PVE locks, from its source (pve-storage, qemu-server; see the provider README):
//!
//! - `PVE::Storage::Plugin::cluster_lock_storage` is the storage lock: a `flock` on
//!   `/var/lock/pve-manager/pve-storage-<storage>` for a local storage, a cluster-wide
//!   `cfs_lock_storage` for a shared one. Every caller passes no timeout, so waiting for
//!   it gives up after `PVE::Tools::lock_file_full`'s default of 10 s ("can't lock file
//!   '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout").
//! - It is held around one volume operation at a time, never a whole task:
//!   `PVE::Storage::vdisk_alloc` (one `lvcreate`, `zfs create`, or file create),
//!   `vdisk_free`, `vdisk_clone`, `rename_volume`, and on LVM/LVM-thin
//!   `LVMPlugin::volume_resize` (one `lvextend`) and `volume_snapshot`.
//! - `qm create` with `import-from` (qemu-server `API2/Qemu.pm` `create_disks` →
//!   `QemuServer::ImportDisk::do_import`) takes it three times for an InfraFlux VM (EFI
//!   disk, boot disk, cloud-init disk), each for one allocation; the image copy
//!   (`qemu-img convert`) runs after the allocation, outside the lock. A resize on LVM
//!   takes it once; `qm destroy` once per disk (`vdisk_free`). Start, stop, config
//!   changes and task status reads never take it.
//!
//! So the operations InfraFlux makes that take the lock are VM create, disk resize and
//! VM delete (and the image download, which has its own per-storage limit of one in the
//! engine). They go through one slot of [`StorageSlots`] each, released as soon as the
//! task ends; everything else of a create (config read, start, polls) runs outside, so
//! creates pipeline. The default of [`DEFAULT_STORAGE_CONCURRENCY`] operations per node
//! and storage keeps the wait for the lock well under PVE's 10 s: an allocation waits
//! behind at most 3 others' allocations, each one `lvcreate`/`lvextend` (well under a
//! second on a healthy pool), where 10 or more at once (Terraform's default
//! parallelism) is what users report failing with "got timeout".

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Storage-locking operations in flight at once per node and storage unless the
/// configuration says otherwise (`proxmox.storage_concurrency`); see the module docs.
pub const DEFAULT_STORAGE_CONCURRENCY: usize = 4;
/// The most the setting accepts: beyond it an allocation could wait behind more than
/// 10 s of others' allocations even on fast storage.
pub const MAX_STORAGE_CONCURRENCY: usize = 16;

/// One semaphore per (node, storage), all with the same number of permits.
pub struct StorageSlots {
    limit: AtomicUsize,
    slots: Mutex<HashMap<(String, String), Arc<Semaphore>>>,
}

impl StorageSlots {
    pub fn new(limit: usize) -> Self {
        StorageSlots {
            limit: AtomicUsize::new(limit.clamp(1, MAX_STORAGE_CONCURRENCY)),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Change the limit; it applies to the (node, storage) pairs not used yet (one run
    /// sets it once, from the configuration, before its first create).
    pub fn set_limit(&self, limit: usize) {
        self.limit
            .store(limit.clamp(1, MAX_STORAGE_CONCURRENCY), Ordering::Relaxed);
    }

    /// Wait for a slot on `node`'s `storage`; the slot is free again when the permit is
    /// dropped.
    pub async fn acquire(&self, node: &str, storage: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut slots = self.slots.lock().expect("storage slots lock");
            slots
                .entry((node.to_string(), storage.to_string()))
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit())))
                .clone()
        };
        semaphore
            .acquire_owned()
            .await
            .expect("storage slot semaphores are never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_the_limit_per_node_and_storage() {
        let slots = Arc::new(StorageSlots::new(2));
        let in_flight: Arc<HashMap<&str, AtomicUsize>> = Arc::new(
            [("pve1", AtomicUsize::new(0)), ("pve2", AtomicUsize::new(0))]
                .into_iter()
                .collect(),
        );
        let most = Arc::new(Mutex::new(HashMap::<&str, usize>::new()));
        let mut tasks = Vec::new();
        for i in 0..12 {
            let node = if i % 2 == 0 { "pve1" } else { "pve2" };
            let (slots, in_flight, most) = (slots.clone(), in_flight.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = slots.acquire(node, "local-lvm").await;
                let now = in_flight[node].fetch_add(1, Ordering::SeqCst) + 1;
                {
                    let mut most = most.lock().unwrap();
                    let entry = most.entry(node).or_default();
                    *entry = (*entry).max(now);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight[node].fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let most = most.lock().unwrap();
        // Both nodes reached the limit (they run side by side) and never exceeded it.
        assert_eq!(most.get("pve1"), Some(&2));
        assert_eq!(most.get("pve2"), Some(&2));
    }

    #[test]
    fn the_limit_is_kept_in_range() {
        let slots = StorageSlots::new(0);
        assert_eq!(slots.limit(), 1);
        slots.set_limit(1000);
        assert_eq!(slots.limit(), MAX_STORAGE_CONCURRENCY);
    }
}
