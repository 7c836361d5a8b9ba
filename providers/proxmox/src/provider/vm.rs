//! `proxmox_vm`: a Talos VM (q35, OVMF, a boot disk imported from a `proxmox_image`,
//! cloud-init network settings), started once created and kept running.
//!
//! What a refresh reads (see the provider README for the cost in calls): the cluster
//! listing shows each VM's node, name, CPUs, memory, tags, power state and boot disk
//! size; a VM whose listing differs from state (or every VM with `deep`) is read in full
//! with `GET …/pending`, which gives the current config (disks, network, cloud-init) and
//! the changes waiting for a restart in one answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures_util::StreamExt;
use infraflux_provider::{
    AttributeSchema, Attributes, ErrorKind, PlanResponse, ProviderError, ReadItem, ReadOutcome,
    ReadResult, ResourceSchema, is_unknown, unknown,
};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::ProxmoxProvider;
use super::attributes::{Problems, Reader, number, text};
use crate::api::{ClusterResource, ResourceType, VmConfig, VmReading};
use crate::error::ApiError;
use crate::property::{Agent, DiskSize, Drive, GIB, IpConfig, NetDevice, Tags, parse_memory_mib};
use crate::task;

pub const KIND: &str = "proxmox_vm";

const MIB: u64 = 1024 * 1024;

