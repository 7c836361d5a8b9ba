//! The simulated cluster: nodes, storages, volumes, VMs and tasks, in memory. The
//! handlers in [`super::api`] read and change it under one lock; nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::property::{GIB, MIB, PropertyString, format_size};

/// What the simulated cluster has.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Node names, e.g. `pve1`, `pve2`, `pve3`.
    pub nodes: Vec<String>,
    /// Where VM disks go: LVM-thin storages (`images,rootdir`) on every node.
    pub disk_storages: Vec<String>,
    /// Where images are downloaded: directory storages on every node that allow
    /// `import` content (a fresh PVE's `local` does not; the lab's does).
    pub image_storages: Vec<String>,
    /// Memory and CPUs of each node.
    pub node_memory: u64,
    pub node_cpus: u64,
    /// The size of a downloaded disk image (nothing is downloaded: see `download_url`).
    pub image_size: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: vec!["pve1".into(), "pve2".into(), "pve3".into()],
            disk_storages: vec!["local-lvm".into()],
            image_storages: vec!["local".into()],
            // Enough for the bundled configuration: every environment, prod included
            // (placement checks free memory at plan time).
            node_memory: 256 * GIB,
            node_cpus: 32,
            image_size: GIB,
        }
    }
}

/// An error as PVE answers it: a status, a message and, for 400s, messages per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PveError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl PveError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        PveError {
            status,
            message: message.into(),
            errors: None,
        }
    }

    /// `400 Parameter verification failed.` with one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        PveError {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(BTreeMap::from([(name.to_string(), message.into())])),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub node: String,
    pub storage: String,
    /// `local:import/talos.raw`, `local-lvm:vm-1000-disk-1`.
    pub volid: String,
    pub content: String,
    pub format: String,
    pub size: u64,
    pub vmid: Option<u32>,
    pub ctime: u64,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub vmid: u32,
    pub node: String,
    pub config: BTreeMap<String, String>,
    /// Values that wait for the next start (not hot-pluggable on a running VM).
    pub pending: BTreeMap<String, String>,
    pub pending_delete: BTreeSet<String>,
    pub running: bool,
    pub lock: Option<String>,
    pub started_at: u64,
}

