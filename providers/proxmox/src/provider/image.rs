//! `proxmox_image`: a Talos disk image downloaded onto a node's storage as `import`
//! content, for VMs to import their boot disk from.

use std::collections::BTreeMap;

use infraflux_provider::{
    AttributeSchema, Attributes, ErrorKind, PlanResponse, ProviderError, ReadItem, ReadOutcome,
    ReadResult, ResourceSchema, is_unknown,
};
use serde_json::{Value, json};

use super::ProxmoxProvider;
use super::attributes::{Problems, Reader, number, text};
use super::image_upload::{self, SshUploadSpec};
use crate::api::{ClusterResource, Download, ResourceType};
use crate::{task, upload};

pub const KIND: &str = "proxmox_image";
/// See [`unchanged_storage`].
pub const STORAGE_USED: &str = "storage_used";

pub fn schema() -> ResourceSchema {
    // An image is immutable: every input change is a new image.
    let input = |name: &str| AttributeSchema::input(name).force_new();
    ResourceSchema::new(
        KIND,
        vec![
            input("node"),
            input("storage"),
            input("talos_version"),
            input("schematic"),
            input("url"),
            input("filename"),
            input("checksum"),
            // How the image gets there is not part of what it is: changing the method
            // never replaces an image.
            AttributeSchema::input(image_upload::ATTRIBUTE),
            AttributeSchema::computed("volume"),
            // The bytes in use on the storage when the image was last seen in its
            // content: a refresh that finds the same figure need not list the storage.
            AttributeSchema::computed(STORAGE_USED),
        ],
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub node: String,
    pub storage: String,
    pub talos_version: String,
    pub schematic: String,
    pub url: String,
    pub filename: String,
    /// `(algorithm, hex)`; `sha256` when given as plain hex.
    pub checksum: Option<(String, String)>,
    /// The opt-in SSH upload; `None`: PVE downloads `url` itself.
    pub upload: Option<SshUploadSpec>,
}

/// `storage:import/filename`.
pub fn volume(storage: &str, filename: &str) -> String {
    format!("{storage}:import/{filename}")
}

const CHECKSUM_ALGORITHMS: &[(&str, usize)] = &[
    ("md5", 32),
    ("sha1", 40),
    ("sha224", 56),
    ("sha256", 64),
    ("sha384", 96),
    ("sha512", 128),
];

/// A file PVE can import: `.raw`, `.qcow2` or `.vmdk`, optionally compressed.
fn importable(filename: &str) -> bool {
    !filename.contains('/')
        && [".raw", ".qcow2", ".vmdk"]
            .iter()
            .any(|ext| filename.ends_with(ext) || filename.contains(&format!("{ext}.")))
}

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.chars().all(|c| c.is_ascii_hexdigit())
}

impl ImageSpec {
    pub fn read(attributes: &Attributes, allow_unknown: bool) -> (Option<Self>, Problems) {
        let mut r = Reader::new(attributes, allow_unknown);
        let node = r.string("node");
        let storage = r.string("storage");
        let talos_version = r.string("talos_version");
        let schematic = r.string("schematic");
        let url = r.string("url");
        let filename = r.string("filename");
        let checksum = r.string_opt("checksum", false);
        if schematic.as_ref().is_some_and(|s| !is_hex(s, 64)) {
            r.problems.add(
                "schematic",
                "not a schematic ID",
                "the SHA-256 (64 hex digits) of the canonical Image Factory schematic YAML",
            );
        }
        if url
            .as_ref()
            .is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://")))
        {
            r.problems.add(
                "url",
                "not an http(s) URL",
                "e.g. https://factory.talos.dev/image/<schematic>/<version>/nocloud-amd64.raw.zst",
            );
        }
        if filename.as_ref().is_some_and(|f| !importable(f)) {
            r.problems.add(
                "filename",
                "not an importable disk image name",
                "PVE imports `.raw`, `.qcow2` or `.vmdk` files (optionally compressed, e.g. `.raw.zst`), without a directory",
            );
        }
        let checksum = checksum.and_then(|c| match c.split_once(':') {
            Some((algorithm, digest)) => {
                match CHECKSUM_ALGORITHMS.iter().find(|(a, _)| *a == algorithm) {
                    Some((_, length)) if is_hex(digest, *length) => {
                        Some((algorithm.to_string(), digest.to_ascii_lowercase()))
                    }
                    _ => {
                        r.problems.add("checksum", "malformed checksum", "use `<hex sha256>` or `<algorithm>:<hex>` with md5, sha1, sha224, sha256, sha384 or sha512");
                        None
                    }
                }
            }
            None if is_hex(&c, 64) => Some(("sha256".to_string(), c.to_ascii_lowercase())),
            None => {
                r.problems.add("checksum", "malformed checksum", "use `<hex sha256>` or `<algorithm>:<hex>`");
                None
            }
        });
        let upload = image_upload::read(attributes.get(image_upload::ATTRIBUTE), &mut r.problems);
        if upload.is_some()
            && checksum
                .as_ref()
                .is_some_and(|(algorithm, _)| algorithm != "sha256")
        {
            r.problems.add(
                "checksum",
                "an SSH upload is checked with SHA-256 only",
                "give the image's SHA-256 (`sha256:<hex>`) or none",
            );
        }
        let problems = r.problems;
        if !problems.0.is_empty() {
            return (None, problems);
        }
        let spec = (|| {
            Some(ImageSpec {
                upload,
                node: node?,
                storage: storage?,
                talos_version: talos_version?,
                schematic: schematic?,
                url: url?,
                filename: filename?,
                checksum,
            })
        })();
        (spec, problems)
    }

