//! The [`Provider`] implementation: `proxmox_image` and `proxmox_vm`.
//!
//! One provider talks to one PVE cluster (one [`Client`]). Reads are batched: one
//! `/cluster/resources` call covers every VM and, with the storage usage it shows, every
//! image whose storage did not change (see [`image`]); creates share that listing to
//! pick VMIDs (see [`vmids`]).

mod attributes;
mod endpoints;
pub mod image;
mod image_upload;
mod inventory;
pub mod storage_slots;
mod vmids;

pub use endpoints::ProxmoxEndpoints;
pub mod vm;

use std::time::Duration;

use async_trait::async_trait;
use infraflux_provider::{
    Attributes, ConcurrencyKey, CreateRequest, CreateResponse, DeleteRequest, ErrorKind,
    ImportRequest, ImportResponse, Inventory, InventoryRequest, Operation, PlanRequest,
    PlanResponse, Provider, ProviderError, ReadRequest, ReadResponse, ResourceRef, ResourceSchema,
    UpdateRequest, UpdateResponse, ValidateRequest, ValidateResponse, is_unknown,
};
use serde_json::Value;
use tracing::instrument;

use crate::api::ResourceType;
use crate::client::Client;
use crate::task::WaitOptions;
use storage_slots::StorageSlots;
use vmids::VmidAllocator;

#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// How long a VM create task may take.
    pub create_timeout: Duration,
    /// How long an image download may take.
    pub download_timeout: Duration,
    /// Start, stop, reboot, resize, delete.
    pub task_timeout: Duration,
    /// Reboot a running VM when an update left changes pending (CPU, memory, NIC on
    /// a PVE without hot-plug for them).
    pub reboot_after_update: bool,
    /// Config reads in flight at once during a refresh.
    pub read_concurrency: usize,
    /// VMIDs tried when others take them meanwhile.
    pub vmid_attempts: u32,
    /// How long creates may pick VMIDs from the last cluster listing instead of making
    /// a new one (a VMID taken meanwhile is caught by PVE and picked again).
    pub vm_listing_max_age: Duration,
    /// First and longest interval between task status polls.
    pub poll_first: Duration,
    pub poll_max: Duration,
    /// Operations that take PVE's storage lock (VM create, disk resize, VM delete) in
    /// flight at once per node and storage; see [`storage_slots`].
    pub storage_concurrency: usize,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            create_timeout: Duration::from_secs(600),
            download_timeout: Duration::from_secs(1800),
            task_timeout: Duration::from_secs(300),
            reboot_after_update: true,
            read_concurrency: 8,
            vmid_attempts: 5,
            vm_listing_max_age: Duration::from_secs(60),
            poll_first: Duration::from_millis(50),
            poll_max: Duration::from_secs(2),
            storage_concurrency: storage_slots::DEFAULT_STORAGE_CONCURRENCY,
        }
    }
}

pub struct ProxmoxProvider {
    client: Client,
    options: ProviderOptions,
    /// The cluster listing creates share, and the VMIDs they claimed.
    vmids: VmidAllocator,
    /// Slots for the operations that take PVE's storage lock.
    storage_slots: StorageSlots,
}

impl ProxmoxProvider {
    pub fn new(client: Client, options: ProviderOptions) -> Self {
        ProxmoxProvider {
            client,
            storage_slots: StorageSlots::new(options.storage_concurrency),
            options,
            vmids: VmidAllocator::default(),
        }
    }

    /// Set the per-(node, storage) limit of storage-locking operations (the
    /// configuration's `storage_concurrency`); see [`storage_slots`].
    pub fn set_storage_concurrency(&self, limit: usize) {
        self.storage_slots.set_limit(limit);
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn wait(&self, timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout,
            first_interval: self.options.poll_first,
            max_interval: self.options.poll_max,
        }
    }
}

fn unknown_kind(operation: &str, resource: &ResourceRef) -> ProviderError {
    ProviderError::new(
        ErrorKind::InvalidInput,
        operation,
        &resource.address,
        format!(
            "unknown resource type `{}` (proxmox has proxmox_image and proxmox_vm)",
            resource.kind
        ),
    )
}

/// Validation needs no connection: inputs only.
pub(crate) fn validate_desired(request: &ValidateRequest) -> ValidateResponse {
    let problems = match request.resource.kind.as_str() {
        image::KIND => image::ImageSpec::read(&request.desired, true).1,
        vm::KIND => vm::VmSpec::read(&request.desired, true).1,
        _ => return ValidateResponse::default(),
    };
    ValidateResponse {
        diagnostics: problems.0,
    }
}

