//! The endpoints: authentication, routing by the schema's path patterns, parameter
//! checks, and one handler per endpoint. Writes that PVE runs as workers answer a UPID
//! and run as [`Task`](super::model::Task)s; starting a VM calls the caller's
//! [`Machines`] (in `infraflux lab`: a fake Talos node on the VM's address) before the
//! task ends.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::model::{Cluster, PveError, Vm, allocated_drive, now};
use super::params::{self, ParamType, Values, parse_boolean};
use super::property::{GIB, MIB, PropertyString, format_size, normalize_tags, parse_size};
use super::schema::ENDPOINTS;

/// A VM that was started, as the lab needs it.
#[derive(Debug, Clone)]
pub struct Booted {
    pub vmid: u32,
    pub name: String,
    pub node: String,
    /// `ipconfig0`'s address (cloud-init), where the VM's Talos API will listen.
    pub ipv4: Option<IpAddr>,
}

/// What runs inside the simulated VMs.
#[async_trait]
pub trait Machines: Send + Sync {
    /// The VM was powered on; an error fails its start task with that message.
    async fn started(&self, vm: Booted) -> Result<(), String>;
    /// The VM was powered off or destroyed.
    async fn stopped(&self, vmid: u32);
}

/// The simulator's shared state.
pub struct Simulator {
    cluster: Mutex<Cluster>,
    machines: Arc<dyn Machines>,
    /// `root@pam!lab`.
    token_id: String,
    secret: String,
}

/// An answer: status, reason phrase, JSON body.
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: Value,
}

impl Answer {
    fn ok(data: Value) -> Self {
        Answer {
            status: 200,
            reason: "OK".into(),
            body: json!({ "data": data }),
        }
    }

    fn error(error: PveError) -> Self {
        let mut body = json!({"data": null, "message": format!("{}\n", error.message)});
        if let Some(errors) = error.errors {
            body["errors"] = json!(errors);
        }
        Answer {
            status: error.status,
            reason: error
                .message
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
            body,
        }
    }
}

/// One request, after authentication and parameter checks.
struct Request {
    method: String,
    /// Path parameters (`node`, `vmid`, `storage`, `volume`, `upid`).
    path: BTreeMap<String, String>,
    /// Path, query and form parameters together.
    values: Values,
    user: String,
}