    pub fn volume(&self) -> String {
        volume(&self.storage, &self.filename)
    }

    /// `node/storage:import/filename`: the ID in state.
    pub fn id(&self) -> String {
        format!("{}/{}", self.node, self.volume())
    }
}

/// The computed `volume` can be known at plan time.
pub fn plan_volume(planned: &mut Attributes) {
    let storage = planned
        .get("storage")
        .filter(|v| !is_unknown(v))
        .and_then(Value::as_str);
    let filename = planned
        .get("filename")
        .filter(|v| !is_unknown(v))
        .and_then(Value::as_str);
    if let (Some(storage), Some(filename)) = (storage, filename) {
        let value = volume(storage, filename);
        planned.insert("volume".into(), json!(value));
    }
}

/// An image recorded before `storage_used` existed has none until a deep refresh
/// records it: planning it unknown would be an update that changes nothing. (A new or
/// replaced image has it unknown, as its other computed values.)
pub fn plan_storage_used(prior: Option<&Attributes>, response: &mut PlanResponse) {
    if response.requires_replace.is_empty() && prior.is_some_and(|p| !p.contains_key(STORAGE_USED))
    {
        response.planned.remove(STORAGE_USED);
    }
}

/// The bytes in use on `storage` of `node`, from a `/cluster/resources` listing.
pub fn storage_used(listing: &[ClusterResource], node: &str, storage: &str) -> Option<u64> {
    listing
        .iter()
        .find(|r| {
            r.kind == "storage"
                && r.node.as_deref() == Some(node)
                && r.storage.as_deref() == Some(storage)
        })
        .and_then(|r| r.disk)
}

/// Whether the image is confirmed without listing its storage: the storage's usage
/// now (`used`) is what it was when the image was last seen in the storage's content.
///
/// Why that is enough to notice a deleted image: the image is a file of non-zero size
/// on that storage, so removing it lowers the usage by its size, and the recorded
/// figure comes back only if something of exactly that size was written meanwhile.
/// Any other change, related or not, falls back to the listing that was always made,
/// so a busy storage costs what it did before. A zero usage means a storage that does
/// not report it (one holding the image uses space): listed too. PVE's figure is
/// pvestatd's, refreshed every ten seconds or so: a removal made seconds before a
/// refresh may only show at the next one; `--refresh=deep` always lists.
pub fn unchanged_storage(item: &ReadItem, used: Option<u64>) -> bool {
    !item.id.is_empty()
        && used.is_some_and(|used| used > 0)
        && number(&item.prior, STORAGE_USED) == used
}

fn attributes(spec_attributes: &Attributes, volume: &str) -> Attributes {
    let mut attributes = spec_attributes.clone();
    attributes.insert("volume".into(), json!(volume));
    // `checksum` stays as the configuration gave it: adding `null` for an absent one made
    // every plan after the first show a change (`checksum = null -> null`, found by the
    // lab's second plan).
    attributes
}

