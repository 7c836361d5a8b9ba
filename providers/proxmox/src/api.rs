//! Typed PVE endpoints: the ones a provisioner needs, with their parameters as PVE's
//! schema names them (see `shared/schemas/pve-api-subset.json`). Each method is one
//! call; writes that PVE runs as tasks return the task's [`Upid`] to wait for with
//! [`crate::task::wait`].

use std::collections::BTreeMap;

use infraflux_provider::ErrorKind;
use reqwest::Method;
use serde_json::Value;

use crate::client::{Call, Client};
use crate::error::ApiError;
use crate::task::Upid;

/// Numbers PVE sends as numbers or as strings, depending on the endpoint and version.
pub(crate) fn lenient_u64(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s
            .parse::<u64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().map(|f| f as u64)),
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    }
}

fn string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn array(data: Value) -> Vec<Value> {
    match data {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    pub release: String,
}

/// Which entries `/cluster/resources` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Vm,
    Storage,
    Node,
}

impl ResourceType {
    fn as_str(self) -> &'static str {
        match self {
            ResourceType::Vm => "vm",
            ResourceType::Storage => "storage",
            ResourceType::Node => "node",
        }
    }
}

/// One entry of `/cluster/resources` (fields as the type has them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterResource {
    /// `qemu/100`, `node/pve1`, `storage/pve1/local`.
    pub id: String,
    /// `qemu`, `lxc`, `node`, `storage`, …
    pub kind: String,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub maxmem: Option<u64>,
    /// Memory in use (a node's: by everything on it).
    pub mem: Option<u64>,
    pub maxcpu: Option<u64>,
    pub maxdisk: Option<u64>,
    /// Bytes in use: a storage's (as pvestatd last reported it), a VM's disk usage.
    pub disk: Option<u64>,
    pub tags: Option<String>,
    pub lock: Option<String>,
    pub template: bool,
    pub storage: Option<String>,
    pub content: Option<String>,
}