impl Request {
    fn path(&self, name: &str) -> &str {
        self.path.get(name).map(String::as_str).unwrap_or_default()
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn vmid(&self) -> Result<u32, PveError> {
        let text = self.path("vmid");
        match text.parse::<u32>() {
            Ok(vmid) if vmid >= 100 => Ok(vmid),
            Ok(_) => Err(PveError::field(
                "vmid",
                "value must have a minimum value of 100",
            )),
            Err(_) => Err(PveError::field(
                "vmid",
                format!("type check ('integer') failed - got '{text}'"),
            )),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.value(name).and_then(parse_boolean).unwrap_or(false)
    }
}

/// Percent-decoding of one path segment (`local:import%2Ftalos.raw`); a `%` not
/// followed by two hex digits stays as it is.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Simulator {
    pub fn new(
        cluster: Cluster,
        machines: Arc<dyn Machines>,
        token_id: &str,
        secret: &str,
    ) -> Self {
        Simulator {
            cluster: Mutex::new(cluster),
            machines,
            token_id: token_id.to_string(),
            secret: secret.to_string(),
        }
    }

    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer one HTTP request. `body` is the form-encoded body of writes.
    pub async fn handle(
        self: &Arc<Self>,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        authorization: Option<&str>,
    ) -> Answer {
        let user = match self.authenticate(authorization) {
            Ok(user) => user,
            Err(error) => return Answer::error(error),
        };
        let Some(rest) = path.strip_prefix("/api2/json") else {
            return Answer::error(not_implemented(method, path));
        };
        let segments: Vec<String> = rest
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        // PVE answers 501 both for an unknown path and for a method a path lacks.
        let route = ENDPOINTS
            .iter()
            .find_map(|(endpoint_method, pattern, params)| {
                (*endpoint_method == method)
                    .then(|| match_path(pattern, &segments))
                    .flatten()
                    .map(|bound| (*pattern, *params, bound))
            });
        let Some((pattern, schema, bound)) = route else {
            return Answer::error(not_implemented(method, path));
        };
        let mut values: Values = bound.clone();
        for (key, value) in
            url::form_urlencoded::parse(query.as_bytes()).chain(url::form_urlencoded::parse(body))
        {
            values.insert(key.into_owned(), value.into_owned());
        }
        if let Err(errors) = params::verify(schema, &values) {
            return Answer::error(PveError {
                status: 400,
                message: "Parameter verification failed.".into(),
                errors: Some(errors),
            });
        }
        let request = Request {
            method: method.to_string(),
            path: bound,
            values,
            user,
        };
        match self.route(pattern, &request) {
            Ok(data) => Answer::ok(data),
            Err(error) => Answer::error(error),
        }
    }

    /// `PVEAPIToken=USER@REALM!TOKENID=SECRET`: the lab's token only.
    fn authenticate(&self, authorization: Option<&str>) -> Result<String, PveError> {
        let Some(header) = authorization else {
            return Err(PveError::new(401, "No ticket"));
        };
        let expected = format!("PVEAPIToken={}={}", self.token_id, self.secret);
        // Compared in full whatever the input, so timing tells nothing of the secret.
        let matches = header.len() == expected.len()
            && header
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if matches {
            Ok(self.token_id.clone())
        } else {
            Err(PveError::new(401, "authentication failure"))
        }
    }

    fn route(self: &Arc<Self>, pattern: &str, request: &Request) -> Result<Value, PveError> {
        match (request.method.as_str(), pattern) {
            ("GET", "/version") => {
                Ok(json!({"version": "9.1.3", "release": "9.1", "repoid": "infraflux-lab"}))
            }
            ("GET", "/nodes") => self.nodes(),
            ("GET", "/cluster/resources") => self.resources(request),
            ("GET", "/cluster/nextid") => self.next_id(request),
            ("GET", "/nodes/{node}/status") => self.node_status(request),
            ("GET", "/nodes/{node}/storage/{storage}/status") => self.storage_status(request),
            ("GET", "/nodes/{node}/storage/{storage}/content") => self.storage_content(request),
            ("POST", "/nodes/{node}/storage/{storage}/download-url") => self.download_url(request),
            ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => {
                self.delete_volume(request)
            }
            ("POST", "/nodes/{node}/qemu") => self.create_vm(request),
            ("GET", "/nodes/{node}/qemu/{vmid}/config") => self.vm_config(request),
            ("PUT", "/nodes/{node}/qemu/{vmid}/config") => {
                self.set_config(request).map(|_| Value::Null)
            }
            ("POST", "/nodes/{node}/qemu/{vmid}/config") => {
                self.set_config(request)?;
                let mut cluster = self.cluster();
                let upid = cluster.new_task(
                    request.path("node"),
                    "qmconfig",
                    request.path("vmid"),
                    &request.user,
                );
                finish(&mut cluster, &upid, Ok(vec!["update VM config".into()]));
                Ok(json!(upid))
            }
            ("GET", "/nodes/{node}/qemu/{vmid}/pending") => self.pending(request),
            ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => self.vm_status(request),
            ("POST", "/nodes/{node}/qemu/{vmid}/status/start") => self.power(request, Power::Start),
            ("POST", "/nodes/{node}/qemu/{vmid}/status/stop") => self.power(request, Power::Stop),
            ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown") => {
                self.power(request, Power::Shutdown)
            }
            ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot") => {
                self.power(request, Power::Reboot)
            }
            ("DELETE", "/nodes/{node}/qemu/{vmid}") => self.destroy(request),
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize") => self.resize(request),
            ("GET", "/nodes/{node}/tasks/{upid}/status") => {
                Ok(self.task(request, |task| task.status_json())?)
            }
            ("GET", "/nodes/{node}/tasks/{upid}/log") => self.task_log(request),
            _ => Err(not_implemented(&request.method, pattern)),
        }
    }

    // ---- cluster and nodes -------------------------------------------------------------

    fn nodes(&self) -> Result<Value, PveError> {
        let cluster = self.cluster();
        Ok(Value::Array(
            cluster
                .options
                .nodes
                .iter()
                .map(|node| {
                    let mut item = cluster.node_json(node);
                    item["ssl_fingerprint"] = json!("");
                    item
                })
                .collect(),
        ))
    }

    fn resources(&self, request: &Request) -> Result<Value, PveError> {
        let kind = request.value("type");
        if let Some(kind) = kind
            && !["vm", "storage", "node", "sdn"].contains(&kind)
        {
            return Err(PveError::field(
                "type",
                format!(
                    "value '{kind}' does not have a value in the enumeration 'vm, storage, node, sdn'"
                ),
            ));
        }
        let cluster = self.cluster();
        let mut items = Vec::new();
        if kind.is_none_or(|k| k == "vm") {
            items.extend(cluster.vms.values().map(|vm| cluster.vm_resource_json(vm)));
        }
        if kind.is_none_or(|k| k == "node") {
            items.extend(cluster.options.nodes.iter().map(|n| cluster.node_json(n)));
        }
        if kind.is_none_or(|k| k == "storage") {
            for node in &cluster.options.nodes {
                for storage in cluster.storages() {
                    items.push(cluster.storage_resource_json(node, &storage));
                }
            }
        }
        Ok(Value::Array(items))
    }

    fn next_id(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        match request.value("vmid") {
            Some(text) => {
                let vmid: u32 = text.parse().map_err(|_| {
                    PveError::field(
                        "vmid",
                        format!("type check ('integer') failed - got '{text}'"),
                    )
                })?;
                if vmid < 100 {
                    return Err(PveError::field(
                        "vmid",
                        "value must have a minimum value of 100",
                    ));
                }
                if cluster.vms.contains_key(&vmid) {
                    return Err(PveError::field("vmid", format!("VM {vmid} already exists")));
                }
                Ok(json!(vmid.to_string()))
            }
            None => {
                let free = (100u32..)
                    .find(|v| !cluster.vms.contains_key(v))
                    .unwrap_or(100);
                Ok(json!(free.to_string()))
            }
        }
    }

    fn node_status(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let node = request.path("node");
        cluster.check_node(node)?;
        let used = cluster.node_memory_used(node);
        let total = cluster.options.node_memory;
        Ok(json!({
            "uptime": cluster.node_json(node)["uptime"], "cpu": 0.02,
            "loadavg": ["0.10", "0.12", "0.09"], "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC",
            "pveversion": "pve-manager/9.1.3/infraflux-lab",
            "cpuinfo": {"cpus": cluster.options.node_cpus, "cores": cluster.options.node_cpus,
                "sockets": 1, "model": "Simulated CPU", "mhz": "3000.000"},
            "memory": {"total": total, "used": used, "free": total.saturating_sub(used)},
            "rootfs": {"total": 64 * GIB, "used": 4 * GIB, "free": 60 * GIB, "avail": 60 * GIB},
            "boot-info": {"mode": "efi", "secureboot": 0},
        }))
    }

    // ---- storage -----------------------------------------------------------------------

    fn storage_status(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let (node, storage) = (request.path("node"), request.path("storage"));
        let (kind, content) = cluster.check_storage(node, storage)?;
        let used = cluster.storage_used(node, storage);
        Ok(json!({
            "type": kind, "content": content, "active": 1, "enabled": 1, "shared": 0,
            "total": Cluster::STORAGE_TOTAL, "used": used,
            "avail": Cluster::STORAGE_TOTAL - used,
        }))
    }

    fn storage_content(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let (node, storage) = (request.path("node"), request.path("storage"));
        cluster.check_storage(node, storage)?;
        let filter = request.value("content");
        let vmid = request.value("vmid").and_then(|v| v.parse::<u32>().ok());
        Ok(Value::Array(
            cluster
                .volumes
                .iter()
                .filter(|v| v.node == node && v.storage == storage)
                .filter(|v| filter.is_none_or(|c| c == v.content))
                .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
                .map(|v| {
                    let mut item = json!({"volid": v.volid, "content": v.content,
                        "format": v.format, "size": v.size, "ctime": v.ctime});
                    if let Some(vmid) = v.vmid {
                        item["vmid"] = json!(vmid);
                    }
                    item
                })
                .collect(),
        ))
    }

    /// Nothing is fetched: the lab has no network. The volume appears as if the download
    /// had finished, and the task log says so.
    fn download_url(&self, request: &Request) -> Result<Value, PveError> {
        let mut cluster = self.cluster();
        let (node, storage) = (request.path("node"), request.path("storage"));
        let (_, allowed) = cluster.check_storage(node, storage)?;
        let content = request.value("content").unwrap_or_default();
        if !["iso", "vztmpl", "import"].contains(&content) {
            return Err(PveError::field(
                "content",
                format!(
                    "value '{content}' does not have a value in the enumeration 'iso, vztmpl, import'"
                ),
            ));
        }
        if !allowed.split(',').any(|c| c == content) {
            return Err(PveError::new(
                400,
                format!("storage '{storage}' is not configured for content-type '{content}'"),
            ));
        }
        let filename = request.value("filename").unwrap_or_default();
        let importable = [".raw", ".qcow2", ".vmdk"]
            .iter()
            .any(|ext| filename.ends_with(ext) || filename.contains(&format!("{ext}.")));
        if filename.contains('/') || (content == "import" && !importable) {
            return Err(PveError::field(
                "filename",
                "invalid filename or wrong extension",
            ));
        }
        if let Some(algorithm) = request.value("checksum-algorithm")
            && !["md5", "sha1", "sha224", "sha256", "sha384", "sha512"].contains(&algorithm)
        {
            return Err(PveError::field(
                "checksum-algorithm",
                format!(
                    "value '{algorithm}' does not have a value in the enumeration 'md5, sha1, sha224, sha256, sha384, sha512'"
                ),
            ));
        }
        if request.value("checksum").is_some() != request.value("checksum-algorithm").is_some() {
            return Err(PveError::field(
                "checksum",
                "'checksum' and 'checksum-algorithm' must be given together",
            ));
        }
        let url = request.value("url").unwrap_or_default().to_string();
        let volid = format!("{storage}:{content}/{filename}");
        let upid = cluster.new_task(node, "download", storage, &request.user);
        let outcome = if cluster.volume(node, &volid).is_some() {
            Err(format!("refusing to override existing file '{filename}'"))
        } else {
            let size = cluster.options.image_size;
            let format = filename
                .split('.')
                .find(|part| ["raw", "qcow2", "vmdk"].contains(part))
                .unwrap_or("raw")
                .to_string();
            cluster.add_volume(node, storage, &volid, content, &format, size, None);
            let mut log = vec![
                format!("downloading {url} to /var/lib/vz/{content}/{filename}.tmp"),
                "(the InfraFlux lab has no network: nothing was fetched, the image is simulated)"
                    .into(),
            ];
            if let Some(algorithm) = request.value("checksum-algorithm") {
                log.push(format!(
                    "{algorithm} checksum not verified (simulated download)"
                ));
            }
            log.push(format!(
                "download of '{url}' to '/var/lib/vz/{content}/{filename}' finished"
            ));
            Ok(log)
        };
        finish(&mut cluster, &upid, outcome);
        Ok(json!(upid))
    }

    fn delete_volume(&self, request: &Request) -> Result<Value, PveError> {
        let mut cluster = self.cluster();
        let (node, storage) = (request.path("node"), request.path("storage"));
        cluster.check_storage(node, storage)?;
        let volume = request.path("volume");
        let volid = if volume.contains(':') {
            volume.to_string()
        } else {
            format!("{storage}:{volume}")
        };
        let Some(index) = cluster
            .volumes
            .iter()
            .position(|v| v.node == node && v.volid == volid)
        else {
            return Err(PveError::new(500, format!("no such volume '{volid}'")));
        };
        cluster.volumes.remove(index);
        let upid = cluster.new_task(node, "imgdel", &volid, &request.user);
        finish(
            &mut cluster,
            &upid,
            Ok(vec![format!("removed volume '{volid}'")]),
        );
        Ok(json!(upid))
    }

    // ---- VMs ---------------------------------------------------------------------------

    /// `qm create`: the config, disks allocated (and imported with `import-from`), NICs
    /// given MACs, tags sorted; the VM is locked while its task runs.
    fn create_vm(self: &Arc<Self>, request: &Request) -> Result<Value, PveError> {
        let mut cluster = self.cluster();
        let node = request.path("node").to_string();
        cluster.check_node(&node)?;
        let vmid: u32 = request
            .value("vmid")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        if vmid < 100 {
            return Err(PveError::field(
                "vmid",
                "value must have a minimum value of 100",
            ));
        }
        if let Some(existing) = cluster.vms.get(&vmid) {
            return Err(PveError::new(
                500,
                format!(
                    "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                    existing.node
                ),
            ));
        }
        const CREATE_ONLY: &[&str] = &[
            "vmid",
            "node",
            "start",
            "storage",
            "force",
            "unique",
            "archive",
            "live-restore",
            "pool",
            "bwlimit",
            "import-working-storage",
        ];
        let mut config: BTreeMap<String, String> = request
            .values
            .iter()
            .filter(|(k, _)| !CREATE_ONLY.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(name) = config.get("name")
            && !is_dns_name(name)
        {
            return Err(PveError::field(
                "name",
                format!("value does not look like a valid DNS name: {name}"),
            ));
        }
        let upid = cluster.new_task(&node, "qmcreate", &vmid.to_string(), &request.user);
        let mut log = Vec::new();
        let outcome = (|| -> Result<(), String> {
            let drives: Vec<String> = config.keys().filter(|k| is_drive(k)).cloned().collect();
            for key in drives {
                let drive = PropertyString::parse(&config[&key]);
                let head = drive.head.clone().unwrap_or_default();
                let Some((storage, spec)) = head.split_once(':') else {
                    continue;
                };
                if cluster.storage(storage).is_none() {
                    return Err(format!("storage '{storage}' does not exist"));
                }
                let allocated = if spec == "cloudinit" {
                    let volid = format!("{storage}:vm-{vmid}-cloudinit");
                    cluster.add_volume(
                        &node,
                        storage,
                        &volid,
                        "images",
                        "raw",
                        4 * MIB,
                        Some(vmid),
                    );
                    let mut cdrom = drive.clone();
                    cdrom.head = Some(volid.clone());
                    cdrom.set("media", "cdrom");
                    log.push(format!(
                        "{key}: successfully created disk '{volid},media=cdrom'"
                    ));
                    cdrom.to_string()
                } else if let Ok(gib) = spec.parse::<u64>() {
                    let size = match drive.get("import-from") {
                        Some(source) => {
                            let size = cluster
                                .volume(&node, source)
                                .map(|v| v.size)
                                .ok_or_else(|| format!("volume '{source}' does not exist"))?;
                            log.push(format!("importing disk '{source}' to VM {vmid} ..."));
                            log.push(format!(
                                "transferred {0:.1} GiB of {0:.1} GiB (100.00%)",
                                size as f64 / GIB as f64
                            ));
                            size
                        }
                        None if key.starts_with("efidisk") => 4 * MIB,
                        None => gib * GIB,
                    };
                    let volid = cluster.allocate_disk(&node, storage, vmid, size);
                    let text = allocated_drive(&drive, &volid, size);
                    log.push(format!("{key}: successfully created disk '{text}'"));
                    text
                } else {
                    continue;
                };
                config.insert(key, allocated);
            }
            for (key, value) in config.iter_mut() {
                if is_nic(key) {
                    *value = with_mac(value, &mut cluster);
                }
            }
            Ok(())
        })();
        if let Err(message) = outcome {
            cluster.volumes.retain(|v| v.vmid != Some(vmid));
            finish(&mut cluster, &upid, Err(message));
            return Ok(json!(upid));
        }
        if let Some(tags) = config.get("tags").cloned() {
            config.insert("tags".into(), normalize_tags(&tags));
        }
        config.insert("smbios1".into(), format!("uuid={}", uuid::Uuid::new_v4()));
        config.insert("vmgenid".into(), uuid::Uuid::new_v4().to_string());
        config.insert(
            "meta".into(),
            format!("creation-qemu=9.2.0,ctime={}", now()),
        );
        cluster.vms.insert(
            vmid,
            Vm {
                vmid,
                node: node.clone(),
                config,
                pending: BTreeMap::new(),
                pending_delete: Default::default(),
                running: false,
                lock: None,
                started_at: 0,
            },
        );
        finish(&mut cluster, &upid, Ok(log));
        let start = request.flag("start");
        drop(cluster);
        if start {
            self.spawn_start(&node, vmid, &request.user);
        }
        Ok(json!(upid))
    }

    fn vm_config(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let vm = cluster.vm(request.path("node"), request.vmid()?)?;
        let mut config = serde_json::Map::new();
        for (key, value) in &vm.config {
            config.insert(key.clone(), typed(key, value));
        }
        config.insert("digest".into(), json!(vm.digest()));
        Ok(Value::Object(config))
    }

    /// `PUT`/`POST …/config`: set and delete keys. On a running VM, keys that cannot be
    /// hot-plugged (PVE's default `hotplug: network,disk,usb`) wait as pending values.
    fn set_config(&self, request: &Request) -> Result<(), PveError> {
        let mut cluster = self.cluster();
        let (node, vmid) = (request.path("node").to_string(), request.vmid()?);
        let vm = cluster.vm(&node, vmid)?;
        if let Some(lock) = &vm.lock {
            return Err(PveError::new(500, format!("VM is locked ({lock})")));
        }
        if let Some(digest) = request.value("digest")
            && digest != vm.digest()
        {
            return Err(PveError::new(
                500,
                "detected modified configuration - file changed by other user? Try again later.",
            ));
        }
        const NOT_CONFIG: &[&str] = &[
            "node",
            "vmid",
            "delete",
            "digest",
            "revert",
            "force",
            "skiplock",
            "background_delay",
        ];
        let mut set: Vec<(String, String)> = request
            .values
            .iter()
            .filter(|(k, _)| !NOT_CONFIG.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let delete: Vec<String> = request
            .value("delete")
            .map(|d| {
                d.split([',', ';', ' '])
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(both) = delete.iter().find(|k| set.iter().any(|(s, _)| s == *k)) {
            return Err(PveError::field(
                both,
                "cannot set and delete at the same time",
            ));
        }
        for (key, value) in set.iter_mut() {
            if key == "tags" {
                *value = normalize_tags(value);
            } else if is_nic(key) {
                let has_mac = PropertyString::parse(value)
                    .head
                    .is_some_and(|h| h.contains('='));
                if !has_mac {
                    // Keep the MAC the NIC has, as PVE does when only options change.
                    let current = cluster.vms[&vmid]
                        .config
                        .get(key.as_str())
                        .and_then(|c| PropertyString::parse(c).head)
                        .filter(|h| h.contains('='));
                    *value = match current {
                        Some(model_mac) => {
                            let mut nic = PropertyString::parse(value);
                            nic.head = Some(model_mac);
                            nic.to_string()
                        }
                        None => with_mac(value, &mut cluster),
                    };
                }
            }
        }
        let vm = cluster.vm_mut(&node, vmid)?;
        for key in delete {
            if vm.running && !hot_pluggable(&key) {
                vm.pending_delete.insert(key);
            } else {
                vm.config.remove(&key);
                vm.pending.remove(&key);
            }
        }
        for (key, value) in set {
            if vm.running && !hot_pluggable(&key) && vm.config.get(&key) != Some(&value) {
                vm.pending.insert(key, value);
            } else {
                vm.pending.remove(&key);
                vm.config.insert(key, value);
            }
        }
        Ok(())
    }

    fn pending(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let vm = cluster.vm(request.path("node"), request.vmid()?)?;
        let mut keys: Vec<&String> = vm
            .config
            .keys()
            .chain(vm.pending.keys())
            .chain(vm.pending_delete.iter())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(Value::Array(
            keys.into_iter()
                .map(|key| {
                    let mut item = json!({"key": key});
                    if let Some(value) = vm.config.get(key) {
                        item["value"] = typed(key, value);
                    }
                    if let Some(pending) = vm.pending.get(key) {
                        item["pending"] = typed(key, pending);
                    }
                    if vm.pending_delete.contains(key) {
                        item["delete"] = json!(1);
                    }
                    item
                })
                .collect(),
        ))
    }

    fn vm_status(&self, request: &Request) -> Result<Value, PveError> {
        let cluster = self.cluster();
        let vm = cluster.vm(request.path("node"), request.vmid()?)?;
        let status = if vm.running { "running" } else { "stopped" };
        let mut item = json!({
            "vmid": vm.vmid, "name": vm.config.get("name").cloned().unwrap_or_default(),
            "status": status, "qmpstatus": status, "cpus": vm.cpus(), "cpu": 0,
            "maxmem": vm.memory_bytes(), "mem": if vm.running { 64 * MIB } else { 0 },
            "balloon": vm.memory_bytes(), "maxdisk": vm.disk_bytes(), "disk": 0,
            "uptime": if vm.running { now() - vm.started_at } else { 0 },
            "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
            "ha": {"managed": 0}, "clipboard": null,
            "agent": i32::from(vm.config.get("agent").is_some_and(|a| {
                let agent = PropertyString::parse(a);
                agent.head.as_deref().or(agent.get("enabled")).and_then(parse_boolean) == Some(true)
            })),
        });
        if vm.running {
            item["pid"] = json!(10_000 + vm.vmid);
            item["running-qemu"] = json!("9.2.0");
            item["running-machine"] = json!("pc-q35-9.2+pve1");
        }
        if let Some(tags) = vm.config.get("tags") {
            item["tags"] = json!(tags);
        }
        if let Some(lock) = &vm.lock {
            item["lock"] = json!(lock);
        }
        Ok(item)
    }

    fn power(self: &Arc<Self>, request: &Request, power: Power) -> Result<Value, PveError> {
        let (node, vmid) = (request.path("node").to_string(), request.vmid()?);
        {
            let cluster = self.cluster();
            let vm = cluster.vm(&node, vmid)?;
            if let Some(lock) = &vm.lock {
                return Err(PveError::new(500, format!("VM is locked ({lock})")));
            }
            if power == Power::Reboot && !vm.running {
                return Err(PveError::new(500, format!("VM {vmid} not running")));
            }
        }
        match power {
            Power::Start => Ok(json!(self.spawn_start(&node, vmid, &request.user))),
            Power::Stop | Power::Shutdown => {
                let kind = if power == Power::Stop {
                    "qmstop"
                } else {
                    "qmshutdown"
                };
                let upid = self
                    .cluster()
                    .new_task(&node, kind, &vmid.to_string(), &request.user);
                let simulator = self.clone();
                let task = upid.clone();
                tokio::spawn(async move {
                    simulator.machines.stopped(vmid).await;
                    let mut cluster = simulator.cluster();
                    if let Some(vm) = cluster.vms.get_mut(&vmid) {
                        vm.running = false;
                    }
                    finish(&mut cluster, &task, Ok(Vec::new()));
                });
                Ok(json!(upid))
            }
            Power::Reboot => {
                // The guest restarts with its disk: what runs on it keeps its state.
                let mut cluster = self.cluster();
                let upid = cluster.new_task(&node, "qmreboot", &vmid.to_string(), &request.user);
                if let Some(vm) = cluster.vms.get_mut(&vmid) {
                    apply_pending(vm);
                }
                finish(&mut cluster, &upid, Ok(Vec::new()));
                Ok(json!(upid))
            }
        }
    }

    /// A start task: pending changes applied, then the lab boots what runs on the VM;
    /// the task ends when that is up (or fails with why it is not).
    fn spawn_start(self: &Arc<Self>, node: &str, vmid: u32, user: &str) -> String {
        let upid = self
            .cluster()
            .new_task(node, "qmstart", &vmid.to_string(), user);
        let simulator = self.clone();
        let task = upid.clone();
        tokio::spawn(async move {
            let booted = {
                let mut cluster = simulator.cluster();
                let Some(vm) = cluster.vms.get_mut(&vmid) else {
                    finish(
                        &mut cluster,
                        &task,
                        Err(format!("VM {vmid} does not exist")),
                    );
                    return;
                };
                if vm.running {
                    finish(
                        &mut cluster,
                        &task,
                        Err(format!("VM {vmid} already running")),
                    );
                    return;
                }
                apply_pending(vm);
                Booted {
                    vmid,
                    name: vm.config.get("name").cloned().unwrap_or_default(),
                    node: vm.node.clone(),
                    ipv4: vm.ipv4(),
                }
            };
            let outcome = simulator.machines.started(booted).await;
            let mut cluster = simulator.cluster();
            match outcome {
                Ok(()) => {
                    if let Some(vm) = cluster.vms.get_mut(&vmid) {
                        vm.running = true;
                        vm.started_at = now();
                    }
                    finish(&mut cluster, &task, Ok(Vec::new()));
                }
                Err(message) => {
                    finish(&mut cluster, &task, Err(format!("start failed: {message}")))
                }
            }
        });
        upid
    }

    fn destroy(self: &Arc<Self>, request: &Request) -> Result<Value, PveError> {
        let mut cluster = self.cluster();
        let (node, vmid) = (request.path("node").to_string(), request.vmid()?);
        let vm = cluster.vm(&node, vmid)?;
        if let Some(lock) = &vm.lock {
            return Err(PveError::new(500, format!("VM is locked ({lock})")));
        }
        if vm.running {
            return Err(PveError::new(
                500,
                format!("VM {vmid} is running - destroy failed"),
            ));
        }
        let upid = cluster.new_task(&node, "qmdestroy", &vmid.to_string(), &request.user);
        cluster.vms.remove(&vmid);
        let removed: Vec<String> = cluster
            .volumes
            .iter()
            .filter(|v| v.vmid == Some(vmid))
            .map(|v| format!("  Logical volume \"{}\" successfully removed.", v.volid))
            .collect();
        cluster.volumes.retain(|v| v.vmid != Some(vmid));
        finish(&mut cluster, &upid, Ok(removed));
        drop(cluster);
        let simulator = self.clone();
        tokio::spawn(async move { simulator.machines.stopped(vmid).await });
        Ok(json!(upid))
    }

    fn resize(&self, request: &Request) -> Result<Value, PveError> {
        let mut cluster = self.cluster();
        let (node, vmid) = (request.path("node").to_string(), request.vmid()?);
        let disk = request.value("disk").unwrap_or_default().to_string();
        let size_text = request.value("size").unwrap_or_default().to_string();
        let vm = cluster.vm(&node, vmid)?;
        if let Some(lock) = &vm.lock {
            return Err(PveError::new(500, format!("VM is locked ({lock})")));
        }
        let Some(current) = vm.config.get(&disk).map(|d| PropertyString::parse(d)) else {
            return Err(PveError::new(500, format!("disk '{disk}' does not exist")));
        };
        let volid = current.head.clone().unwrap_or_default();
        let old = current.get("size").and_then(parse_size).unwrap_or(0);
        let (relative, amount) = match size_text.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, size_text.as_str()),
        };
        let Some(amount) = parse_size(amount) else {
            return Err(PveError::field(
                "size",
                format!("value does not match the regex pattern: {size_text}"),
            ));
        };
        let new = if relative { old + amount } else { amount };
        if new < old {
            return Err(PveError::new(500, "shrinking disks is not supported"));
        }
        let mut resized = current.clone();
        resized.set("size", format_size(new));
        let text = resized.to_string();
        if let Some(vm) = cluster.vms.get_mut(&vmid) {
            vm.config.insert(disk.clone(), text);
        }
        cluster.set_volume_size(&node, &volid, new);
        let upid = cluster.new_task(&node, "qmresize", &vmid.to_string(), &request.user);
        finish(
            &mut cluster,
            &upid,
            Ok(vec![format!(
                "  Size of logical volume {volid} changed from {} to {}.",
                format_size(old),
                format_size(new)
            )]),
        );
        Ok(json!(upid))
    }

    // ---- tasks -------------------------------------------------------------------------

    fn task(
        &self,
        request: &Request,
        view: impl Fn(&super::model::Task) -> Value,
    ) -> Result<Value, PveError> {
        let cluster = self.cluster();
        cluster.check_node(request.path("node"))?;
        let upid = request.path("upid");
        cluster
            .tasks
            .get(upid)
            .filter(|t| t.node == request.path("node"))
            .map(view)
            .ok_or_else(|| PveError::new(500, format!("unable to parse worker upid '{upid}'")))
    }

    fn task_log(&self, request: &Request) -> Result<Value, PveError> {
        let start = request
            .value("start")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let limit = request
            .value("limit")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(50);
        self.task(request, |task| {
            Value::Array(
                task.log
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(limit)
                    .map(|(n, text)| json!({"n": n + 1, "t": text}))
                    .collect(),
            )
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Start,
    Stop,
    Shutdown,
    Reboot,
}

/// End a task: its log ends with `TASK OK` or `TASK ERROR: …`, as PVE's do.
fn finish(cluster: &mut Cluster, upid: &str, outcome: Result<Vec<String>, String>) {
    if let Some(task) = cluster.tasks.get_mut(upid) {
        match outcome {
            Ok(lines) => {
                task.log.extend(lines);
                task.log.push("TASK OK".into());
                task.exitstatus = Some("OK".into());
            }
            Err(message) => {
                task.log.push(format!("TASK ERROR: {message}"));
                task.exitstatus = Some(message);
            }
        }
    }
}

fn apply_pending(vm: &mut Vm) {
    for (key, value) in std::mem::take(&mut vm.pending) {
        vm.config.insert(key, value);
    }
    for key in std::mem::take(&mut vm.pending_delete) {
        vm.config.remove(&key);
    }
}

fn not_implemented(method: &str, path: &str) -> PveError {
    PveError::new(501, format!("Method '{method} {path}' not implemented"))
}

/// Bind `{name}` segments of `pattern` to `segments`.
fn match_path(pattern: &str, segments: &[String]) -> Option<BTreeMap<String, String>> {
    let parts: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut bound = BTreeMap::new();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                bound.insert(name.to_string(), segment.clone());
            }
            None if part == segment => {}
            None => return None,
        }
    }
    Some(bound)
}

fn indexed(key: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn is_drive(key: &str) -> bool {
    indexed(
        key,
        &["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"],
    )
}

fn is_nic(key: &str) -> bool {
    indexed(key, &["net"])
}

/// Keys a running VM takes at once (PVE's default `hotplug: network,disk,usb`, and
/// settings that are not hardware).
fn hot_pluggable(key: &str) -> bool {
    [
        "name",
        "description",
        "tags",
        "onboot",
        "protection",
        "nameserver",
        "searchdomain",
    ]
    .contains(&key)
        || indexed(
            key,
            &["ipconfig", "net", "scsi", "virtio", "sata", "usb", "unused"],
        )
}

/// `virtio,bridge=vmbr0` → `virtio=BC:24:11:…,bridge=vmbr0` (a model without a MAC gets one).
fn with_mac(nic: &str, cluster: &mut Cluster) -> String {
    let mut property = PropertyString::parse(nic);
    match property.head.clone() {
        Some(model) if !model.contains('=') => {
            property.head = Some(format!("{model}={}", cluster.new_mac()));
        }
        _ => {}
    }
    property.to_string()
}

/// A config value as PVE's JSON has it: integer and boolean keys as numbers.
fn typed(key: &str, value: &str) -> Value {
    let create = ENDPOINTS
        .iter()
        .find(|(method, path, _)| *method == "POST" && *path == "/nodes/{node}/qemu")
        .map(|(_, _, params)| *params)
        .unwrap_or(&[]);
    match params::type_of(create, key) {
        Some(ParamType::Integer) => value
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or(json!(value)),
        Some(ParamType::Boolean) => parse_boolean(value)
            .map(|b| json!(i32::from(b)))
            .unwrap_or(json!(value)),
        Some(ParamType::Number) => value
            .parse::<f64>()
            .map(|n| json!(n))
            .unwrap_or(json!(value)),
        _ => json!(value),
    }
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_bind_their_parameters() {
        let segments: Vec<String> = ["nodes", "pve1", "qemu", "1000", "config"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bound = match_path("/nodes/{node}/qemu/{vmid}/config", &segments).unwrap();
        assert_eq!(bound["node"], "pve1");
        assert_eq!(bound["vmid"], "1000");
        assert!(match_path("/nodes/{node}/qemu/{vmid}/pending", &segments).is_none());
        assert_eq!(decode("local:import%2Ftalos.raw"), "local:import/talos.raw");
        assert_eq!(decode("a+b%2Bc%zz%"), "a+b+c%zz%");
    }

    #[test]
    fn config_values_are_typed_like_pve() {
        assert_eq!(typed("cores", "2"), json!(2));
        assert_eq!(typed("onboot", "1"), json!(1));
        assert_eq!(typed("memory", "4096"), json!("4096"));
        assert_eq!(typed("net0", "virtio"), json!("virtio"));
    }
}