impl ProxmoxProvider {
    pub(super) async fn create_image(
        &self,
        address: &str,
        planned: &Attributes,
    ) -> Result<(String, Attributes), ProviderError> {
        let (spec, problems) = ImageSpec::read(planned, false);
        let Some(spec) = spec else {
            return Err(problems.into_error("create", address));
        };
        let client = &self.client;
        let volume = spec.volume();
        // The preflight and the look for an image an earlier attempt may have finished
        // downloading after we lost track of it, side by side (one round trip).
        let (status, existing) = tokio::join!(
            client.storage_status(&spec.node, &spec.storage),
            client.storage_content(&spec.node, &spec.storage, Some("import"))
        );
        let status = status.map_err(|e| e.into_provider("create", address))?;
        if !status.content.iter().any(|c| c == "import") {
            let (summary, help) = super::inventory::import_content_problem(
                &spec.storage,
                &spec.node,
                &status.content,
            );
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "create",
                address,
                format!("{summary}\n  help: {help}"),
            ));
        }
        let existing = existing.map_err(|e| e.into_provider("create", address))?;
        if existing.iter().any(|v| v.volid == volume) {
            tracing::info!(%address, %volume, "image already on the storage; adopting it");
            return Ok(self.created(&spec, planned).await);
        }
        if let Some(ssh) = &spec.upload {
            self.upload_image(address, &spec, ssh).await?;
            return Ok(self.created(&spec, planned).await);
        }
        let download = Download {
            url: spec.url.clone(),
            filename: spec.filename.clone(),
            content: "import".into(),
            checksum: spec.checksum.clone(),
        };
        let upid = client
            .download_url(&spec.node, &spec.storage, &download)
            .await
            .map_err(|e| e.into_provider("create", address))?;
        task::wait(client, &upid, self.wait(self.options.download_timeout))
            .await
            .map_err(|e| e.into_provider("create", address))?;
        Ok(self.created(&spec, planned).await)
    }

    /// ID and attributes of an image now on its storage, with the storage's usage.
    async fn created(&self, spec: &ImageSpec, planned: &Attributes) -> (String, Attributes) {
        let mut attributes = attributes(planned, &spec.volume());
        match self.current_storage_used(&spec.node, &spec.storage).await {
            Some(used) => attributes.insert(STORAGE_USED.into(), json!(used)),
            None => attributes.remove(STORAGE_USED),
        };
        (spec.id(), attributes)
    }

    /// The SSH fallback: upload the local file into the storage's import directory,
    /// then check that PVE lists it as the volume VMs will import from.
    async fn upload_image(
        &self,
        address: &str,
        spec: &ImageSpec,
        ssh: &SshUploadSpec,
    ) -> Result<(), ProviderError> {
        let path = image_upload::source_file(ssh, &spec.filename, &spec.url, address)?;
        let directory = match &ssh.import_dir {
            Some(directory) => directory.clone(),
            None => match self
                .client
                .storage_path(&spec.storage)
                .await
                .map_err(|e| e.into_provider("create", address))?
            {
                Some(path) => format!("{}/import", path.trim_end_matches('/')),
                None => {
                    return Err(ProviderError::new(
                        ErrorKind::InvalidInput,
                        "create",
                        address,
                        format!(
                            "storage `{}` has no directory the SSH upload could write to\n  help: set `proxmox.image_upload.import_dir` to the directory PVE lists `import` volumes of this storage from",
                            spec.storage
                        ),
                    ));
                }
            },
        };
        let source = std::fs::File::open(&path).map_err(|e| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                "create",
                address,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let uploaded = upload::upload(
            ssh.target(&spec.node),
            upload::Upload {
                source: Box::new(source),
                directory: directory.clone(),
                filename: spec.filename.clone(),
                expected_sha256: spec.checksum.as_ref().map(|(_, hex)| hex.clone()),
            },
        )
        .await
        .map_err(|e| upload_error(e, address))?;
        tracing::info!(%address, path = %uploaded.path, bytes = uploaded.bytes, "image uploaded over SSH");
        let volume = spec.volume();
        let listed = self
            .client
            .storage_content(&spec.node, &spec.storage, Some("import"))
            .await
            .map_err(|e| e.into_provider("create", address))?;
        if !listed.iter().any(|v| v.volid == volume) {
            return Err(ProviderError::new(
                ErrorKind::Other,
                "create",
                address,
                format!(
                    "uploaded {} but PVE does not list the volume `{volume}` on node `{}`\n  help: set `proxmox.image_upload.import_dir` to the import directory of storage `{}`",
                    uploaded.path, spec.node, spec.storage
                ),
            ));
        }
        Ok(())
    }

    pub(super) async fn delete_image(
        &self,
        address: &str,
        prior: &Attributes,
    ) -> Result<(), ProviderError> {
        let (Some(node), Some(storage), Some(volume)) = (
            text(prior, "node"),
            text(prior, "storage"),
            text(prior, "volume"),
        ) else {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "delete",
                address,
                "state lacks node, storage or volume; nothing to delete by",
            ));
        };
        match self.client.delete_volume(node, storage, volume).await {
            Ok(Some(upid)) => task::wait(&self.client, &upid, self.wait(self.options.task_timeout))
                .await
                .map(|_| ())
                .map_err(|e| e.into_provider("delete", address)),
            Ok(None) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_provider("delete", address)),
        }
    }

    /// Every image from the cluster `listing` (made by the caller, shared with VMs)
    /// where its storage's usage is unchanged; otherwise (no listing, usage changed or
    /// unknown, `deep`) one content listing per node and storage, whatever the number
    /// of images on it. See [`unchanged_storage`] for why the usage is enough.
    pub(super) async fn read_images(
        &self,
        items: &[&ReadItem],
        listing: Option<&Vec<ClusterResource>>,
        deep: bool,
    ) -> Vec<ReadResult> {
        let mut groups: BTreeMap<(String, String), Vec<&ReadItem>> = BTreeMap::new();
        let mut results = Vec::new();
        for item in items {
            match (text(&item.prior, "node"), text(&item.prior, "storage")) {
                (Some(node), Some(storage)) => groups
                    .entry((node.to_string(), storage.to_string()))
                    .or_default()
                    .push(item),
                _ => results.push(ReadResult {
                    address: item.resource.address.clone(),
                    outcome: ReadOutcome::Failed(ProviderError::new(
                        ErrorKind::InvalidInput,
                        "read",
                        &item.resource.address,
                        "state lacks node or storage",
                    )),
                }),
            }
        }
        for ((node, storage), members) in groups {
            let used = listing.and_then(|l| storage_used(l, &node, &storage));
            let (confirmed, to_list): (Vec<_>, Vec<_>) = members
                .into_iter()
                .partition(|item| !deep && unchanged_storage(item, used));
            results.extend(confirmed.into_iter().map(|item| ReadResult {
                address: item.resource.address.clone(),
                outcome: ReadOutcome::Found(item.prior.clone()),
            }));
            if to_list.is_empty() {
                continue;
            }
            let volumes = self
                .client
                .storage_content(&node, &storage, Some("import"))
                .await;
            // An image adopted from an interrupted create may have been finished by its
            // download task after the listing above was read (a killed apply's task goes
            // on): its usage is read again, now that the image is seen, or the next plan
            // would report the storage as changed outside InfraFlux.
            let adopted_used = if volumes.is_ok() && to_list.iter().any(|item| item.id.is_empty()) {
                self.current_storage_used(&node, &storage).await
            } else {
                None
            };
            for item in to_list {
                let address = item.resource.address.clone();
                let volume = text(&item.prior, "volume")
                    .map(str::to_string)
                    .or_else(|| text(&item.prior, "filename").map(|f| volume(&storage, f)))
                    .unwrap_or_default();
                let outcome = match &volumes {
                    Ok(volumes) => match volumes.iter().find(|v| v.volid == volume) {
                        Some(_) => {
                            let mut found = attributes(&item.prior, &volume);
                            // An interrupted create: its ID was never recorded.
                            let adopted = item.id.is_empty();
                            if adopted {
                                found.insert("id".into(), json!(format!("{node}/{volume}")));
                            }
                            // The usage is recorded when the image is seen on a full
                            // read (deep, or finishing a create), not on every listing:
                            // unrelated writes change it all the time on a busy storage,
                            // and recording each change would report the image as
                            // changed outside InfraFlux at every plan.
                            let used = if adopted { adopted_used } else { used };
                            if (deep || adopted)
                                && let Some(used) = used
                            {
                                found.insert(STORAGE_USED.into(), json!(used));
                            }
                            ReadOutcome::Found(found)
                        }
                        None => ReadOutcome::Gone,
                    },
                    // The storage itself is gone: so is the image.
                    Err(e) if e.is_not_found() => ReadOutcome::Gone,
                    Err(e) => ReadOutcome::Failed(e.clone().into_provider("read", &address)),
                };
                results.push(ReadResult { address, outcome });
            }
        }
        results
    }

    /// The usage of the image's storage on its node now, for `storage_used`; `None`
    /// when PVE does not say (the figure only saves later listings, so a failure to
    /// get it does not fail the create).
    async fn current_storage_used(&self, node: &str, storage: &str) -> Option<u64> {
        match self.client.cluster_resources(ResourceType::Storage).await {
            Ok(listing) => storage_used(&listing, node, storage),
            Err(e) => {
                tracing::debug!(node, storage, error = %e, "storage usage unknown; the next refresh lists the storage");
                None
            }
        }
    }

    pub(super) async fn import_image(
        &self,
        address: &str,
        id: &str,
    ) -> Result<Attributes, ProviderError> {
        let invalid = || {
            ProviderError::new(
                ErrorKind::InvalidInput,
                "import",
                address,
                format!("`{id}` is not an image ID: expected <node>/<storage>:import/<filename>"),
            )
        };
        let (node, volume) = id.split_once('/').ok_or_else(invalid)?;
        let (storage, path) = volume.split_once(':').ok_or_else(invalid)?;
        let filename = path.strip_prefix("import/").ok_or_else(invalid)?;
        let volumes = self
            .client
            .storage_content(node, storage, Some("import"))
            .await
            .map_err(|e| e.into_provider("import", address))?;
        if !volumes.iter().any(|v| v.volid == volume) {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                "import",
                address,
                format!("no volume `{volume}` on storage `{storage}` of node `{node}`"),
            ));
        }
        let mut attributes = Attributes::new();
        for (key, value) in [
            ("node", node),
            ("storage", storage),
            ("filename", filename),
            ("volume", volume),
        ] {
            attributes.insert(key.into(), json!(value));
        }
        for key in ["talos_version", "schematic", "url", "checksum"] {
            attributes.insert(key.into(), Value::Null);
        }
        if let Some(used) = self.current_storage_used(node, storage).await {
            attributes.insert(STORAGE_USED.into(), json!(used));
        }
        Ok(attributes)
    }
}