pub fn schema() -> ResourceSchema {
    let input = AttributeSchema::input;
    ResourceSchema::new(
        KIND,
        vec![
            // Not force-new: a VM moved by HA or a migration is drift to report, never a
            // reason to destroy it.
            input("node"),
            input("name"),
            input("cores"),
            input("memory_mib"),
            // Growth is in place; shrinking replaces (see `plan`).
            input("disk_gib"),
            input("storage").force_new(),
            input("bridge"),
            input("vlan"),
            input("ipv4").force_new(),
            input("gateway"),
            input("dns"),
            input("tags"),
            // Create-only: the boot disk is imported once; later image changes apply to
            // new VMs (Talos upgrades itself in place).
            input("image"),
            input("guest_agent"),
            input("vmid_range"),
            AttributeSchema::computed("vmid"),
            AttributeSchema::computed("mac"),
            // `running` is always planned: a VM found stopped (by hand, a failed start, an
            // apply killed before its start) is started by an update.
            AttributeSchema::computed("power"),
            // Changes of the keys InfraFlux sets that wait for a restart; `{}` is planned.
            AttributeSchema::computed("pending"),
        ],
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub node: String,
    pub name: String,
    pub cores: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub storage: String,
    pub bridge: String,
    pub vlan: Option<u16>,
    /// `10.0.0.10/24`.
    pub ipv4: String,
    pub gateway: String,
    pub dns: Vec<String>,
    pub tags: Tags,
    /// `local:import/talos-….raw`.
    pub image: String,
    pub guest_agent: bool,
    pub vmid_range: (u32, u32),
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_cidr4(text: &str) -> bool {
    text.split_once('/').is_some_and(|(ip, len)| {
        ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
    })
}

impl VmSpec {
    pub fn read(attributes: &Attributes, allow_unknown: bool) -> (Option<Self>, Problems) {
        let mut r = Reader::new(attributes, allow_unknown);
        let node = r.string("node");
        let name = r.string("name");
        let cores = r.integer("cores", 1, 512);
        let memory_mib = r.integer("memory_mib", 16, 4 * 1024 * 1024 * 1024);
        let disk_gib = r.integer("disk_gib", 1, 1 << 20);
        let storage = r.string("storage");
        let bridge = r.string("bridge");
        let vlan = r.integer_opt("vlan", 1, 4094, false);
        let ipv4 = r.string("ipv4");
        let gateway = r.string("gateway");
        let dns = r.strings("dns").unwrap_or_default();
        let tags = r.strings("tags").unwrap_or_default();
        let image = r.string("image");
        let guest_agent = match attributes.get("guest_agent") {
            None | Some(Value::Null) => Some(false),
            Some(_) => r.boolean("guest_agent"),
        };
        let vmid_range = match attributes.get("vmid_range") {
            Some(value) if is_unknown(value) => None,
            Some(Value::Array(items)) if items.len() == 2 => {
                match (items[0].as_u64(), items[1].as_u64()) {
                    (Some(start), Some(end))
                        if (100..=999_999_999).contains(&start)
                            && start <= end
                            && end <= 999_999_999 =>
                    {
                        Some((start as u32, end as u32))
                    }
                    _ => {
                        r.problems.add(
                            "vmid_range",
                            "not a VMID range",
                            "use [start, end] with 100 ≤ start ≤ end ≤ 999999999",
                        );
                        None
                    }
                }
            }
            _ => {
                r.problems.add(
                    "vmid_range",
                    "missing or not [start, end]",
                    "set `vmid_range: [start, end]`, e.g. [1000, 1999]",
                );
                None
            }
        };
        let mut problems = r.problems;
        if name.as_ref().is_some_and(|n| !is_dns_name(n)) {
            problems.add(
                "name",
                "not a valid VM name",
                "PVE requires a DNS name: letters, digits and `-`, dot-separated",
            );
        }
        if ipv4.as_ref().is_some_and(|ip| !is_cidr4(ip)) {
            problems.add(
                "ipv4",
                "not an IPv4 address with prefix length",
                "use CIDR form, e.g. 10.0.0.10/24",
            );
        }
        if gateway
            .as_ref()
            .is_some_and(|gw| gw.parse::<Ipv4Addr>().is_err())
        {
            problems.add("gateway", "not an IPv4 address", "e.g. 10.0.0.1");
        }
        if let Some(bad) = dns.iter().find(|d| d.parse::<IpAddr>().is_err()) {
            problems.add(
                "dns",
                format!("`{bad}` is not an IP address"),
                "list resolver addresses, e.g. [10.0.0.1]",
            );
        }
        let tags = Tags::new(&tags);
        if let Some(bad) = tags.invalid() {
            problems.add("tags", format!("`{bad}` is not a valid PVE tag"), "tags are lower-case letters, digits and `_-+.`, starting with a letter, digit or `_`");
        }
        if image.as_ref().is_some_and(|i| !i.contains(':')) {
            problems.add(
                "image",
                "not a volume ID",
                "use the image's volume, e.g. local:import/talos-v1.13.9-….raw",
            );
        }
        if !problems.0.is_empty() {
            return (None, problems);
        }
        let spec = (|| {
            Some(VmSpec {
                node: node?,
                name: name?,
                cores: cores?,
                memory_mib: memory_mib?,
                disk_gib: disk_gib?,
                storage: storage?,
                bridge: bridge?,
                vlan: vlan.map(|v| v as u16),
                ipv4: ipv4?,
                gateway: gateway?,
                dns,
                tags,
                image: image?,
                guest_agent: guest_agent?,
                vmid_range: vmid_range?,
            })
        })();
        (spec, problems)
    }

    pub fn net0(&self) -> NetDevice {
        NetDevice {
            tag: self.vlan,
            ..NetDevice::virtio(&self.bridge)
        }
    }

    pub fn ipconfig0(&self) -> IpConfig {
        IpConfig {
            ip: Some(self.ipv4.clone()),
            gw: Some(self.gateway.clone()),
            ..IpConfig::default()
        }
    }

    pub fn boot_disk(&self) -> Drive {
        Drive {
            discard: Some("on".into()),
            import_from: Some(self.image.clone()),
            ..Drive::new(format!("{}:0", self.storage))
        }
    }

    /// The parameters of `POST /nodes/{node}/qemu`, in a fixed order.
    pub fn create_params(&self, vmid: u32, description: &str) -> Vec<(String, String)> {
        let mut params: Vec<(&str, String)> = vec![
            ("vmid", vmid.to_string()),
            ("name", self.name.clone()),
            ("description", description.to_string()),
            ("ostype", "l26".into()),
            ("machine", "q35".into()),
            ("bios", "ovmf".into()),
            (
                "efidisk0",
                format!("{}:1,efitype=4m,pre-enrolled-keys=0", self.storage),
            ),
            ("scsihw", "virtio-scsi-pci".into()),
            ("scsi0", self.boot_disk().to_string()),
            ("boot", "order=scsi0".into()),
            ("cores", self.cores.to_string()),
            ("sockets", "1".into()),
            ("memory", self.memory_mib.to_string()),
            ("balloon", "0".into()),
        ];
        if self.guest_agent {
            params.push(("agent", Agent::enabled(true).to_string()));
        }
        params.push(("net0", self.net0().to_string()));
        params.push(("ide2", format!("{}:cloudinit", self.storage)));
        params.push(("ipconfig0", self.ipconfig0().to_string()));
        if !self.dns.is_empty() {
            params.push(("nameserver", self.dns.join(" ")));
        }
        if !self.tags.is_empty() {
            params.push(("tags", self.tags.to_string()));
        }
        params.push(("onboot", "1".into()));
        params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// The power state InfraFlux keeps every VM in.
pub const RUNNING: &str = "running";

/// The config keys InfraFlux sets after create, whose pending changes it reports (the
/// `pending` attribute) and clears by setting them again: PVE drops a pending value equal
/// to the current one.
const MANAGED_KEYS: [&str; 8] = [
    "name",
    "cores",
    "memory",
    "tags",
    "agent",
    "ipconfig0",
    "nameserver",
    "net0",
];

/// The description that marks a VM as created for `address`: an interrupted create is
/// recognised by it and finished instead of duplicated.
pub fn marker(address: &str) -> String {
    format!("Managed by InfraFlux ({address})")
}

/// Attributes from a VM's config. `carried` supplies what PVE cannot tell: the image a
/// disk was imported from, the VMID range.
pub fn attributes_from_config(
    vmid: u32,
    node: &str,
    config: &VmConfig,
    carried: &Attributes,
) -> Attributes {
    let mut a = Attributes::new();
    let drive = config.get("scsi0").and_then(|d| Drive::parse(d).ok());
    let net = config.get("net0").and_then(|n| NetDevice::parse(n).ok());
    let ip = config
        .get("ipconfig0")
        .and_then(|i| IpConfig::parse(i).ok())
        .unwrap_or_default();
    let agent = config
        .get("agent")
        .and_then(|a| Agent::parse(a).ok())
        .unwrap_or_default();
    a.insert("node".into(), json!(node));
    a.insert("name".into(), json!(config.get("name")));
    a.insert(
        "cores".into(),
        json!(
            config
                .get("cores")
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(1)
        ),
    );
    a.insert(
        "memory_mib".into(),
        json!(
            config
                .get("memory")
                .and_then(parse_memory_mib)
                .unwrap_or(512)
        ),
    );
    a.insert(
        "disk_gib".into(),
        json!(drive.as_ref().and_then(|d| d.size).map(|s| s.bytes() / GIB)),
    );
    a.insert(
        "storage".into(),
        json!(drive.as_ref().and_then(|d| d.storage())),
    );
    a.insert(
        "bridge".into(),
        json!(net.as_ref().and_then(|n| n.bridge.clone())),
    );
    a.insert("vlan".into(), json!(net.as_ref().and_then(|n| n.tag)));
    a.insert("ipv4".into(), json!(ip.ip));
    a.insert("gateway".into(), json!(ip.gw));
    let dns: Vec<&str> = config
        .get("nameserver")
        .map(|n| n.split_whitespace().collect())
        .unwrap_or_default();
    a.insert("dns".into(), json!(dns));
    let tags = config.get("tags").map(Tags::parse).unwrap_or_default();
    a.insert("tags".into(), json!(tags.as_slice()));
    let image = carried
        .get("image")
        .filter(|v| !v.is_null() && !is_unknown(v))
        .cloned()
        .unwrap_or_else(|| json!(drive.as_ref().and_then(|d| d.import_from.clone())));
    a.insert("image".into(), image);
    a.insert("guest_agent".into(), json!(agent.enabled));
    a.insert(
        "vmid_range".into(),
        carried
            .get("vmid_range")
            .filter(|v| !is_unknown(v))
            .cloned()
            .unwrap_or(Value::Null),
    );
    a.insert("vmid".into(), json!(vmid));
    a.insert("mac".into(), json!(net.and_then(|n| n.macaddr)));
    a
}

/// Attributes from a full read: the config's, the power state, and the pending changes
/// of the keys InfraFlux sets.
pub fn attributes_from_reading(
    vmid: u32,
    node: &str,
    reading: &VmReading,
    power: &str,
    carried: &Attributes,
) -> Attributes {
    let mut attributes = attributes_from_config(vmid, node, &reading.config, carried);
    attributes.insert("power".into(), json!(power));
    attributes.insert("pending".into(), pending_attribute(&reading.pending));
    attributes
}

/// `{"memory": "8192", "net0": null}`: managed keys waiting for a restart (null: to be
/// deleted).
fn pending_attribute(pending: &std::collections::BTreeMap<String, Option<String>>) -> Value {
    Value::Object(
        pending
            .iter()
            .filter(|(key, _)| MANAGED_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), json!(value)))
            .collect(),
    )
}

/// Whether the cluster inventory agrees with the prior attributes on everything it
/// shows (node, name, CPUs, memory, tags, power state, boot disk size): if so the config
/// need not be read. A state recorded before the power state was (no `power`) is read
/// once.
pub fn inventory_matches(prior: &Attributes, resource: &ClusterResource) -> bool {
    let prior_tags = prior
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| Tags::new(t.iter().filter_map(Value::as_str)))
        .unwrap_or_default();
    resource.node.as_deref() == text(prior, "node")
        && resource.name.as_deref() == text(prior, "name")
        && resource.maxcpu == number(prior, "cores")
        && resource.maxmem == number(prior, "memory_mib").map(|m| m * MIB)
        && resource
            .tags
            .as_deref()
            .map(Tags::parse)
            .unwrap_or_default()
            == prior_tags
        && text(prior, "power").is_some_and(|power| resource.status.as_deref() == Some(power))
        && boot_disk_matches(prior, resource)
}

/// The listing's `maxdisk` is the boot disk's size (PVE's `bootdisk_size`: the first disk
/// of the boot order, `scsi0` for InfraFlux's VMs); 0 or absent says nothing.
fn boot_disk_matches(prior: &Attributes, resource: &ClusterResource) -> bool {
    match (
        resource.maxdisk.filter(|bytes| *bytes > 0),
        number(prior, "disk_gib"),
    ) {
        (Some(bytes), Some(gib)) => bytes == gib * GIB,
        _ => true,
    }
}

/// Plan: the schema's default, plus: tags normalised (order is not a change), the
/// image carried over (create-only), shrinking the disk replaces.
pub fn plan(prior: Option<&Attributes>, desired: &Attributes) -> PlanResponse {
    let schema = schema();
    let mut planned = desired.clone();
    if let Some(tags) = desired
        .get("tags")
        .and_then(Value::as_array)
        .filter(|t| t.iter().all(Value::is_string))
    {
        let tags = Tags::new(tags.iter().filter_map(Value::as_str));
        planned.insert("tags".into(), json!(tags.as_slice()));
    }
    let mut requires_replace = Vec::new();
    if let Some(prior) = prior {
        for attribute in schema
            .attributes
            .iter()
            .filter(|a| a.force_new && !a.computed)
        {
            if prior.get(&attribute.name) != desired.get(&attribute.name) {
                requires_replace.push(attribute.name.clone());
            }
        }
        if let (Some(before), Some(after)) =
            (number(prior, "disk_gib"), number(desired, "disk_gib"))
            && after < before
        {
            requires_replace.push("disk_gib".into());
        }
    }
    // A state recorded before these were refreshed does not have them: nothing to change
    // until a refresh fills them in.
    if prior.is_none_or(|p| p.contains_key("power")) {
        planned.insert("power".into(), json!(RUNNING));
    }
    if prior.is_none_or(|p| p.contains_key("pending")) {
        planned.insert("pending".into(), json!({}));
    }
    let keep = prior.filter(|_| requires_replace.is_empty());
    for name in ["vmid", "mac"] {
        let value = keep
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(unknown);
        planned.insert(name.into(), value);
    }
    if let Some(prior) = keep {
        planned.insert(
            "image".into(),
            prior.get("image").cloned().unwrap_or(Value::Null),
        );
    }
    PlanResponse {
        planned,
        requires_replace,
        create_before_destroy: false,
    }
}

/// (VMID, node, listed power state) of a VM named like `prior`'s in its VMID range.
fn interrupted_create(
    inventory: &[ClusterResource],
    prior: &Attributes,
) -> Option<(u32, String, Option<String>)> {
    let name = text(prior, "name")?;
    let range = prior
        .get("vmid_range")
        .and_then(Value::as_array)
        .and_then(|r| Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?)));
    inventory
        .iter()
        .filter(|r| r.kind == "qemu" && r.name.as_deref() == Some(name))
        .filter_map(|r| Some((r.vmid?, r.node.clone()?, r.status.clone())))
        .find(|(vmid, _, _)| {
            range.is_none_or(|(start, end)| (start..=end).contains(&u64::from(*vmid)))
        })
}