impl Vm {
    pub fn memory_bytes(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|m| {
                let m = PropertyString::parse(m);
                m.get("current")
                    .or(m.head.as_deref())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(512)
            * MIB
    }

    pub fn cpus(&self) -> u64 {
        let get = |key: &str| {
            self.config
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
        };
        get("cores") * get("sockets")
    }

    /// The size of the boot disk (the first disk with a `size=`), in bytes.
    pub fn disk_bytes(&self) -> u64 {
        ["scsi0", "virtio0", "sata0", "ide0"]
            .iter()
            .filter_map(|key| self.config.get(*key))
            .filter_map(|drive| PropertyString::parse(drive).get("size").map(str::to_string))
            .find_map(|size| super::property::parse_size(&size))
            .unwrap_or(0)
    }

    /// The address of `ipconfig0`'s `ip=` (cloud-init), without its prefix length.
    pub fn ipv4(&self) -> Option<IpAddr> {
        let config = PropertyString::parse(self.config.get("ipconfig0")?);
        config.get("ip")?.split('/').next()?.parse().ok()
    }

    /// PVE's digest of the config: a hash of its text (PVE uses SHA-1; any stable hash
    /// serves a client, which only sends it back).
    pub fn digest(&self) -> String {
        let text: String = self
            .config
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        hex::encode(Sha256::digest(text.as_bytes()))[..40].to_string()
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u64,
    /// `None` while running; then `OK` or the error.
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

impl Task {
    pub fn status_json(&self) -> Value {
        let mut status = json!({
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.kind, "id": self.id, "user": self.user,
            "status": if self.exitstatus.is_some() { "stopped" } else { "running" },
        });
        if let Some((_, token)) = self.user.split_once('!') {
            status["tokenid"] = json!(token);
        }
        if let Some(exit) = &self.exitstatus {
            status["exitstatus"] = json!(exit);
        }
        status
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The whole simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    pub options: ClusterOptions,
    pub vms: BTreeMap<u32, Vm>,
    pub volumes: Vec<Volume>,
    pub tasks: HashMap<String, Task>,
    next_pid: u32,
    macs: u32,
    booted: u64,
}

impl Cluster {
    pub fn new(options: ClusterOptions) -> Self {
        Cluster {
            options,
            vms: BTreeMap::new(),
            volumes: Vec::new(),
            tasks: HashMap::new(),
            next_pid: 0x1000,
            macs: 0,
            booted: now(),
        }
    }

    pub fn has_node(&self, node: &str) -> bool {
        self.options.nodes.iter().any(|n| n == node)
    }

    /// PVE's answer for a node that is not in the cluster.
    pub fn check_node(&self, node: &str) -> Result<(), PveError> {
        if self.has_node(node) {
            Ok(())
        } else {
            Err(PveError::new(
                500,
                format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
                ),
            ))
        }
    }

    /// `(type, content)` of a storage.
    pub fn storage(&self, name: &str) -> Option<(&'static str, &'static str)> {
        if self.options.image_storages.iter().any(|s| s == name) {
            Some(("dir", "backup,import,iso,vztmpl"))
        } else if self.options.disk_storages.iter().any(|s| s == name) {
            Some(("lvmthin", "images,rootdir"))
        } else {
            None
        }
    }

    pub fn check_storage(
        &self,
        node: &str,
        storage: &str,
    ) -> Result<(&'static str, &'static str), PveError> {
        self.check_node(node)?;
        self.storage(storage)
            .ok_or_else(|| PveError::new(500, format!("storage '{storage}' does not exist")))
    }

    pub fn storage_used(&self, node: &str, storage: &str) -> u64 {
        self.volumes
            .iter()
            .filter(|v| v.node == node && v.storage == storage)
            .map(|v| v.size)
            .sum()
    }

    pub const STORAGE_TOTAL: u64 = 2048 * GIB;

    /// The VM `vmid` on `node`, or PVE's "does not exist" (also when it runs elsewhere).
    pub fn vm(&self, node: &str, vmid: u32) -> Result<&Vm, PveError> {
        self.check_node(node)?;
        self.vms
            .get(&vmid)
            .filter(|vm| vm.node == node)
            .ok_or_else(|| missing_vm(node, vmid))
    }

    pub fn vm_mut(&mut self, node: &str, vmid: u32) -> Result<&mut Vm, PveError> {
        self.check_node(node)?;
        self.vms
            .get_mut(&vmid)
            .filter(|vm| vm.node == node)
            .ok_or_else(|| missing_vm(node, vmid))
    }

    /// A task as PVE numbers it: the UPID encodes node, pid, start time, type, ID, user.
    pub fn new_task(&mut self, node: &str, kind: &str, id: &str, user: &str) -> String {
        self.next_pid += 1;
        let pid = self.next_pid;
        let pstart = (now() - self.booted) as u32 * 100 + pid;
        let starttime = now();
        let upid =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:");
        self.tasks.insert(
            upid.clone(),
            Task {
                upid: upid.clone(),
                node: node.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
                user: user.to_string(),
                pid,
                pstart,
                starttime,
                exitstatus: None,
                log: Vec::new(),
            },
        );
        upid
    }

    /// A MAC address from PVE's default prefix (`BC:24:11`), unique in the cluster.
    pub fn new_mac(&mut self) -> String {
        self.macs += 1;
        let n = self.macs;
        format!(
            "BC:24:11:{:02X}:{:02X}:{:02X}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    /// Memory in use on a node: the host's own, plus every running VM's.
    pub fn node_memory_used(&self, node: &str) -> u64 {
        2 * GIB
            + self
                .vms
                .values()
                .filter(|vm| vm.node == node && vm.running)
                .map(Vm::memory_bytes)
                .sum::<u64>()
    }

    pub fn node_json(&self, node: &str) -> Value {
        json!({
            "id": format!("node/{node}"), "type": "node", "node": node, "status": "online",
            "level": "", "cpu": 0.02, "maxcpu": self.options.node_cpus,
            "mem": self.node_memory_used(node), "maxmem": self.options.node_memory,
            "disk": 4 * GIB, "maxdisk": 64 * GIB, "uptime": now() - self.booted,
        })
    }

    pub fn vm_resource_json(&self, vm: &Vm) -> Value {
        let mut item = json!({
            "id": format!("qemu/{}", vm.vmid), "type": "qemu", "node": vm.node,
            "vmid": vm.vmid, "name": vm.config.get("name").cloned().unwrap_or_default(),
            "status": if vm.running { "running" } else { "stopped" }, "template": 0,
            "maxmem": vm.memory_bytes(), "maxcpu": vm.cpus(), "maxdisk": vm.disk_bytes(),
            "mem": if vm.running { 64 * MIB } else { 0 }, "cpu": 0, "disk": 0,
            "uptime": if vm.running { now() - vm.started_at } else { 0 },
            "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        });
        if let Some(tags) = vm.config.get("tags") {
            item["tags"] = json!(tags);
        }
        if let Some(lock) = &vm.lock {
            item["lock"] = json!(lock);
        }
        item
    }

    /// Every storage name, image storages first.
    pub fn storages(&self) -> Vec<String> {
        let mut names = self.options.image_storages.clone();
        names.extend(self.options.disk_storages.iter().cloned());
        names
    }

    pub fn storage_resource_json(&self, node: &str, storage: &str) -> Value {
        let (kind, content) = self.storage(storage).unwrap_or(("dir", ""));
        json!({
            "id": format!("storage/{node}/{storage}"), "type": "storage", "node": node,
            "storage": storage, "status": "available", "content": content,
            "plugintype": kind, "shared": 0,
            "disk": self.storage_used(node, storage), "maxdisk": Self::STORAGE_TOTAL,
        })
    }

    /// Allocate a VM disk on `storage`: `vm-<vmid>-disk-<n>` with the next free `n`.
    pub fn allocate_disk(&mut self, node: &str, storage: &str, vmid: u32, size: u64) -> String {
        let prefix = format!("{storage}:vm-{vmid}-disk-");
        let n = (0..)
            .find(|n| {
                !self
                    .volumes
                    .iter()
                    .any(|v| v.node == node && v.volid == format!("{prefix}{n}"))
            })
            .unwrap_or(0);
        let volid = format!("{prefix}{n}");
        self.add_volume(node, storage, &volid, "images", "raw", size, Some(vmid));
        volid
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_volume(
        &mut self,
        node: &str,
        storage: &str,
        volid: &str,
        content: &str,
        format: &str,
        size: u64,
        vmid: Option<u32>,
    ) {
        self.volumes.push(Volume {
            node: node.to_string(),
            storage: storage.to_string(),
            volid: volid.to_string(),
            content: content.to_string(),
            format: format.to_string(),
            size,
            vmid,
            ctime: now(),
        });
    }

    pub fn volume(&self, node: &str, volid: &str) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.node == node && v.volid == volid)
    }

    pub fn set_volume_size(&mut self, node: &str, volid: &str, size: u64) {
        if let Some(volume) = self
            .volumes
            .iter_mut()
            .find(|v| v.node == node && v.volid == volid)
        {
            volume.size = size;
        }
    }
}

pub fn missing_vm(node: &str, vmid: u32) -> PveError {
    PveError::new(
        500,
        format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"),
    )
}

/// A drive's new string after allocation: the volume instead of `storage:size`, the
/// options kept, `size=` set.
pub fn allocated_drive(drive: &PropertyString, volid: &str, size: u64) -> String {
    let mut allocated = drive.clone();
    allocated.head = Some(volid.to_string());
    allocated.remove("import-from");
    allocated.remove("size");
    allocated.set("size", format_size(size));
    allocated.to_string()
}