/// An upload failure as a provider error, with its causes (host key problems and
/// refused logins are not worth retrying; a dropped connection is).
fn upload_error(error: upload::UploadError, address: &str) -> ProviderError {
    use upload::UploadError as E;
    let kind = match &error {
        E::Connect { .. } | E::Handshake { .. } | E::Sftp { .. } | E::Remote { .. } => {
            ErrorKind::Transient
        }
        E::Authentication { .. } => ErrorKind::Permission,
        E::UnknownHostKey { .. }
        | E::HostKeyMismatch { .. }
        | E::KnownHosts { .. }
        | E::Checksum { .. }
        | E::Source { .. } => ErrorKind::InvalidInput,
        E::Internal(_) => ErrorKind::Other,
    };
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ProviderError::new(kind, "create", address, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    fn valid() -> Value {
        json!({
            "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
            "schematic": "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
            "url": "https://factory.talos.dev/image/ce4c/v1.13.9/nocloud-amd64.raw.zst",
            "filename": "talos-v1.13.9-ce4c9805.raw.zst",
        })
    }

    #[test]
    fn reads_a_valid_spec_and_its_volume() {
        let (spec, problems) = ImageSpec::read(&attrs(valid()), false);
        assert!(problems.0.is_empty(), "{problems:?}");
        let spec = spec.unwrap();
        assert_eq!(spec.volume(), "local:import/talos-v1.13.9-ce4c9805.raw.zst");
        assert_eq!(
            spec.id(),
            "pve1/local:import/talos-v1.13.9-ce4c9805.raw.zst"
        );
        assert_eq!(spec.checksum, None);
    }

    #[test]
    fn collects_every_problem() {
        let mut value = valid();
        value["schematic"] = json!("abc");
        value["url"] = json!("ftp://x");
        value["filename"] = json!("dir/talos.iso");
        value["checksum"] = json!("sha256:xyz");
        let (spec, problems) = ImageSpec::read(&attrs(value), false);
        assert!(spec.is_none());
        let named: Vec<_> = problems
            .0
            .iter()
            .filter_map(|d| d.attribute.clone())
            .collect();
        assert_eq!(named, ["schematic", "url", "filename", "checksum"]);
    }

    #[test]
    fn checksums_default_to_sha256() {
        let mut value = valid();
        value["checksum"] = json!("AB".repeat(32));
        let (spec, _) = ImageSpec::read(&attrs(value.clone()), false);
        assert_eq!(
            spec.unwrap().checksum,
            Some(("sha256".into(), "ab".repeat(32)))
        );
        value["checksum"] = json!(format!("sha512:{}", "0".repeat(128)));
        let (spec, _) = ImageSpec::read(&attrs(value), false);
        assert_eq!(spec.unwrap().checksum.unwrap().0, "sha512");
    }

    fn item(id: &str, storage_used: Option<u64>) -> ReadItem {
        let mut prior = attrs(valid());
        if let Some(used) = storage_used {
            prior.insert(STORAGE_USED.into(), json!(used));
        }
        ReadItem {
            resource: infraflux_provider::ResourceRef {
                address: "dev/w/proxmox_image.talos".into(),
                kind: KIND.into(),
            },
            id: id.into(),
            prior,
        }
    }

    #[test]
    fn only_the_same_nonzero_usage_confirms_an_image_without_listing() {
        let id = "pve1/local:import/talos.raw";
        assert!(unchanged_storage(&item(id, Some(4096)), Some(4096)));
        // A removed image lowers the usage.
        assert!(!unchanged_storage(&item(id, Some(4096)), Some(2048)));
        // A storage that reports no usage (or 0, which one holding an image cannot).
        assert!(!unchanged_storage(&item(id, Some(4096)), None));
        assert!(!unchanged_storage(&item(id, Some(0)), Some(0)));
        // Nothing recorded (an older state), or an interrupted create.
        assert!(!unchanged_storage(&item(id, None), Some(4096)));
        assert!(!unchanged_storage(&item("", Some(4096)), Some(4096)));
    }

    #[test]
    fn the_usage_of_the_right_node_and_storage_is_read() {
        let entry = |node: &str, storage: &str, disk: u64| ClusterResource {
            id: format!("storage/{node}/{storage}"),
            kind: "storage".into(),
            node: Some(node.into()),
            storage: Some(storage.into()),
            disk: Some(disk),
            ..ClusterResource::default()
        };
        let listing = [
            entry("pve1", "local-lvm", 1),
            entry("pve2", "local", 2),
            entry("pve1", "local", 3),
        ];
        assert_eq!(storage_used(&listing, "pve1", "local"), Some(3));
        assert_eq!(storage_used(&listing, "pve3", "local"), None);
    }

    #[test]
    fn an_image_recorded_without_a_usage_plans_no_change() {
        let mut prior = attrs(valid());
        prior.insert("checksum".into(), Value::Null);
        prior.insert(
            "volume".into(),
            json!(volume("local", "talos-v1.13.9-ce4c9805.raw.zst")),
        );
        let mut desired = attrs(valid());
        desired.insert("checksum".into(), Value::Null);
        let mut response = schema().default_plan(Some(&prior), desired.clone());
        assert!(is_unknown(&response.planned[STORAGE_USED]));
        plan_storage_used(Some(&prior), &mut response);
        assert_eq!(response.planned, prior);
        // A new image learns it when created.
        let mut response = schema().default_plan(None, desired.clone());
        plan_storage_used(None, &mut response);
        assert!(is_unknown(&response.planned[STORAGE_USED]));
        // A replaced one has it unknown.
        let mut recorded = prior.clone();
        recorded.insert(STORAGE_USED.into(), json!(4096));
        let mut other = desired.clone();
        other.insert("node".into(), json!("pve2"));
        let mut response = schema().default_plan(Some(&recorded), other);
        plan_storage_used(Some(&recorded), &mut response);
        assert!(is_unknown(&response.planned[STORAGE_USED]));
    }

    #[test]
    fn the_volume_is_known_at_plan_time() {
        let mut planned = attrs(valid());
        plan_volume(&mut planned);
        assert_eq!(
            planned["volume"],
            json!("local:import/talos-v1.13.9-ce4c9805.raw.zst")
        );
    }
}