/// Whether a VM read in full was in the cluster listing, with the power state it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listed {
    With(Option<String>),
    /// Missing from the listing: read to confirm it is gone.
    Missing,
}

fn vmid_of(id: &str, operation: &str, address: &str) -> Result<u32, ProviderError> {
    id.parse().map_err(|_| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            operation,
            address,
            format!("`{id}` is not a VMID"),
        )
    })
}

impl ProxmoxProvider {
    /// The VM's entry in the cluster inventory.
    async fn locate(&self, vmid: u32) -> Result<Option<ClusterResource>, ApiError> {
        let inventory = self.client.cluster_resources(ResourceType::Vm).await?;
        Ok(inventory
            .into_iter()
            .find(|r| r.vmid == Some(vmid) && r.kind == "qemu"))
    }

    /// The VM an earlier, interrupted create of this resource left (same name in the
    /// VMID range, this resource's marker): (VMID, node, config). A same-named VM made
    /// by someone else is a conflict. A listed VM that is gone (the shared listing
    /// predates a delete, e.g. of the VM this create replaces) renews the listing once.
    async fn leftover(
        &self,
        address: &str,
        spec: &VmSpec,
        guests: &mut Arc<Vec<ClusterResource>>,
    ) -> Result<Option<(u32, String, VmConfig)>, ProviderError> {
        let fail = |e: ApiError| e.into_provider("create", address);
        let (start, end) = spec.vmid_range;
        for renewed in [false, true] {
            let Some((vmid, node)) = guests
                .iter()
                .filter(|r| r.vmid.is_some_and(|v| (start..=end).contains(&v)))
                .find(|r| r.kind == "qemu" && r.name.as_deref() == Some(spec.name.as_str()))
                .map(|r| {
                    (
                        r.vmid.unwrap_or_default(),
                        r.node.clone().unwrap_or_else(|| spec.node.clone()),
                    )
                })
            else {
                return Ok(None);
            };
            let config = match self.client.vm_config(&node, vmid).await {
                Ok(config) => config,
                Err(e) if e.is_not_found() && !renewed => {
                    self.vmids.forget().await;
                    *guests = self
                        .vmids
                        .guests(&self.client, self.options.vm_listing_max_age)
                        .await
                        .map_err(fail)?;
                    continue;
                }
                Err(e) => return Err(fail(e)),
            };
            if !config
                .get("description")
                .is_some_and(|d| d.contains(&marker(address)))
            {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    "create",
                    address,
                    format!(
                        "a VM named `{}` already exists in the VMID range (VMID {vmid} on {node}) and was not created for this resource\n  help: adopt it by importing VMID {vmid} for `{address}`, rename or remove it, or choose another name",
                        spec.name
                    ),
                ));
            }
            // The config's lock, not the listing's: the listing may be older.
            if let Some(lock) = config.get("lock") {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    "create",
                    address,
                    format!(
                        "VM {vmid}, from an earlier create of this resource, is locked ({lock}); retry when the lock is gone"
                    ),
                ));
            }
            return Ok(Some((vmid, node, config)));
        }
        Ok(None)
    }

    pub(super) async fn create_vm(
        &self,
        address: &str,
        planned: &Attributes,
    ) -> Result<(String, Attributes), ProviderError> {
        let (spec, problems) = VmSpec::read(planned, false);
        let Some(spec) = spec else {
            return Err(problems.into_error("create", address));
        };
        let fail = |e: ApiError| e.into_provider("create", address);
        let max_age = self.options.vm_listing_max_age;
        let mut guests = self
            .vmids
            .guests(&self.client, max_age)
            .await
            .map_err(fail)?;
        // An earlier create of this resource may have been interrupted: finish it.
        if let Some((vmid, node, config)) = self.leftover(address, &spec, &mut guests).await? {
            tracing::info!(%address, vmid, "finishing an earlier, interrupted create");
            let attributes = self
                .finish_vm(address, &spec, &node, vmid, Some(config), None)
                .await?;
            return Ok((vmid.to_string(), attributes));
        }
        let (start, end) = spec.vmid_range;
        let description = marker(address);
        // The create task takes the storage lock (for each disk it allocates): it runs
        // in one of the node's storage slots, released when the task ends.
        let slot = self.storage_slots.acquire(&spec.node, &spec.storage).await;
        let mut attempts = 0;
        let (vmid, upid) = loop {
            attempts += 1;
            let Some(vmid) = self.vmids.claim(&guests, spec.vmid_range) else {
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    "create",
                    address,
                    format!(
                        "no free VMID in vmid_range [{start}, {end}]\n  help: widen `vmid_range` or remove unused VMs"
                    ),
                ));
            };
            let result = self
                .client
                .create_vm(&spec.node, &spec.create_params(vmid, &description))
                .await;
            match result {
                Ok(upid) => break (vmid, upid),
                // Someone else took the VMID since the listing: it stays claimed (never
                // tried again here), the listing is renewed, and another is picked.
                Err(e)
                    if e.kind == ErrorKind::Conflict && attempts < self.options.vmid_attempts =>
                {
                    tracing::debug!(%address, vmid, "VMID taken meanwhile; picking another");
                    self.vmids.forget().await;
                    guests = self
                        .vmids
                        .guests(&self.client, max_age)
                        .await
                        .map_err(fail)?;
                }
                Err(e) => {
                    // A create whose answer was lost may have made the VM: a retry must
                    // list again to find it by name rather than make a second one.
                    self.vmids.release(vmid);
                    self.vmids.forget().await;
                    return Err(fail(e));
                }
            }
        };
        // The VMID stays claimed: a listing shared with later creates may predate it.
        let finished = async {
            task::wait(&self.client, &upid, self.wait(self.options.create_timeout))
                .await
                .map_err(|e| e.into_provider("create", address))?;
            // The slot goes on to the resize: given back and taken again, it would
            // queue behind every create waiting for one.
            self.finish_vm(address, &spec, &spec.node, vmid, None, Some(slot))
                .await
        }
        .await;
        if finished.is_err() {
            // The VM may exist, half made, and the shared listing predates it: a retry
            // must list again to find and finish it rather than make a second one.
            self.vmids.forget().await;
        }
        Ok((vmid.to_string(), finished?))
    }

    /// After create: grow the boot disk to `disk_gib`, start the VM. `config`: the VM's
    /// config when already read (an interrupted create being finished); a fresh create
    /// reads it while the disk grows, so the read adds no step to the create's chain of
    /// calls (resize to an absolute size is a no-op at that size, and PVE refuses to
    /// shrink: then the config read tells the user by how much the image is larger).
    /// `slot`: the create's storage slot, for the resize (released once it ends).
    async fn finish_vm(
        &self,
        address: &str,
        spec: &VmSpec,
        node: &str,
        vmid: u32,
        config: Option<VmConfig>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Attributes, ProviderError> {
        let fail = |e: ApiError| e.into_provider("create", address);
        let desired = DiskSize::from_gib(spec.disk_gib);
        let too_large = |current: DiskSize| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                "create",
                address,
                format!(
                    "the imported image ({current}) is larger than disk_gib ({}G); VM {vmid} was left stopped\n  help: raise `disk_gib` to at least {}",
                    spec.disk_gib,
                    current.gib_ceil()
                ),
            )
        };
        let boot_disk = |config: &VmConfig| {
            config
                .get("scsi0")
                .and_then(|d| Drive::parse(d).ok())
                .ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::Other,
                        "create",
                        address,
                        format!("VM {vmid} has no scsi0 disk after create"),
                    )
                })
        };
        let mut config = match config {
            Some(config) => {
                let current = boot_disk(&config)?.size.unwrap_or(DiskSize(0));
                if current > desired {
                    return Err(too_large(current));
                }
                if current < desired {
                    self.resize(
                        address,
                        "create",
                        node,
                        &spec.storage,
                        vmid,
                        spec.disk_gib,
                        slot,
                    )
                    .await?;
                }
                config
            }
            None => {
                let (config, resized) = tokio::join!(
                    self.client.vm_config(node, vmid),
                    self.resize(
                        address,
                        "create",
                        node,
                        &spec.storage,
                        vmid,
                        spec.disk_gib,
                        slot
                    )
                );
                let config = config.map_err(fail)?;
                if let Err(error) = resized {
                    let current = boot_disk(&config)?.size.unwrap_or(DiskSize(0));
                    return Err(if current > desired {
                        too_large(current)
                    } else {
                        error
                    });
                }
                config
            }
        };
        let mut disk = boot_disk(&config)?;
        disk.size = Some(desired);
        config.values.insert("scsi0".into(), disk.to_string());
        // A start that fails leaves the VM stopped: the create fails, its record stays
        // pending, and the next refresh adopts the VM as `power: stopped`, which plans
        // the start again.
        self.start(address, "create", node, vmid).await?;
        let mut carried = Attributes::new();
        carried.insert("image".into(), json!(spec.image));
        carried.insert(
            "vmid_range".into(),
            json!([spec.vmid_range.0, spec.vmid_range.1]),
        );
        // Read before the start, which applied whatever was pending: nothing is now.
        let reading = VmReading {
            config,
            pending: Default::default(),
        };
        Ok(attributes_from_reading(
            vmid, node, &reading, RUNNING, &carried,
        ))
    }

    /// Start the VM and wait for it; one that already runs counts as started.
    async fn start(
        &self,
        address: &str,
        operation: &str,
        node: &str,
        vmid: u32,
    ) -> Result<(), ProviderError> {
        match self.client.start_vm(node, vmid).await {
            Ok(upid) => {
                match task::wait(&self.client, &upid, self.wait(self.options.task_timeout)).await {
                    Ok(_) => Ok(()),
                    Err(task::TaskError::Failed { exit_status, .. })
                        if exit_status.contains("already running") =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.into_provider(operation, address)),
                }
            }
            Err(e) if e.message.contains("already running") => Ok(()),
            Err(e) => Err(e.into_provider(operation, address)),
        }
    }

    /// Grow the boot disk to `gib` (absolute: PVE does nothing at that size already and
    /// refuses to shrink). On LVM it takes the storage lock (`LVMPlugin::volume_resize`),
    /// so it runs in a storage slot: `slot` when the caller holds one, else one taken here.
    #[allow(clippy::too_many_arguments)]
    async fn resize(
        &self,
        address: &str,
        operation: &str,
        node: &str,
        storage: &str,
        vmid: u32,
        gib: u64,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), ProviderError> {
        let _slot = match slot {
            Some(slot) => slot,
            None => self.storage_slots.acquire(node, storage).await,
        };
        let upid = self
            .client
            .resize_disk(node, vmid, "scsi0", &format!("{gib}G"))
            .await
            .map_err(|e| e.into_provider(operation, address))?;
        if let Some(upid) = upid {
            task::wait(&self.client, &upid, self.wait(self.options.task_timeout))
                .await
                .map_err(|e| e.into_provider(operation, address))?;
        }
        Ok(())
    }

    pub(super) async fn update_vm(
        &self,
        address: &str,
        id: &str,
        prior: &Attributes,
        planned: &Attributes,
    ) -> Result<Attributes, ProviderError> {
        let (spec, problems) = VmSpec::read(planned, false);
        let Some(spec) = spec else {
            return Err(problems.into_error("update", address));
        };
        let vmid = vmid_of(id, "update", address)?;
        let fail = |e: ApiError| e.into_provider("update", address);
        let node = text(prior, "node").unwrap_or(&spec.node).to_string();
        let mut set: Vec<(String, String)> = Vec::new();
        let mut delete: Vec<String> = Vec::new();
        // A key with a pending change is set again to the planned value, so the change
        // made outside InfraFlux does not wait for the next restart: PVE drops a pending
        // value equal to the current one, or keeps ours pending (applied below).
        let pending = prior
            .get("pending")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let changed = |name: &str, value: Value, key: &str| {
            prior.get(name) != Some(&value) || pending.contains_key(key)
        };
        if changed("name", json!(spec.name), "name") {
            set.push(("name".into(), spec.name.clone()));
        }
        if changed("cores", json!(spec.cores), "cores") {
            set.push(("cores".into(), spec.cores.to_string()));
        }
        if changed("memory_mib", json!(spec.memory_mib), "memory") {
            set.push(("memory".into(), spec.memory_mib.to_string()));
        }
        if changed("tags", json!(spec.tags.as_slice()), "tags") {
            if spec.tags.is_empty() {
                delete.push("tags".into());
            } else {
                set.push(("tags".into(), spec.tags.to_string()));
            }
        }
        if changed("guest_agent", json!(spec.guest_agent), "agent") {
            set.push(("agent".into(), Agent::enabled(spec.guest_agent).to_string()));
        }
        if changed("gateway", json!(spec.gateway), "ipconfig0")
            || changed("ipv4", json!(spec.ipv4), "ipconfig0")
        {
            set.push(("ipconfig0".into(), spec.ipconfig0().to_string()));
        }
        if changed("dns", json!(spec.dns), "nameserver") {
            if spec.dns.is_empty() {
                delete.push("nameserver".into());
            } else {
                set.push(("nameserver".into(), spec.dns.join(" ")));
            }
        }
        if changed("bridge", json!(spec.bridge), "net0")
            || changed("vlan", json!(spec.vlan), "net0")
        {
            // Keep the MAC and any option set outside InfraFlux.
            let config = self.client.vm_config(&node, vmid).await.map_err(fail)?;
            let mut net = config
                .get("net0")
                .and_then(|n| NetDevice::parse(n).ok())
                .unwrap_or_else(|| spec.net0());
            net.bridge = Some(spec.bridge.clone());
            net.tag = spec.vlan;
            set.push(("net0".into(), net.to_string()));
        }
        if !set.is_empty() || !delete.is_empty() {
            self.client
                .set_vm_config(&node, vmid, &set, &delete)
                .await
                .map_err(fail)?;
        }
        if number(prior, "disk_gib").is_none_or(|before| spec.disk_gib > before) {
            self.resize(
                address,
                "update",
                &node,
                &spec.storage,
                vmid,
                spec.disk_gib,
                None,
            )
            .await?;
        }
        // A state recorded before the power state was tracked: the VM was taken as running.
        let running = text(prior, "power").is_none_or(|power| power == RUNNING);
        if !running {
            // Stopped (by hand, a failed start, an apply killed before its start): the
            // start applies whatever is pending.
            tracing::info!(%address, vmid, "starting the stopped VM");
            self.start(address, "update", &node, vmid).await?;
        } else if self.options.reboot_after_update && (!set.is_empty() || !delete.is_empty()) {
            let pending = self.client.vm_pending(&node, vmid).await.map_err(fail)?;
            if pending.iter().any(|p| p.is_change()) {
                tracing::info!(%address, vmid, "rebooting to apply pending changes");
                let upid = self.client.reboot_vm(&node, vmid).await.map_err(fail)?;
                task::wait(&self.client, &upid, self.wait(self.options.task_timeout))
                    .await
                    .map_err(|e| e.into_provider("update", address))?;
            }
        }
        let reading = self.client.vm_reading(&node, vmid).await.map_err(fail)?;
        let attributes = attributes_from_reading(vmid, &node, &reading, RUNNING, planned);
        if node != spec.node {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                "update",
                address,
                format!(
                    "VM {vmid} runs on `{node}`, not `{}` (moved by HA or a migration); InfraFlux does not move VMs — the other changes were applied\n  help: set `node: {node}` in the configuration, or migrate it back (`qm migrate {vmid} {}`)",
                    spec.node, spec.node
                ),
            ));
        }
        Ok(attributes)
    }

    pub(super) async fn delete_vm(
        &self,
        address: &str,
        id: &str,
        prior: &Attributes,
    ) -> Result<(), ProviderError> {
        let vmid = vmid_of(id, "delete", address)?;
        let fail = |e: ApiError| e.into_provider("delete", address);
        let mut node = text(prior, "node").unwrap_or_default().to_string();
        let status = match self.client.vm_status(&node, vmid).await {
            Ok(status) => status,
            Err(e) if e.is_not_found() || node.is_empty() => {
                match self.locate(vmid).await.map_err(fail)? {
                    // Moved since the last refresh.
                    Some(resource) => {
                        node = resource.node.unwrap_or_default();
                        self.client.vm_status(&node, vmid).await.map_err(fail)?
                    }
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(fail(e)),
        };
        if status.status == "running" {
            let upid = self.client.stop_vm(&node, vmid).await.map_err(fail)?;
            task::wait(&self.client, &upid, self.wait(self.options.task_timeout))
                .await
                .map_err(|e| e.into_provider("delete", address))?;
        }
        // Destroying frees the disks under the storage lock (`vdisk_free`).
        let storage = text(prior, "storage").unwrap_or_default();
        let _slot = self.storage_slots.acquire(&node, storage).await;
        match self.client.delete_vm(&node, vmid).await {
            Ok(upid) => task::wait(&self.client, &upid, self.wait(self.options.task_timeout))
                .await
                .map(|_| ())
                .map_err(|e| e.into_provider("delete", address)),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    /// From one cluster listing (made by the caller, shared with images) for every VM:
    /// a config read only where the listing differs from prior (or `deep`), and one to
    /// confirm a VM missing from the listing.
    pub(super) async fn read_vms(
        &self,
        items: &[&ReadItem],
        listing: Result<Vec<ClusterResource>, ApiError>,
        deep: bool,
    ) -> Vec<ReadResult> {
        let inventory = match listing {
            Ok(inventory) => inventory,
            Err(e) => {
                return items
                    .iter()
                    .map(|item| ReadResult {
                        address: item.resource.address.clone(),
                        outcome: ReadOutcome::Failed(
                            e.clone().into_provider("read", &item.resource.address),
                        ),
                    })
                    .collect();
            }
        };
        let mut results = Vec::new();
        let mut to_read: Vec<(&ReadItem, u32, String, Listed)> = Vec::new();
        let mut to_adopt: Vec<(&ReadItem, u32, String, Option<String>)> = Vec::new();
        for item in items {
            let address = &item.resource.address;
            // A create interrupted before its VMID was recorded: look for the VM by name
            // (in the VMID range); whether it is ours is decided by its marker below.
            if item.id.is_empty() {
                match interrupted_create(&inventory, &item.prior) {
                    Some((vmid, node, power)) => to_adopt.push((item, vmid, node, power)),
                    None => results.push(ReadResult {
                        address: address.clone(),
                        outcome: ReadOutcome::Gone,
                    }),
                }
                continue;
            }
            let vmid = match vmid_of(&item.id, "read", address) {
                Ok(vmid) => vmid,
                Err(e) => {
                    results.push(ReadResult {
                        address: address.clone(),
                        outcome: ReadOutcome::Failed(e),
                    });
                    continue;
                }
            };
            match inventory
                .iter()
                .find(|r| r.vmid == Some(vmid) && r.kind == "qemu")
            {
                Some(resource) if !deep && inventory_matches(&item.prior, resource) => results
                    .push(ReadResult {
                        address: address.clone(),
                        outcome: ReadOutcome::Found(item.prior.clone()),
                    }),
                Some(resource) => to_read.push((
                    item,
                    vmid,
                    resource.node.clone().unwrap_or_default(),
                    Listed::With(resource.status.clone()),
                )),
                None => match text(&item.prior, "node") {
                    Some(node) => to_read.push((item, vmid, node.to_string(), Listed::Missing)),
                    None => results.push(ReadResult {
                        address: address.clone(),
                        outcome: ReadOutcome::Gone,
                    }),
                },
            }
        }
        let reads: Vec<_> = to_read
            .into_iter()
            .map(|(item, vmid, node, listed)| self.read_vm_config(item, vmid, node, listed))
            .collect();
        let reads = futures_util::stream::iter(reads)
            .buffer_unordered(self.options.read_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        results.extend(reads);
        for (item, vmid, node, power) in to_adopt {
            results.push(self.adopt(item, vmid, &node, power).await);
        }
        results
    }

    /// The power state to record for a VM read in full: the listing's when it agrees
    /// with state (or state has none to compare); otherwise (a change, or not listed) the
    /// node's own answer, since the listing is pvestatd's last report (about every 10 s)
    /// and a change seen there first is confirmed before it is reported.
    async fn power_state(
        &self,
        item: &ReadItem,
        vmid: u32,
        node: &str,
        listed: Option<String>,
    ) -> Result<String, ApiError> {
        let recorded = text(&item.prior, "power");
        match listed {
            Some(status) if recorded.is_none_or(|power| power == status) => Ok(status),
            _ => Ok(self.client.vm_status(node, vmid).await?.status),
        }
    }

    /// The VM an interrupted create left, if its description carries this resource's
    /// marker: `Found` with its `id`; a VM of the same name made by someone else is not
    /// ours (`Gone`: the create that follows reports the conflict).
    async fn adopt(
        &self,
        item: &ReadItem,
        vmid: u32,
        node: &str,
        listed_power: Option<String>,
    ) -> ReadResult {
        let address = item.resource.address.clone();
        let outcome = match self.client.vm_reading(node, vmid).await {
            Ok(reading)
                if reading
                    .config
                    .get("description")
                    .is_some_and(|d| d.contains(&marker(&address))) =>
            {
                // A create that failed or was killed before its start left it stopped:
                // recorded as it is, so the plan starts it.
                match self.power_state(item, vmid, node, listed_power).await {
                    Ok(power) => {
                        let mut attributes =
                            attributes_from_reading(vmid, node, &reading, &power, &item.prior);
                        attributes.insert("id".into(), json!(vmid.to_string()));
                        ReadOutcome::Found(attributes)
                    }
                    Err(e) => ReadOutcome::Failed(e.into_provider("read", &address)),
                }
            }
            Ok(_) => ReadOutcome::Gone,
            Err(e) if e.is_not_found() => ReadOutcome::Gone,
            Err(e) => ReadOutcome::Failed(e.into_provider("read", &address)),
        };
        ReadResult { address, outcome }
    }

    async fn read_vm_config(
        &self,
        item: &ReadItem,
        vmid: u32,
        node: String,
        listed: Listed,
    ) -> ReadResult {
        let address = item.resource.address.clone();
        let reading = async {
            let reading = self.client.vm_reading(&node, vmid).await?;
            let power = match &listed {
                Listed::With(status) => status.clone(),
                Listed::Missing => None,
            };
            let power = self.power_state(item, vmid, &node, power).await?;
            Ok::<_, ApiError>((reading, power))
        };
        let outcome = match reading.await {
            Ok((reading, power)) => ReadOutcome::Found(attributes_from_reading(
                vmid,
                &node,
                &reading,
                &power,
                &item.prior,
            )),
            Err(e) if e.is_not_found() => ReadOutcome::Gone,
            Err(e) => {
                let mut error = e.into_provider("read", &address);
                if listed == Listed::Missing {
                    error.message.push_str(&format!(
                        "\n  VM {vmid} is missing from the cluster inventory and its node could not confirm it is gone"
                    ));
                }
                ReadOutcome::Failed(error)
            }
        };
        ReadResult { address, outcome }
    }

    pub(super) async fn import_vm(
        &self,
        address: &str,
        id: &str,
    ) -> Result<Attributes, ProviderError> {
        let vmid = vmid_of(id, "import", address)?;
        let fail = |e: ApiError| e.into_provider("import", address);
        let Some(resource) = self.locate(vmid).await.map_err(fail)? else {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                "import",
                address,
                format!("no VM {vmid} in the cluster"),
            ));
        };
        let node = resource.node.unwrap_or_default();
        let reading = self.client.vm_reading(&node, vmid).await.map_err(fail)?;
        let power = match resource.status {
            Some(status) => status,
            None => {
                self.client
                    .vm_status(&node, vmid)
                    .await
                    .map_err(fail)?
                    .status
            }
        };
        Ok(attributes_from_reading(
            vmid,
            &node,
            &reading,
            &power,
            &Attributes::new(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn desired() -> Attributes {
        json!({
            "node": "pve1", "name": "cp-1", "cores": 2, "memory_mib": 4096, "disk_gib": 40,
            "storage": "local-lvm", "bridge": "vmbr0", "vlan": 10, "ipv4": "10.0.0.10/24",
            "gateway": "10.0.0.1", "dns": ["10.0.0.1", "1.1.1.1"], "tags": ["prod", "infraflux"],
            "image": "local:import/talos-v1.13.9.raw", "guest_agent": true, "vmid_range": [1000, 1099],
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn create_parameters_are_what_pve_expects() {
        let (spec, problems) = VmSpec::read(&desired(), false);
        assert!(problems.0.is_empty(), "{problems:?}");
        let params = spec
            .unwrap()
            .create_params(1000, "Managed by InfraFlux (dev/w/proxmox_vm.cp-1)");
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("scsi0"),
            Some("local-lvm:0,discard=on,import-from=local:import/talos-v1.13.9.raw")
        );
        assert_eq!(
            get("efidisk0"),
            Some("local-lvm:1,efitype=4m,pre-enrolled-keys=0")
        );
        assert_eq!(get("scsihw"), Some("virtio-scsi-pci"));
        assert_eq!(get("net0"), Some("virtio,bridge=vmbr0,tag=10"));
        assert_eq!(get("ipconfig0"), Some("ip=10.0.0.10/24,gw=10.0.0.1"));
        assert_eq!(get("nameserver"), Some("10.0.0.1 1.1.1.1"));
        assert_eq!(get("tags"), Some("infraflux;prod"));
        assert_eq!(get("agent"), Some("1"));
        assert_eq!(get("balloon"), Some("0"));
        assert_eq!(get("ide2"), Some("local-lvm:cloudinit"));
        let mut without_agent = desired();
        without_agent.insert("guest_agent".into(), json!(false));
        let params = VmSpec::read(&without_agent, false)
            .0
            .unwrap()
            .create_params(1000, "x");
        assert!(params.iter().all(|(k, _)| k != "agent"));
    }

    #[test]
    fn invalid_inputs_are_all_reported() {
        let mut bad = desired();
        bad.insert("ipv4".into(), json!("10.0.0.10"));
        bad.insert("name".into(), json!("cp_1"));
        bad.insert("vmid_range".into(), json!([2000, 1000]));
        bad.insert("dns".into(), json!(["resolver"]));
        bad.insert("cores".into(), json!(0));
        let (spec, problems) = VmSpec::read(&bad, false);
        assert!(spec.is_none());
        let mut named: Vec<_> = problems
            .0
            .iter()
            .filter_map(|d| d.attribute.clone())
            .collect();
        named.sort();
        assert_eq!(named, ["cores", "dns", "ipv4", "name", "vmid_range"]);
    }

    fn config(pairs: &[(&str, &str)]) -> VmConfig {
        VmConfig {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            digest: None,
        }
    }

    #[test]
    fn attributes_read_back_from_config_match_the_desired_ones() {
        let config = config(&[
            ("name", "cp-1"),
            ("cores", "2"),
            ("memory", "4096"),
            ("scsi0", "local-lvm:vm-1000-disk-1,discard=on,size=40G"),
            ("net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=10"),
            ("ipconfig0", "ip=10.0.0.10/24,gw=10.0.0.1"),
            ("nameserver", "10.0.0.1 1.1.1.1"),
            ("tags", "infraflux;prod"),
            ("agent", "1"),
        ]);
        let reading = VmReading {
            config,
            pending: Default::default(),
        };
        let read = attributes_from_reading(1000, "pve1", &reading, RUNNING, &desired());
        let plan = plan(Some(&read), &desired());
        assert!(plan.requires_replace.is_empty());
        for (key, value) in &plan.planned {
            assert_eq!(read.get(key), Some(value), "{key}");
        }
        assert_eq!(read["mac"], json!("BC:24:11:AA:BB:CC"));
        assert_eq!(read["vmid"], json!(1000));
        assert_eq!(read["power"], json!("running"));
        assert_eq!(read["pending"], json!({}));

        // Stopped, with a memory change and a NIC removal waiting for a restart (and a
        // pending key InfraFlux does not set): each is a change the plan makes.
        let mut waiting = reading.clone();
        waiting.pending.insert("memory".into(), Some("8192".into()));
        waiting.pending.insert("net0".into(), None);
        waiting.pending.insert("cpu".into(), Some("host".into()));
        let drifted = attributes_from_reading(1000, "pve1", &waiting, "stopped", &desired());
        assert_eq!(drifted["pending"], json!({"memory": "8192", "net0": null}));
        assert_eq!(drifted["memory_mib"], json!(4096), "the value it runs with");
        let plan = super::plan(Some(&drifted), &desired());
        assert!(plan.requires_replace.is_empty());
        let mut changed: Vec<&String> = plan
            .planned
            .iter()
            .filter(|(key, value)| drifted.get(*key) != Some(value))
            .map(|(key, _)| key)
            .collect();
        changed.sort();
        assert_eq!(changed, ["pending", "power"]);
        assert_eq!(plan.planned["power"], json!("running"));
        assert_eq!(plan.planned["pending"], json!({}));
    }

    #[test]
    fn a_state_without_power_or_pending_plans_no_change_for_them() {
        let mut prior = desired();
        prior.insert("vmid".into(), json!(1000));
        prior.insert("mac".into(), json!("BC:24:11:AA:BB:CC"));
        prior.insert("tags".into(), json!(["infraflux", "prod"]));
        let response = plan(Some(&prior), &desired());
        assert_eq!(response.planned, prior);
        let created = plan(None, &desired());
        assert_eq!(created.planned["power"], json!("running"));
        assert_eq!(created.planned["pending"], json!({}));
    }

    #[test]
    fn shrinking_the_disk_or_moving_storage_replaces_but_a_node_change_does_not() {
        let mut prior = desired();
        prior.insert("vmid".into(), json!(1000));
        prior.insert("mac".into(), json!("BC:24:11:AA:BB:CC"));
        let mut smaller = desired();
        smaller.insert("disk_gib".into(), json!(20));
        let response = plan(Some(&prior), &smaller);
        assert_eq!(response.requires_replace, ["disk_gib"]);
        assert!(is_unknown(&response.planned["vmid"]));
        let mut moved = desired();
        moved.insert("node".into(), json!("pve2"));
        let response = plan(Some(&prior), &moved);
        assert!(response.requires_replace.is_empty());
        assert_eq!(response.planned["vmid"], json!(1000));
        let mut reimaged = desired();
        reimaged.insert("image".into(), json!("local:import/talos-v1.14.0.raw"));
        reimaged.insert("tags".into(), json!(["infraflux", "prod"]));
        let response = plan(Some(&prior), &reimaged);
        assert_eq!(response.planned["image"], prior["image"]);
        assert_eq!(response.planned["tags"], json!(["infraflux", "prod"]));
    }

    #[test]
    fn the_inventory_decides_whether_the_config_is_read() {
        let mut prior = desired();
        prior.insert("tags".into(), json!(["infraflux", "prod"]));
        prior.insert("power".into(), json!("running"));
        let resource = ClusterResource {
            id: "qemu/1000".into(),
            kind: "qemu".into(),
            node: Some("pve1".into()),
            vmid: Some(1000),
            name: Some("cp-1".into()),
            status: Some("running".into()),
            maxmem: Some(4096 * MIB),
            maxcpu: Some(2),
            maxdisk: Some(40 * GIB),
            tags: Some("infraflux;prod".into()),
            ..ClusterResource::default()
        };
        assert!(inventory_matches(&prior, &resource));
        // Stopped by hand, or a boot disk grown outside InfraFlux: read in full.
        let stopped = ClusterResource {
            status: Some("stopped".into()),
            ..resource.clone()
        };
        assert!(!inventory_matches(&prior, &stopped));
        let resized = ClusterResource {
            maxdisk: Some(50 * GIB),
            ..resource.clone()
        };
        assert!(!inventory_matches(&prior, &resized));
        // No boot disk size in the listing says nothing about the disk.
        let no_size = ClusterResource {
            maxdisk: Some(0),
            ..resource.clone()
        };
        assert!(inventory_matches(&prior, &no_size));
        // A state recorded before the power state was: read once to fill it in.
        let mut old = prior.clone();
        old.remove("power");
        assert!(!inventory_matches(&old, &resource));
        let migrated = ClusterResource {
            node: Some("pve2".into()),
            ..resource.clone()
        };
        assert!(!inventory_matches(&prior, &migrated));
        let grown = ClusterResource {
            maxmem: Some(8192 * MIB),
            ..resource
        };
        assert!(!inventory_matches(&prior, &grown));
    }
}