/// Planning needs no connection either.
pub(crate) fn plan_desired(request: &PlanRequest) -> Result<PlanResponse, ProviderError> {
    match request.resource.kind.as_str() {
        image::KIND => {
            // Created images record `checksum: null` when none was given: an absent
            // checksum is that same null, not a change that forces a new image.
            let mut desired = request.desired.clone();
            desired.entry("checksum").or_insert(Value::Null);
            let mut response = image::schema().default_plan(request.prior, desired);
            image::plan_volume(&mut response.planned);
            image::plan_storage_used(request.prior, &mut response);
            Ok(response)
        }
        vm::KIND => Ok(vm::plan(request.prior, &request.desired)),
        _ => Err(unknown_kind("plan", &request.resource)),
    }
}

#[async_trait]
impl Provider for ProxmoxProvider {
    fn name(&self) -> &str {
        "proxmox"
    }

    fn schemas(&self) -> Vec<ResourceSchema> {
        vec![image::schema(), vm::schema()]
    }

    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        validate_desired(&request)
    }

    #[instrument(skip_all, fields(items = request.resources.len(), deep = request.deep))]
    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let images: Vec<_> = request
            .resources
            .iter()
            .filter(|i| i.resource.kind == image::KIND)
            .collect();
        let vms: Vec<_> = request
            .resources
            .iter()
            .filter(|i| i.resource.kind == vm::KIND)
            .collect();
        let mut results = Vec::new();
        // One listing for both: without a type filter when images need the storages'
        // usage (PVE's `type` takes one value), else VMs only.
        let listing = match (images.is_empty(), vms.is_empty()) {
            (true, true) => None,
            (true, false) => Some(self.client.cluster_resources(ResourceType::Vm).await),
            (false, _) => Some(self.client.cluster_resources_all().await),
        };
        if let Some(Ok(listing)) = &listing {
            self.vmids.remember(listing).await;
        }
        if !images.is_empty() {
            // Without a listing every image is confirmed by listing its storage.
            let usage = listing.as_ref().and_then(|l| l.as_ref().ok());
            results.extend(self.read_images(&images, usage, request.deep).await);
        }
        if let Some(listing) = listing
            && !vms.is_empty()
        {
            results.extend(self.read_vms(&vms, listing, request.deep).await);
        }
        for item in &request.resources {
            if item.resource.kind != image::KIND && item.resource.kind != vm::KIND {
                results.push(infraflux_provider::ReadResult {
                    address: item.resource.address.clone(),
                    outcome: infraflux_provider::ReadOutcome::Failed(unknown_kind(
                        "read",
                        &item.resource,
                    )),
                });
            }
        }
        Ok(ReadResponse { results })
    }

    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        plan_desired(&request)
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let address = &request.resource.address;
        let (id, attributes) = match request.resource.kind.as_str() {
            image::KIND => self.create_image(address, &request.planned).await?,
            vm::KIND => self.create_vm(address, &request.planned).await?,
            _ => return Err(unknown_kind("create", &request.resource)),
        };
        Ok(CreateResponse { id, attributes })
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let address = &request.resource.address;
        let attributes = match request.resource.kind.as_str() {
            // Every input of an image forces a new one: nothing changes in place.
            image::KIND => {
                let mut planned = request.planned.clone();
                image::plan_volume(&mut planned);
                planned
            }
            vm::KIND => {
                self.update_vm(address, &request.id, &request.prior, &request.planned)
                    .await?
            }
            _ => return Err(unknown_kind("update", &request.resource)),
        };
        Ok(UpdateResponse { attributes })
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError> {
        let address = &request.resource.address;
        match request.resource.kind.as_str() {
            image::KIND => self.delete_image(address, &request.prior).await,
            vm::KIND => self.delete_vm(address, &request.id, &request.prior).await,
            _ => Err(unknown_kind("delete", &request.resource)),
        }
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError> {
        let address = &request.resource.address;
        let attributes = match request.resource.kind.as_str() {
            image::KIND => self.import_image(address, &request.id).await?,
            vm::KIND => self.import_vm(address, &request.id).await?,
            _ => return Err(unknown_kind("import", &request.resource)),
        };
        Ok(ImportResponse { attributes })
    }

    async fn inventory(
        &self,
        request: InventoryRequest,
    ) -> Result<Option<Inventory>, ProviderError> {
        self.list_inventory(&request.resources)
            .await
            .map(Some)
            .map_err(|e| e.into_provider("inventory", "/cluster/resources"))
    }

    /// See [`concurrency_key`].
    fn concurrency_key(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<ConcurrencyKey> {
        concurrency_key(operation, resource, attributes, self.storage_slots.limit())
    }
}

/// Image downloads and deletes on one node's storage run one at a time. VM creates and
/// deletes: the provider limits their storage-locking part (the create, resize and
/// destroy tasks) to `storage_limit` per node and storage ([`storage_slots`]), and the
/// rest of a create (config read, start, polls) runs outside; the engine is asked for at
/// most half as many again in flight, enough to keep the slots busy while others start,
/// so that `--parallelism` goes to nodes whose slots are free rather than waiting on a
/// busy one.
pub(crate) fn concurrency_key(
    operation: Operation,
    resource: &ResourceRef,
    attributes: &Attributes,
    storage_limit: usize,
) -> Option<ConcurrencyKey> {
    if operation == Operation::Update || (resource.kind != image::KIND && resource.kind != vm::KIND)
    {
        return None;
    }
    let known = |name: &str| {
        attributes
            .get(name)
            .filter(|v| !is_unknown(v))
            .and_then(Value::as_str)
    };
    let limit = if resource.kind == image::KIND {
        1
    } else {
        (3 * storage_limit.max(1)).div_ceil(2)
    };
    Some(ConcurrencyKey {
        key: format!("proxmox:{}/{}", known("node")?, known("storage")?),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> ProxmoxProvider {
        let client = Client::new(crate::ClientConfig::new(
            "https://127.0.0.1:8006".parse().unwrap(),
            crate::Credentials::api_token("root@pam!t=s").unwrap(),
            crate::TlsVerification::Insecure,
        ))
        .unwrap();
        ProxmoxProvider::new(client, ProviderOptions::default())
    }

    fn resource(kind: &str) -> ResourceRef {
        ResourceRef {
            address: format!("dev/w/{kind}.x"),
            kind: kind.into(),
        }
    }

    #[test]
    fn writes_share_a_key_per_node_and_storage() {
        let p = provider();
        let image = json!({"node": "pve1", "storage": "local"})
            .as_object()
            .unwrap()
            .clone();
        let key = p
            .concurrency_key(Operation::Create, &resource(image::KIND), &image)
            .unwrap();
        assert_eq!(
            key,
            ConcurrencyKey {
                key: "proxmox:pve1/local".into(),
                limit: 1
            }
        );
        assert_eq!(
            p.concurrency_key(Operation::Delete, &resource(image::KIND), &image),
            Some(key)
        );
        // VM creates and deletes: the storage-locking part is limited inside the
        // provider (see `storage_slots`); the engine keeps half as many again in flight.
        let vm = json!({"node": "pve1", "storage": "local-lvm"})
            .as_object()
            .unwrap()
            .clone();
        for operation in [Operation::Create, Operation::Delete] {
            assert_eq!(
                p.concurrency_key(operation, &resource(vm::KIND), &vm),
                Some(ConcurrencyKey {
                    key: "proxmox:pve1/local-lvm".into(),
                    limit: 6
                })
            );
        }
        assert_eq!(
            p.concurrency_key(Operation::Update, &resource(vm::KIND), &vm),
            None
        );
        p.set_storage_concurrency(1);
        assert_eq!(
            p.concurrency_key(Operation::Create, &resource(vm::KIND), &vm)
                .unwrap()
                .limit,
            2
        );
    }

    #[test]
    fn an_image_without_a_checksum_plans_no_change_after_create() {
        let desired = json!({
            "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
            "schematic": "a".repeat(64), "url": "https://factory.talos.dev/x.raw",
            "filename": "talos.raw",
        })
        .as_object()
        .unwrap()
        .clone();
        // What create records: the inputs, `checksum: null` and the volume.
        let mut prior = desired.clone();
        prior.insert("checksum".into(), Value::Null);
        prior.insert("volume".into(), json!("local:import/talos.raw"));
        let response = plan_desired(&PlanRequest {
            resource: resource(image::KIND),
            prior: Some(&prior),
            desired,
        })
        .unwrap();
        assert!(
            response.requires_replace.is_empty(),
            "{:?}",
            response.requires_replace
        );
        assert_eq!(response.planned, prior);
    }

    #[tokio::test]
    async fn validate_reports_problems_and_tolerates_unknowns() {
        let p = provider();
        let mut desired = json!({
            "node": "pve1", "name": "cp-1", "cores": 2, "memory_mib": 4096, "disk_gib": 40,
            "storage": "local-lvm", "bridge": "vmbr0", "ipv4": "10.0.0.10/24",
            "gateway": "10.0.0.1", "dns": [], "tags": [], "guest_agent": false,
            "vmid_range": [1000, 1099],
        })
        .as_object()
        .unwrap()
        .clone();
        desired.insert("image".into(), infraflux_provider::unknown());
        let response = p
            .validate(ValidateRequest {
                resource: resource(vm::KIND),
                desired: desired.clone(),
            })
            .await;
        assert!(
            response.diagnostics.is_empty(),
            "{:?}",
            response.diagnostics
        );
        desired.insert("memory_mib".into(), json!(8));
        let response = p
            .validate(ValidateRequest {
                resource: resource(vm::KIND),
                desired,
            })
            .await;
        assert_eq!(response.diagnostics.len(), 1);
        assert_eq!(
            response.diagnostics[0].attribute.as_deref(),
            Some("memory_mib")
        );
    }
}