impl ClusterResource {
    fn from_json(item: &Value) -> Self {
        ClusterResource {
            id: string(item.get("id")).unwrap_or_default(),
            kind: string(item.get("type")).unwrap_or_default(),
            node: string(item.get("node")),
            vmid: lenient_u64(item.get("vmid")).and_then(|v| u32::try_from(v).ok()),
            name: string(item.get("name")),
            status: string(item.get("status")),
            maxmem: lenient_u64(item.get("maxmem")),
            mem: lenient_u64(item.get("mem")),
            maxcpu: lenient_u64(item.get("maxcpu")),
            maxdisk: lenient_u64(item.get("maxdisk")),
            disk: lenient_u64(item.get("disk")),
            tags: string(item.get("tags")).filter(|t| !t.is_empty()),
            lock: string(item.get("lock")).filter(|l| !l.is_empty()),
            template: lenient_u64(item.get("template")) == Some(1),
            storage: string(item.get("storage")),
            content: string(item.get("content")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStatus {
    /// Allowed content types, e.g. `iso,vztmpl,backup,import`.
    pub content: Vec<String>,
    pub kind: Option<String>,
    pub active: bool,
    pub enabled: bool,
    pub avail: Option<u64>,
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageVolume {
    /// `local:import/talos.raw`.
    pub volid: String,
    pub content: String,
    pub format: Option<String>,
    pub size: Option<u64>,
    pub vmid: Option<u32>,
}

/// A VM's configuration: keys to values as strings, and PVE's digest of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmConfig {
    pub values: BTreeMap<String, String>,
    pub digest: Option<String>,
}

impl VmConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// One key of `GET …/pending`: a value to apply at the next start, or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingValue {
    pub key: String,
    pub value: Option<String>,
    pub pending: Option<String>,
    pub delete: bool,
}

impl PendingValue {
    /// Whether the key waits for a restart: a deletion, or a pending value other than
    /// the current one (PVE drops a pending value equal to the current one, but not every
    /// PVE-like API does).
    pub fn is_change(&self) -> bool {
        self.delete || (self.pending.is_some() && self.pending != self.value)
    }
}

/// A VM's configuration as it runs now, and what waits for its next start: one
/// `GET …/pending` answers both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmReading {
    /// The current values (what the VM runs with).
    pub config: VmConfig,
    /// Keys whose value changes at the next start: the new value, or `None` for a
    /// deletion.
    pub pending: BTreeMap<String, Option<String>>,
}

impl VmReading {
    pub fn from_pending(items: &[PendingValue]) -> Self {
        let mut reading = VmReading::default();
        for item in items {
            if item.key == "digest" {
                reading.config.digest = item.value.clone();
                continue;
            }
            if let Some(value) = &item.value {
                reading
                    .config
                    .values
                    .insert(item.key.clone(), value.clone());
            }
            if item.is_change() {
                let next = if item.delete {
                    None
                } else {
                    item.pending.clone()
                };
                reading.pending.insert(item.key.clone(), next);
            }
        }
        reading
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    /// `running` or `stopped`.
    pub status: String,
    pub qmpstatus: Option<String>,
    pub lock: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// Set once stopped: `OK`, `WARNINGS: 2`, or the error.
    pub exitstatus: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLog {
    /// `(line number, text)`.
    pub lines: Vec<(u64, String)>,
}

/// `download-url` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    pub filename: String,
    /// `iso`, `vztmpl` or `import`.
    pub content: String,
    /// `(algorithm, hex digest)`, e.g. `("sha256", "…")`.
    pub checksum: Option<(String, String)>,
}

fn upid(call: &Call, data: Value) -> Result<Upid, ApiError> {
    let text = data.as_str().unwrap_or_default();
    Upid::parse(text).ok_or_else(|| {
        ApiError::other(
            ErrorKind::Other,
            call.method.as_str(),
            &call.path,
            format!("expected a task ID (UPID) in the answer, got `{data}`"),
        )
    })
}

impl Client {
    async fn call_upid(&self, call: Call) -> Result<Upid, ApiError> {
        let data = self.call(call.clone()).await?;
        upid(&call, data)
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, ApiError> {
        let data = self.call(Call::get(&["version"])).await?;
        Ok(Version {
            version: string(data.get("version")).unwrap_or_default(),
            release: string(data.get("release")).unwrap_or_default(),
        })
    }

    /// `GET /cluster/resources?type=…`: one call for the whole cluster.
    pub async fn cluster_resources(
        &self,
        kind: ResourceType,
    ) -> Result<Vec<ClusterResource>, ApiError> {
        let data = self
            .call(Call::get(&["cluster", "resources"]).query("type", kind.as_str()))
            .await?;
        Ok(array(data).iter().map(ClusterResource::from_json).collect())
    }

    /// `GET /cluster/resources` with no type: VMs, nodes and storages in one call (what
    /// placement needs: each node's memory and each storage's content types).
    pub async fn cluster_resources_all(&self) -> Result<Vec<ClusterResource>, ApiError> {
        let data = self.call(Call::get(&["cluster", "resources"])).await?;
        Ok(array(data).iter().map(ClusterResource::from_json).collect())
    }

    /// `GET /storage/{storage}`: the storage's directory (`path`), for file-based ones.
    pub async fn storage_path(&self, storage: &str) -> Result<Option<String>, ApiError> {
        let data = self.call(Call::get(&["storage", storage])).await?;
        Ok(string(data.get("path")))
    }

    /// `GET /cluster/nextid` (with `vmid`: is this one free? a 400 if not).
    pub async fn next_id(&self, vmid: Option<u32>) -> Result<u32, ApiError> {
        let mut call = Call::get(&["cluster", "nextid"]);
        if let Some(vmid) = vmid {
            call = call.query("vmid", vmid);
        }
        let data = self.call(call.clone()).await?;
        lenient_u64(Some(&data))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                ApiError::other(ErrorKind::Other, "GET", &call.path, "no VMID in the answer")
            })
    }

    /// `GET /nodes/{node}/status`, as JSON (uptime, cpu, memory, versions …).
    pub async fn node_status(&self, node: &str) -> Result<Value, ApiError> {
        self.call(Call::get(&["nodes", node, "status"])).await
    }

    /// `GET /nodes/{node}/storage/{storage}/status`.
    pub async fn storage_status(
        &self,
        node: &str,
        storage: &str,
    ) -> Result<StorageStatus, ApiError> {
        let data = self
            .call(Call::get(&["nodes", node, "storage", storage, "status"]))
            .await?;
        Ok(StorageStatus {
            content: string(data.get("content"))
                .unwrap_or_default()
                .split([',', ';', ' '])
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            kind: string(data.get("type")),
            active: lenient_u64(data.get("active")).unwrap_or(1) == 1,
            enabled: lenient_u64(data.get("enabled")).unwrap_or(1) == 1,
            avail: lenient_u64(data.get("avail")),
            total: lenient_u64(data.get("total")),
        })
    }

    /// `GET /nodes/{node}/storage/{storage}/content[?content=…]`.
    pub async fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
    ) -> Result<Vec<StorageVolume>, ApiError> {
        let mut call = Call::get(&["nodes", node, "storage", storage, "content"]);
        if let Some(content) = content {
            call = call.query("content", content);
        }
        let data = self.call(call).await?;
        Ok(array(data)
            .iter()
            .map(|item| StorageVolume {
                volid: string(item.get("volid")).unwrap_or_default(),
                content: string(item.get("content")).unwrap_or_default(),
                format: string(item.get("format")),
                size: lenient_u64(item.get("size")),
                vmid: lenient_u64(item.get("vmid")).and_then(|v| u32::try_from(v).ok()),
            })
            .collect())
    }

    /// `POST /nodes/{node}/storage/{storage}/download-url`: a task.
    pub async fn download_url(
        &self,
        node: &str,
        storage: &str,
        download: &Download,
    ) -> Result<Upid, ApiError> {
        let mut call = Call::new(
            Method::POST,
            &["nodes", node, "storage", storage, "download-url"],
        )
        .form("content", &download.content)
        .form("filename", &download.filename)
        .form("url", &download.url);
        if let Some((algorithm, digest)) = &download.checksum {
            call = call
                .form("checksum", digest)
                .form("checksum-algorithm", algorithm);
        }
        self.call_upid(call).await
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`: a task on PVE 7+,
    /// `None` when PVE answered without one.
    pub async fn delete_volume(
        &self,
        node: &str,
        storage: &str,
        volume: &str,
    ) -> Result<Option<Upid>, ApiError> {
        let data = self
            .call(Call::new(
                Method::DELETE,
                &["nodes", node, "storage", storage, "content", volume],
            ))
            .await?;
        Ok(data.as_str().and_then(Upid::parse))
    }

    /// `POST /nodes/{node}/qemu`: create a VM (a task). `params` are config keys and
    /// create options, `vmid` included.
    pub async fn create_vm(
        &self,
        node: &str,
        params: &[(String, String)],
    ) -> Result<Upid, ApiError> {
        let mut call = Call::new(Method::POST, &["nodes", node, "qemu"]);
        call.form = params.to_vec();
        self.call_upid(call).await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/config?current=1`: the current config (without
    /// `current`, PVE answers with the pending changes applied).
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig, ApiError> {
        let data = self
            .call(
                Call::get(&["nodes", node, "qemu", &vmid.to_string(), "config"])
                    .query("current", 1),
            )
            .await?;
        let mut config = VmConfig::default();
        if let Value::Object(map) = data {
            for (key, value) in map {
                let Some(text) = string(Some(&value)) else {
                    continue;
                };
                if key == "digest" {
                    config.digest = Some(text);
                } else {
                    config.values.insert(key, text);
                }
            }
        }
        Ok(config)
    }

    fn config_call(
        method: Method,
        node: &str,
        vmid: u32,
        set: &[(String, String)],
        delete: &[String],
    ) -> Call {
        let mut call = Call::new(
            method,
            &["nodes", node, "qemu", &vmid.to_string(), "config"],
        )
        .idempotent();
        call.form = set.to_vec();
        if !delete.is_empty() {
            call = call.form("delete", delete.join(","));
        }
        call
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config`: set (and delete) keys synchronously.
    pub async fn set_vm_config(
        &self,
        node: &str,
        vmid: u32,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), ApiError> {
        self.call(Self::config_call(Method::PUT, node, vmid, set, delete))
            .await
            .map(|_| ())
    }

    /// `POST /nodes/{node}/qemu/{vmid}/config`: the same as a task (for changes that
    /// allocate disks).
    pub async fn set_vm_config_async(
        &self,
        node: &str,
        vmid: u32,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<Upid, ApiError> {
        self.call_upid(Self::config_call(Method::POST, node, vmid, set, delete))
            .await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/pending`: the config with changes that wait for
    /// the next start.
    pub async fn vm_pending(&self, node: &str, vmid: u32) -> Result<Vec<PendingValue>, ApiError> {
        let data = self
            .call(Call::get(&[
                "nodes",
                node,
                "qemu",
                &vmid.to_string(),
                "pending",
            ]))
            .await?;
        Ok(array(data)
            .iter()
            .map(|item| PendingValue {
                key: string(item.get("key")).unwrap_or_default(),
                value: string(item.get("value")),
                pending: string(item.get("pending")),
                delete: lenient_u64(item.get("delete")).unwrap_or(0) > 0,
            })
            .collect())
    }

    /// [`Client::vm_pending`] as the current config and its pending changes.
    pub async fn vm_reading(&self, node: &str, vmid: u32) -> Result<VmReading, ApiError> {
        Ok(VmReading::from_pending(&self.vm_pending(node, vmid).await?))
    }

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, ApiError> {
        let data = self
            .call(Call::get(&[
                "nodes",
                node,
                "qemu",
                &vmid.to_string(),
                "status",
                "current",
            ]))
            .await?;
        Ok(VmStatus {
            status: string(data.get("status")).unwrap_or_default(),
            qmpstatus: string(data.get("qmpstatus")),
            lock: string(data.get("lock")).filter(|l| !l.is_empty()),
            name: string(data.get("name")),
        })
    }

    fn power_call(node: &str, vmid: u32, action: &str) -> Call {
        // Power actions are idempotent in effect: a second start fails "already
        // running", which callers treat as done.
        Call::new(
            Method::POST,
            &["nodes", node, "qemu", &vmid.to_string(), "status", action],
        )
        .idempotent()
    }

    /// `POST …/status/start`.
    pub async fn start_vm(&self, node: &str, vmid: u32) -> Result<Upid, ApiError> {
        self.call_upid(Self::power_call(node, vmid, "start")).await
    }

    /// `POST …/status/shutdown` (ACPI), with PVE's `timeout` and `forceStop`.
    pub async fn shutdown_vm(
        &self,
        node: &str,
        vmid: u32,
        timeout_seconds: Option<u64>,
        force_stop: bool,
    ) -> Result<Upid, ApiError> {
        let mut call = Self::power_call(node, vmid, "shutdown");
        if let Some(timeout) = timeout_seconds {
            call = call.form("timeout", timeout);
        }
        if force_stop {
            call = call.form("forceStop", 1);
        }
        self.call_upid(call).await
    }

    /// `POST …/status/stop` (power off).
    pub async fn stop_vm(&self, node: &str, vmid: u32) -> Result<Upid, ApiError> {
        self.call_upid(Self::power_call(node, vmid, "stop")).await
    }

    /// `POST …/status/reboot` (applies pending changes).
    pub async fn reboot_vm(&self, node: &str, vmid: u32) -> Result<Upid, ApiError> {
        self.call_upid(Self::power_call(node, vmid, "reboot")).await
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1`.
    pub async fn delete_vm(&self, node: &str, vmid: u32) -> Result<Upid, ApiError> {
        let call = Call::new(Method::DELETE, &["nodes", node, "qemu", &vmid.to_string()])
            .query("purge", 1)
            .query("destroy-unreferenced-disks", 1);
        self.call_upid(call).await
    }

    /// `PUT …/resize`: grow `disk` to `size` (absolute, e.g. `40G`). A task on PVE 8+;
    /// `None` when PVE answered without one.
    pub async fn resize_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<Option<Upid>, ApiError> {
        let call = Call::new(
            Method::PUT,
            &["nodes", node, "qemu", &vmid.to_string(), "resize"],
        )
        .form("disk", disk)
        .form("size", size);
        let data = self.call(call).await?;
        Ok(data.as_str().and_then(Upid::parse))
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ApiError> {
        let data = self
            .call(Call::get(&[
                "nodes",
                &upid.node,
                "tasks",
                upid.as_str(),
                "status",
            ]))
            .await?;
        Ok(TaskStatus {
            status: string(data.get("status")).unwrap_or_default(),
            exitstatus: string(data.get("exitstatus")),
        })
    }

    /// `GET /nodes/{node}/tasks/{upid}/log?start=…&limit=…`.
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<TaskLog, ApiError> {
        let call = Call::get(&["nodes", &upid.node, "tasks", upid.as_str(), "log"])
            .query("start", start)
            .query("limit", limit);
        let data = self.call(call).await?;
        let lines = array(data)
            .iter()
            .map(|line| {
                (
                    lenient_u64(line.get("n")).unwrap_or(0),
                    string(line.get("t")).unwrap_or_default(),
                )
            })
            .collect();
        Ok(TaskLog { lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value: Option<&str>, pending: Option<&str>, delete: bool) -> PendingValue {
        PendingValue {
            key: key.into(),
            value: value.map(str::to_string),
            pending: pending.map(str::to_string),
            delete,
        }
    }

    #[test]
    fn a_pending_read_is_the_current_config_and_what_waits_for_a_restart() {
        let reading = VmReading::from_pending(&[
            item("digest", Some("abc"), None, false),
            item("memory", Some("4096"), Some("8192"), false),
            item("cores", Some("2"), Some("2"), false),
            item("net1", None, Some("virtio,bridge=vmbr1"), false),
            item("tags", Some("a;b"), None, true),
            item("name", Some("cp-1"), None, false),
        ]);
        assert_eq!(reading.config.digest.as_deref(), Some("abc"));
        assert_eq!(reading.config.get("memory"), Some("4096"));
        assert_eq!(reading.config.get("net1"), None);
        assert_eq!(reading.config.get("tags"), Some("a;b"));
        let pending: Vec<(&str, Option<&str>)> = reading
            .pending
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        // A pending value equal to the current one changes nothing.
        assert_eq!(
            pending,
            [
                ("memory", Some("8192")),
                ("net1", Some("virtio,bridge=vmbr1")),
                ("tags", None)
            ]
        );
    }
}
