//! Effective configuration → model. Every check reports at the origin of the value it
//! looked at (found by key path in the effective tree), and resolution goes on after a
//! problem so one run shows them all.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use super::network::NodeRange;
use super::units::{Bytes, MilliCpu, parse_bytes, parse_cpu};
use super::*;
use crate::config::raw::{RawPodSecurity, RawQuantity, RawRole, RawService, RawSettings};
use crate::config::{Configuration, EffectiveConfig, KeyPath};
use crate::diag::{Origin, Problem, Problems};
use crate::vocabulary::{MachineIdentity, MachineRecords};

mod allocate;

/// Kubernetes' documented scalability limit; also bounds the node range and allocation.
pub const MAX_NODES_PER_CLUSTER: u32 = 5000;

/// What state records of each environment's machines, by environment (an environment
/// missing: nothing recorded, every machine is new).
pub type RecordedMachines = std::collections::BTreeMap<String, MachineRecords>;

/// Resolve every selected pair as if nothing were applied yet: every machine is new.
/// Returns the model when there are no errors; problems (warnings included) are always
/// returned.
pub fn resolve_model(config: &Configuration) -> (Option<Model>, Problems) {
    resolve_model_with(config, &RecordedMachines::new())
}

/// Resolve every selected pair; machines `recorded` holds keep their identity (see
/// `allocate`).
pub fn resolve_model_with(
    config: &Configuration,
    recorded: &RecordedMachines,
) -> (Option<Model>, Problems) {
    let mut problems = Problems::new();
    let mut missing = MissingKeys::default();
    let mut clusters = Vec::new();
    let mut unresolved = Vec::new();
    let none = std::collections::BTreeMap::new();
    for effective in &config.effective {
        let machines = recorded
            .get(&effective.environment)
            .and_then(|records| records.cluster(&effective.cluster))
            .unwrap_or(&none);
        match resolve_cluster(effective, machines, &mut problems, &mut missing) {
            (Some(cluster), _) => clusters.push((cluster, effective)),
            (None, true) => {
                unresolved.push(format!("{}/{}", effective.environment, effective.cluster))
            }
            (None, false) => {}
        }
    }
    missing.report(&mut problems);
    check_overlapping_ranges(&clusters, &mut problems);
    check_shared_vips(&clusters, &mut problems);
    check_vmid_ranges(&clusters, &mut problems);
    if problems.has_errors() {
        return (None, problems);
    }
    let mut environments: Vec<Environment> = Vec::new();
    for (cluster, _) in clusters {
        match environments
            .iter_mut()
            .find(|e| e.name == cluster.environment)
        {
            Some(env) => {
                env.sync_wave = env.sync_wave.min(cluster.sync_wave);
                env.clusters.push(cluster);
            }
            None => environments.push(Environment {
                name: cluster.environment.clone(),
                sync_wave: cluster.sync_wave,
                clusters: vec![cluster],
            }),
        }
    }
    environments.sort_by(|a, b| (a.sync_wave, &a.name).cmp(&(b.sync_wave, &b.name)));
    let secrets = config.secrets.strings().clone();
    (
        Some(Model {
            environments,
            secrets,
            unresolved,
        }),
        problems,
    )
}

/// Required keys missing from the effective configuration, collected over every pair:
/// a key missing from a layer that many pairs share is reported once, naming the pairs,
/// rather than once per pair.
#[derive(Default)]
struct MissingKeys {
    /// (key path, where it is reported) → what is known about it.
    items: indexmap::IndexMap<(String, Origin), MissingKey>,
}

struct MissingKey {
    example: String,
    /// (environment, cluster) pairs that miss it.
    pairs: Vec<(String, String)>,
}

impl MissingKeys {
    /// Pairs named in one message; the rest are counted.
    const LISTED: usize = 5;

    fn report(self, problems: &mut Problems) {
        for ((path, origin), MissingKey { example, pairs }) in self.items {
            let (message, help) = match pairs.as_slice() {
                [(env, cluster)] => (
                    format!(
                        "missing required key `{path}` for cluster `{cluster}` in environment `{env}`"
                    ),
                    format!(
                        "set it in defaults/, environments/{env}.yaml or clusters/{cluster}.yaml, e.g. `{path}: {example}`"
                    ),
                ),
                _ => {
                    let mut names: Vec<String> = pairs
                        .iter()
                        .take(Self::LISTED)
                        .map(|(env, cluster)| format!("{env}/{cluster}"))
                        .collect();
                    if pairs.len() > Self::LISTED {
                        names.push(format!("{} more", pairs.len() - Self::LISTED));
                    }
                    (
                        format!(
                            "missing required key `{path}` for {} (environment, cluster) pairs: {}",
                            pairs.len(),
                            names.join(", ")
                        ),
                        format!(
                            "set it once in defaults/ for all of them, or in each environment or cluster file, e.g. `{path}: {example}`"
                        ),
                    )
                }
            };
            problems.push(
                Problem::error("config::missing-key", message)
                    .at(origin)
                    .label(format!("`{path}` is not set in any layer"))
                    .help(help),
            );
        }
    }
}

/// Reads values of one effective configuration and reports problems at their origin.
struct Resolver<'a> {
    effective: &'a EffectiveConfig,
    problems: &'a mut Problems,
    missing: &'a mut MissingKeys,
    /// A value was left out because it waits on a deferred reference.
    deferred: bool,
}

impl Resolver<'_> {
    /// Whether checks of the value at `path` are skipped: it waits on a reference, or
    /// a problem about it is already reported.
    fn unchecked(&self, path: &str) -> bool {
        self.effective.is_unchecked(&KeyPath::parse(path))
    }

    /// [`Self::unchecked`], noting that the pair cannot be resolved whole.
    fn skip(&mut self, path: &str) -> bool {
        let skip = self.unchecked(path);
        self.deferred |= skip;
        skip
    }

    fn origin(&self, path: &str) -> Origin {
        self.effective.node.origin_of(&KeyPath::parse(path))
    }

    /// Where to report a key that is not set: at the key of its closest ancestor that is
    /// set (`proxmox:` for a missing `proxmox.endpoint`), else at the top of the tree.
    fn missing_origin(&self, path: &str) -> Origin {
        let root = &self.effective.node;
        let mut ancestor = KeyPath::root();
        let mut closest = None;
        for segment in KeyPath::parse(path).segments() {
            ancestor.push(segment.clone());
            if root.lookup(&ancestor).is_none() {
                break;
            }
            closest = root.key_origin_of(&ancestor);
        }
        closest.unwrap_or(root.origin)
    }

    fn require<T>(&mut self, value: Option<T>, path: &str, example: &str) -> Option<T> {
        // A key a missing layer may set, or whose value was refused, is not missing.
        if value.is_none() && !self.effective.incomplete && !self.unchecked(path) {
            let origin = self.missing_origin(path);
            let pair = (
                self.effective.environment.clone(),
                self.effective.cluster.clone(),
            );
            self.missing
                .items
                .entry((path.to_string(), origin))
                .or_insert_with(|| MissingKey {
                    example: example.to_string(),
                    pairs: Vec::new(),
                })
                .pairs
                .push(pair);
        }
        value
    }

    fn invalid(&mut self, path: &str, message: String, label: &str, help: &str) {
        if self.unchecked(path) {
            return;
        }
        let origin = self.origin(path);
        self.problems.push(
            Problem::error("config::invalid-value", message)
                .at(origin)
                .label(label)
                .help(help),
        );
    }

    /// Of several paths, the one whose value was set by the most specific layer (read
    /// last: defaults, templates, environments, clusters, overlays): a conflict
    /// between two values is reported where the later one was written.
    /// Within one file, the first path given wins.
    fn latest<'p>(&self, paths: &[&'p str]) -> &'p str {
        let file = |path: &str| {
            self.effective
                .node
                .lookup(&KeyPath::parse(path))
                .map(|n| n.origin.file)
        };
        let mut best = paths[0];
        for path in &paths[1..] {
            if file(path) > file(best) {
                best = path;
            }
        }
        best
    }

    /// Parse a required string value with `parse`, reporting `what` and `help` when it fails.
    fn parse<T, E>(
        &mut self,
        value: Option<&String>,
        path: &str,
        example: &str,
        what: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        let text = self.require(value, path, example)?;
        if self.skip(path) {
            return None;
        }
        match parse(text) {
            Ok(v) => Some(v),
            Err(_) => {
                self.invalid(
                    path,
                    format!("malformed {what} `{text}` in `{path}`"),
                    &format!("not a valid {what}"),
                    &format!("write a valid {what}, e.g. `{example}`"),
                );
                None
            }
        }
    }

    fn count(&mut self, value: Option<i64>, path: &str, example: &str) -> Option<u32> {
        let value = self.require(value, path, example)?;
        match u32::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.invalid(
                    path,
                    format!("`{path}` is out of range: {value}"),
                    "out of range",
                    "use a small non-negative whole number",
                );
                None
            }
        }
    }

    /// The node count of a pool: a count no larger than one cluster can hold. Without
    /// the bound a typo (`count: 3000000000`) would overflow the node total or allocate
    /// billions of machines before any problem is shown.
    fn node_count(&mut self, value: Option<i64>, path: &str, example: &str) -> Option<u32> {
        let count = self.count(value, path, example)?;
        if count > MAX_NODES_PER_CLUSTER {
            self.invalid(
                path,
                format!("`{path}` is {count}, more nodes than a cluster can have"),
                &format!("at most {MAX_NODES_PER_CLUSTER}"),
                &format!(
                    "Kubernetes supports at most {MAX_NODES_PER_CLUSTER} nodes per cluster; use a smaller count or more clusters"
                ),
            );
            return None;
        }
        Some(count)
    }

    fn bytes(&mut self, value: Option<&RawQuantity>, path: &str, example: &str) -> Option<Bytes> {
        let value = self.require(value, path, example)?;
        if self.skip(path) {
            return None;
        }
        let parsed = match value {
            RawQuantity::Number(n) => u64::try_from(*n).ok().map(Bytes),
            RawQuantity::Text(t) => parse_bytes(t).ok(),
        };
        match parsed {
            Some(b) if b.0 > 0 => Some(b),
            _ => {
                self.invalid(
                    path,
                    format!("malformed size `{value}` in `{path}`"),
                    "not a size",
                    &format!(
                        "use Kubernetes units, e.g. `{example}` (Ki, Mi, Gi, Ti; or k, M, G, T)"
                    ),
                );
                None
            }
        }
    }

    fn cpu(&mut self, value: Option<&RawQuantity>, path: &str, example: &str) -> Option<MilliCpu> {
        let value = self.require(value, path, example)?;
        if self.skip(path) {
            return None;
        }
        let parsed = match value {
            RawQuantity::Number(n) => u64::try_from(*n)
                .ok()
                .and_then(|n| n.checked_mul(1000))
                .map(MilliCpu),
            RawQuantity::Text(t) => parse_cpu(t).ok(),
        };
        match parsed {
            Some(c) if c.0 > 0 => Some(c),
            _ => {
                self.invalid(
                    path,
                    format!("malformed CPU quantity `{value}` in `{path}`"),
                    "not a CPU quantity",
                    &format!("use cores or millicores, e.g. `{example}`"),
                );
                None
            }
        }
    }
}

fn parse_version(text: &str) -> Result<semver::Version, semver::Error> {
    semver::Version::parse(text.strip_prefix('v').unwrap_or(text))
}

/// The cluster, or `None` with whether that is only because a value waits on a
/// deferred reference (no problem).
fn resolve_cluster(
    effective: &EffectiveConfig,
    recorded: &std::collections::BTreeMap<String, MachineIdentity>,
    problems: &mut Problems,
    missing: &mut MissingKeys,
) -> (Option<Cluster>, bool) {
    let mut r = Resolver {
        effective,
        problems,
        missing,
        deferred: false,
    };
    let cluster = resolve_settings(&mut r, recorded);
    let deferred = r.deferred;
    (cluster, deferred)
}

fn resolve_settings(
    r: &mut Resolver,
    recorded: &std::collections::BTreeMap<String, MachineIdentity>,
) -> Option<Cluster> {
    let effective = r.effective;
    let raw: RawSettings = match crate::config::de::from_node(&effective.node) {
        Ok(raw) => raw,
        Err(error) => {
            // Every layer passed the schema, so this is a merge of valid layers into an
            // invalid whole; report it at the cluster.
            r.problems.push(
                Problem::error(
                    "config::invalid-value",
                    format!(
                        "the merged configuration of `{}/{}` is invalid: {error}",
                        effective.environment, effective.cluster
                    ),
                )
                .at(effective.node.origin)
                .help(
                    "check `infraflux config show --provenance` for the layer that sets this value",
                ),
            );
            return None;
        }
    };
    let env = effective.environment.as_str();

    let role = match raw.role {
        Some(RawRole::Management) => Role::Management,
        Some(RawRole::Edge) => Role::Edge,
        Some(RawRole::Workload) | None => Role::Workload,
    };
    let proxmox = resolve_proxmox(r, &raw);
    let talos = resolve_talos(r, &raw);
    let kubernetes = raw.kubernetes.as_ref().and_then(|k| k.version.as_ref());
    let kubernetes = r.parse(
        kubernetes,
        "kubernetes.version",
        "1.32.2",
        "version",
        parse_version,
    );
    let (control_plane, workers) = resolve_pools(r, &raw);
    let network = resolve_network(r, &raw);
    // Allocated whatever else is wrong, so that its problems show in the same run.
    let allocation = match (&control_plane, &workers, &network) {
        (Some(control_plane), Some(workers), Some(network)) => allocate::allocate(
            r,
            &allocate::Request {
                environment: env,
                cluster: &effective.cluster,
                control_plane,
                workers,
                network,
                proxmox_nodes: proxmox.as_ref().map(|p| p.nodes.as_slice()),
                recorded,
            },
        ),
        _ => None,
    };
    let platform = resolve_platform(r, &raw);
    let gitops = resolve_gitops(r, &raw, env);
    let workloads = resolve_workloads(r, &raw);
    let sync_wave = r.count(raw.sync_wave.or(Some(0)), "sync_wave", "0");
    let lifecycle = Lifecycle {
        prevent_destroy: raw
            .lifecycle
            .as_ref()
            .and_then(|l| l.prevent_destroy)
            .unwrap_or(env == "prod"),
    };

    let namespaces = resolve_namespaces(r, &raw);
    let waivers = raw
        .policy
        .as_ref()
        .and_then(|p| p.waivers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|w| Waiver {
            rule: w.rule,
            reason: w.reason,
        })
        .collect();

    let namespaces = namespaces?;
    let (
        proxmox,
        talos,
        kubernetes,
        control_plane,
        workers,
        mut network,
        platform,
        gitops,
        workloads,
        sync_wave,
    ) = (
        proxmox?,
        talos?,
        kubernetes?,
        control_plane?,
        workers?,
        network?,
        platform?,
        gitops?,
        workloads?,
        sync_wave?,
    );
    let allocation = allocation?;
    network.node_range = allocation.range;
    Some(Cluster {
        environment: env.to_string(),
        name: effective.cluster.clone(),
        role,
        template: effective.template.clone(),
        proxmox,
        talos,
        kubernetes: Kubernetes {
            version: kubernetes,
        },
        control_plane,
        workers,
        network,
        platform,
        gitops,
        workloads,
        sync_wave,
        lifecycle,
        namespaces,
        waivers,
        nodes: allocation.nodes,
        leaving: allocation.leaving,
    })
}

fn resolve_proxmox(r: &mut Resolver, raw: &RawSettings) -> Option<Proxmox> {
    let default = Default::default();
    let p = raw.proxmox.as_ref().unwrap_or(&default);
    let endpoint = r.parse(
        p.endpoint.as_ref(),
        "proxmox.endpoint",
        "https://pve1.example.internal:8006",
        "URL",
        |t| {
            url::Url::parse(t).map_err(|_| ()).and_then(|u| {
                if matches!(u.scheme(), "https" | "http") && u.host().is_some() {
                    Ok(u)
                } else {
                    Err(())
                }
            })
        },
    );
    let token = r.require(p.token.as_ref(), "proxmox.token", "${env:PROXMOX_TOKEN}");
    // A token that waits on a reference is checked when it is resolved.
    let token_unchecked = r.unchecked("proxmox.token");
    if let Some(token) = token
        && !token_unchecked
        && !is_api_token(token)
    {
        // Never echo the token: it is a secret even when malformed.
        r.invalid(
                "proxmox.token",
                "malformed Proxmox API token in `proxmox.token`".into(),
                "not USER@REALM!TOKENID=SECRET",
                "create a token under Datacenter → Permissions → API Tokens and set it as `USER@REALM!TOKENID=SECRET`, e.g. `root@pam!infraflux=…`",
            );
    }
    let nodes = r.require(p.nodes.clone(), "proxmox.nodes", "[pve1, pve2, pve3]");
    if let Some(list) = &nodes {
        if list.is_empty() {
            r.invalid(
                "proxmox.nodes",
                "`proxmox.nodes` is empty".into(),
                "no nodes",
                "list the Proxmox nodes VMs may run on, e.g. `[pve1, pve2, pve3]`",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, name) in list.iter().enumerate() {
            if !is_node_name(name) {
                r.invalid(
                    &format!("proxmox.nodes[{i}]"),
                    format!("`{name}` is not a Proxmox node name"),
                    "not a node name",
                    "a Proxmox node is named by its host name: letters, digits and '-', starting and ending with a letter or digit (`pvecm nodes` lists them)",
                );
            }
            if !seen.insert(name) {
                let path = format!("proxmox.nodes[{i}]");
                r.problems.push(
                    Problem::error(
                        "config::duplicate-name",
                        format!("Proxmox node `{name}` is listed twice"),
                    )
                    .at(r.origin(&path))
                    .label("listed before")
                    .help("list each node once"),
                );
            }
        }
    }
    let storage = r.require(p.storage.clone(), "proxmox.storage", "local-lvm");
    let bridge = r.require(p.bridge.clone(), "proxmox.bridge", "vmbr0");
    let vlan = p.vlan.and_then(|v| u16::try_from(v).ok());
    let range = p.vmid_range.clone().unwrap_or_default();
    let (vmid_start, vmid_end) = (range.start.unwrap_or(1000), range.end.unwrap_or(1999));
    if vmid_start > vmid_end {
        let at = r.latest(&["proxmox.vmid_range.start", "proxmox.vmid_range.end"]);
        let other = if at.ends_with("start") {
            "end"
        } else {
            "start"
        };
        let other_origin = r.origin(&format!("proxmox.vmid_range.{other}"));
        r.invalid(
            at,
            format!("`proxmox.vmid_range` is empty: start {vmid_start} is after end {vmid_end}"),
            &format!("`{other}` is set at line {}", other_origin.line),
            "make `start` smaller than `end`",
        );
    }
    let tls = p.tls.clone().unwrap_or_default();
    let tls = match (tls.insecure.unwrap_or(false), tls.ca_file, tls.fingerprint) {
        (true, _, _) => Tls::Insecure,
        (false, Some(ca), _) => Tls::CaFile(ca.into()),
        (false, None, Some(fingerprint)) => {
            let hex: String = fingerprint.chars().filter(|c| *c != ':').collect();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                r.invalid(
                    "proxmox.tls.fingerprint",
                    "malformed certificate fingerprint in `proxmox.tls.fingerprint`".into(),
                    "not a SHA-256 fingerprint",
                    "copy the SHA-256 fingerprint from the node's Certificates page (32 hex pairs, `AB:CD:…`)",
                );
            }
            Tls::Fingerprint(fingerprint)
        }
        (false, None, None) => Tls::System,
    };
    let image_upload = resolve_image_upload(r, p);
    if let (Some(upload), Some(known)) = (&p.image_upload, &nodes) {
        for host in upload.hosts.iter().flat_map(|h| h.keys()) {
            if known.contains(host) {
                continue;
            }
            let path = KeyPath::parse("proxmox.image_upload.hosts").key(host);
            if r.effective.is_unchecked(&path) {
                continue;
            }
            let origin = r
                .effective
                .node
                .key_origin_of(&path)
                .unwrap_or_else(|| r.origin("proxmox.image_upload.hosts"));
            let help = match crate::diag::did_you_mean(host, known.iter().map(String::as_str)) {
                Some(close) => format!(
                    "did you mean `{close}`? (`proxmox.nodes`: {})",
                    known.join(", ")
                ),
                None => format!(
                    "`hosts` gives an address per node of `proxmox.nodes` ({})",
                    known.join(", ")
                ),
            };
            r.problems.push(
                Problem::error(
                    "config::unknown-node",
                    format!("`proxmox.image_upload.hosts` names `{host}`, which is not in `proxmox.nodes`"),
                )
                .at(origin)
                .label("unknown node")
                .help(help),
            );
        }
    }
    let token = token.filter(|t| token_unchecked || is_api_token(t))?;
    Some(Proxmox {
        endpoint: endpoint?,
        token: Sensitive::new(token.clone()),
        nodes: nodes?,
        storage: storage?,
        image_storage: p.image_storage.clone().unwrap_or_else(|| "local".into()),
        bridge: bridge?,
        vlan,
        vmid_start: u32::try_from(vmid_start).ok()?,
        vmid_end: u32::try_from(vmid_end).ok()?,
        allow_colocation: p.allow_colocation.unwrap_or(false),
        storage_concurrency: p.storage_concurrency.and_then(|n| u32::try_from(n).ok()),
        tls,
        image_upload: image_upload?,
    })
}

/// `proxmox.image_upload`: `Some(None)` for the default (nodes download the image),
/// `None` when it is invalid (problems recorded).
fn resolve_image_upload(
    r: &mut Resolver,
    p: &crate::config::raw::RawProxmox,
) -> Option<Option<SshImageUpload>> {
    use crate::config::raw::RawUploadMethod;
    let Some(upload) = &p.image_upload else {
        return Some(None);
    };
    if upload.method != Some(RawUploadMethod::Ssh) {
        return Some(None);
    }
    let key = r.require(
        upload.private_key_file.clone(),
        "proxmox.image_upload.private_key_file",
        "/home/ops/.ssh/infraflux_pve",
    );
    let host_key = match (&upload.known_hosts, &upload.host_key_fingerprint) {
        (Some(path), None) => Some(HostKey::KnownHosts(path.clone())),
        (None, Some(fingerprint)) if fingerprint.starts_with("SHA256:") => {
            Some(HostKey::Fingerprint(fingerprint.clone()))
        }
        (None, Some(_)) => {
            r.invalid(
                "proxmox.image_upload.host_key_fingerprint",
                "malformed host key fingerprint in `proxmox.image_upload.host_key_fingerprint`"
                    .into(),
                "not SHA256:<base64>",
                "copy it from `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node, e.g. `SHA256:47DEQpj8…`",
            );
            None
        }
        (Some(_), Some(_)) => {
            r.invalid(
                "proxmox.image_upload",
                "`proxmox.image_upload` sets both `known_hosts` and `host_key_fingerprint`".into(),
                "two ways to trust the nodes",
                "keep one of them",
            );
            None
        }
        (None, None) => {
            r.invalid(
                "proxmox.image_upload",
                "`proxmox.image_upload.method: ssh` needs a way to verify the nodes' host keys"
                    .into(),
                "no known_hosts or host_key_fingerprint",
                "set `known_hosts` to a file listing every node (`ssh-keyscan pve1 pve2 pve3 > known_hosts`, checked against the consoles) or `host_key_fingerprint`; unknown keys are never accepted",
            );
            None
        }
    };
    let port = u16::try_from(upload.port.unwrap_or(22))
        .ok()
        .filter(|p| *p > 0);
    Some(Some(SshImageUpload {
        user: upload.user.clone().unwrap_or_else(|| "root".into()),
        port: port?,
        private_key_file: key?,
        host_key: host_key?,
        hosts: upload
            .hosts
            .as_ref()
            .map(|hosts| hosts.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        source_dir: upload.source_dir.clone().unwrap_or_else(|| "images".into()),
        import_dir: upload.import_dir.clone(),
    }))
}

/// A Proxmox node name, as PVE's `pve-node` format accepts it (pve-common,
/// `pve_verify_node_name`): a host name label of letters, digits and `-`, starting and
/// ending with a letter or digit; at most 63 characters, like any DNS label.
fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `USER@REALM!TOKENID=SECRET`.
fn is_api_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once('=') else {
        return false;
    };
    let Some((user, token_id)) = id.split_once('!') else {
        return false;
    };
    user.contains('@') && !token_id.is_empty() && !secret.is_empty()
}

fn resolve_talos(r: &mut Resolver, raw: &RawSettings) -> Option<Talos> {
    let default = Default::default();
    let t = raw.talos.as_ref().unwrap_or(&default);
    let version = r.parse(
        t.version.as_ref(),
        "talos.version",
        "v1.13.9",
        "version",
        parse_version,
    )?;
    if !matches!((version.major, version.minor), (1, 13) | (1, 14)) {
        r.problems.push(
            Problem::warning(
                "config::unsupported-version",
                format!("Talos {version} is not a version InfraFlux generates configs for"),
            )
            .at(r.origin("talos.version"))
            .label("untested version")
            .help("use Talos v1.13.x or v1.14.x"),
        );
    }
    Some(Talos {
        version,
        extensions: t.extensions.clone().unwrap_or_default(),
        install_disk: t.install_disk.clone().unwrap_or_else(|| "/dev/sda".into()),
        patches: t.patches.clone().unwrap_or_default(),
    })
}

fn resolve_pools(r: &mut Resolver, raw: &RawSettings) -> (Option<NodePool>, Option<Vec<NodePool>>) {
    let default = Default::default();
    let cp = raw.control_plane.as_ref().unwrap_or(&default);
    let count = r.node_count(cp.count, "control_plane.count", "3");
    let cpu = r.count(cp.cpu, "control_plane.cpu", "4");
    let memory = r.bytes(cp.memory.as_ref(), "control_plane.memory", "8Gi");
    let disk = r.bytes(cp.disk.as_ref(), "control_plane.disk", "40Gi");
    if count == Some(0) {
        r.invalid(
            "control_plane.count",
            "a cluster needs at least one control-plane node".into(),
            "zero",
            "set `control_plane.count` to 1 (dev) or 3",
        );
    }
    let pins = resolve_pins(r, cp.machines.as_ref(), "control_plane");
    let control_plane = (|| {
        Some(NodePool {
            name: CONTROL_PLANE_POOL.into(),
            role: NodeRole::ControlPlane,
            count: count.filter(|c| *c > 0)?,
            cpu: cpu?,
            memory: memory?,
            disk: disk?,
            machines: pins?,
        })
    })();
    let mut workers = Some(Vec::new());
    for (i, pool) in raw.workers.iter().flatten().enumerate() {
        let at = |key: &str| format!("workers[{i}].{key}");
        let count = r.node_count(pool.count, &at("count"), "3");
        let cpu = r.count(pool.cpu, &at("cpu"), "4");
        let memory = r.bytes(pool.memory.as_ref(), &at("memory"), "16Gi");
        let disk = r.bytes(pool.disk.as_ref(), &at("disk"), "100Gi");
        let pins = resolve_pins(r, pool.machines.as_ref(), &format!("workers[{i}]"));
        if pool.name == CONTROL_PLANE_POOL || !valid_dns_label(&pool.name) {
            r.invalid(
                &at("name"),
                format!("invalid worker pool name `{}`", pool.name),
                "not usable in a hostname",
                "use lower-case letters, digits and '-' (not `cp`, which control planes use)",
            );
        }
        match (count, cpu, memory, disk, pins, workers.as_mut()) {
            (Some(count), Some(cpu), Some(memory), Some(disk), Some(pins), Some(list)) => list
                .push(NodePool {
                    name: pool.name.clone(),
                    role: NodeRole::Worker,
                    count,
                    cpu,
                    memory,
                    disk,
                    machines: pins,
                }),
            _ => workers = None,
        }
    }
    (control_plane, workers)
}

/// A pool's `machines:` pins, parsed (`path` is the pool's key path). Whether each names
/// a machine of the pool, a free address and a known node is `allocate`'s to check.
fn resolve_pins(
    r: &mut Resolver,
    raw: Option<&indexmap::IndexMap<String, crate::config::raw::RawMachine>>,
    path: &str,
) -> Option<std::collections::BTreeMap<String, MachinePin>> {
    let mut pins = std::collections::BTreeMap::new();
    let mut ok = true;
    for (name, raw) in raw.into_iter().flatten() {
        let address = match &raw.address {
            None => None,
            Some(text) => {
                let parsed = r.parse(
                    Some(text),
                    &format!("{path}.machines.{name}.address"),
                    "10.10.0.20",
                    "IPv4 address",
                    Ipv4Addr::from_str,
                );
                ok &= parsed.is_some();
                parsed
            }
        };
        pins.insert(
            name.clone(),
            MachinePin {
                address,
                node: raw.node.clone(),
            },
        );
    }
    ok.then_some(pins)
}

fn valid_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The networks, each address checked against the node network. The node range is
/// `allocate`'s: here it is only its start.
fn resolve_network(r: &mut Resolver, raw: &RawSettings) -> Option<Network> {
    let default = Default::default();
    let n = raw.network.as_ref().unwrap_or(&default);
    let default_nodes = Default::default();
    let nodes = n.nodes.as_ref().unwrap_or(&default_nodes);
    let cidr = r.parse(
        nodes.cidr.as_ref(),
        "network.nodes.cidr",
        "10.10.0.0/24",
        "IPv4 CIDR",
        Ipv4Net::from_str,
    );
    let gateway = r.parse(
        nodes.gateway.as_ref(),
        "network.nodes.gateway",
        "10.10.0.1",
        "IPv4 address",
        Ipv4Addr::from_str,
    );
    let start = r.parse(
        nodes.start.as_ref(),
        "network.nodes.start",
        "10.10.0.10",
        "IPv4 address",
        Ipv4Addr::from_str,
    );
    let vip = r.parse(
        n.vip.as_ref(),
        "network.vip",
        "10.10.0.5",
        "IPv4 address",
        Ipv4Addr::from_str,
    );
    let pods = r.parse(
        n.pods.as_ref(),
        "network.pods",
        "10.244.0.0/16",
        "CIDR",
        IpNet::from_str,
    );
    let services = r.parse(
        n.services.as_ref(),
        "network.services",
        "10.96.0.0/12",
        "CIDR",
        IpNet::from_str,
    );
    let mut dns = Vec::new();
    for (i, server) in nodes.dns.iter().flatten().enumerate() {
        let path = format!("network.nodes.dns[{i}]");
        if let Some(ip) = r.parse(
            Some(server),
            &path,
            "1.1.1.1",
            "IP address",
            IpAddr::from_str,
        ) {
            dns.push(ip);
        }
    }

    // Addresses that must sit inside the node subnet.
    if let Some(cidr) = cidr {
        if cidr.trunc() != cidr {
            r.invalid(
                "network.nodes.cidr",
                format!("`{cidr}` has host bits set"),
                "not a network address",
                &format!("write the network address: `{}`", cidr.trunc()),
            );
        }
        for (path, address) in [
            ("network.nodes.gateway", gateway),
            ("network.nodes.start", start),
            ("network.vip", vip),
        ] {
            if let Some(address) = address
                && !usable_in(&cidr, address)
            {
                r.invalid(
                    path,
                    format!("`{address}` in `{path}` is outside the node network {cidr}"),
                    &format!("not a usable address of {cidr}"),
                    &format!(
                        "pick an address between {} and {}",
                        first_host(&cidr),
                        last_host(&cidr)
                    ),
                );
            }
        }
    }
    // Only its start: `allocate` extends it to the machines' addresses.
    let range = start.map(|first| NodeRange { first, count: 1 });
    if let (Some(pods), Some(services)) = (pods, services) {
        if pods.contains(&services.network()) || services.contains(&pods.network()) {
            r.invalid(
                "network.services",
                format!("the service network {services} overlaps the pod network {pods}"),
                "overlaps `network.pods`",
                "use separate ranges, e.g. pods 10.244.0.0/16 and services 10.96.0.0/12",
            );
        }
        if let Some(cidr) = cidr {
            for (path, net) in [("network.pods", pods), ("network.services", services)] {
                let node_net = IpNet::V4(cidr);
                if node_net.contains(&net.network()) || net.contains(&node_net.network()) {
                    r.invalid(
                        path,
                        format!("`{path}` {net} overlaps the node network {cidr}"),
                        "overlaps `network.nodes.cidr`",
                        "pod and service networks must not overlap the nodes' network",
                    );
                }
            }
        }
    }
    Some(Network {
        cidr: cidr?,
        gateway: gateway?,
        dns,
        node_range: range?,
        vip: vip?,
        pods: pods?,
        services: services?,
    })
}

fn usable_in(cidr: &Ipv4Net, address: Ipv4Addr) -> bool {
    cidr.contains(&address)
        && (cidr.prefix_len() >= 31 || (address != cidr.network() && address != cidr.broadcast()))
}

fn first_host(cidr: &Ipv4Net) -> Ipv4Addr {
    cidr.hosts().next().unwrap_or(cidr.network())
}

fn last_host(cidr: &Ipv4Net) -> Ipv4Addr {
    if cidr.prefix_len() >= 31 {
        cidr.broadcast()
    } else {
        Ipv4Addr::from(u32::from(cidr.broadcast()) - 1)
    }
}

fn resolve_platform(r: &mut Resolver, raw: &RawSettings) -> Option<Platform> {
    let default = Default::default();
    let p = raw.platform.as_ref().unwrap_or(&default);
    let mut services = Vec::new();
    let mut ok = true;
    for kind in ServiceKind::ALL {
        let service: Option<&RawService> = match kind {
            ServiceKind::Cilium => p.cilium.as_ref(),
            ServiceKind::CertManager => p.cert_manager.as_ref(),
            ServiceKind::Monitoring => p.monitoring.as_ref(),
            ServiceKind::ExternalDns => p.external_dns.as_ref(),
            ServiceKind::Argocd => p.argocd.as_ref(),
        };
        let service = service.cloned().unwrap_or_default();
        let enabled = service.enabled.unwrap_or(false);
        let path = format!("platform.{}.version", kind.key());
        let version = if enabled {
            let parsed = r.parse(
                service.version.as_ref(),
                &path,
                "1.18.4",
                "version",
                parse_version,
            );
            ok &= parsed.is_some();
            parsed
        } else {
            service
                .version
                .as_deref()
                .and_then(|v| parse_version(v).ok())
        };
        if service.ha.is_some() && kind != ServiceKind::Argocd {
            r.invalid(
                &format!("platform.{}.ha", kind.key()),
                format!(
                    "`platform.{}.ha` is set, but only argocd has an HA install",
                    kind.key()
                ),
                "not an argocd setting",
                "remove it: the other services take their replicas from `workloads`",
            );
            ok = false;
        }
        services.push(PlatformService {
            kind,
            enabled,
            version,
            version_text: service.version.clone(),
            values: service.values.unwrap_or_default().into_iter().collect(),
            ha: service.ha,
        });
    }
    ok.then_some(Platform { services })
}

fn resolve_gitops(r: &mut Resolver, raw: &RawSettings, env: &str) -> Option<GitOps> {
    let default = Default::default();
    let g = raw.gitops.as_ref().unwrap_or(&default);
    let repository = r.parse(
        g.repository.as_ref(),
        "gitops.repository",
        "https://git.example.com/platform/apps.git",
        "repository URL",
        |t| {
            if is_git_url(t) {
                Ok(t.to_string())
            } else {
                Err(())
            }
        },
    );
    let revision = r.require(g.revision.clone(), "gitops.revision", "main");
    let path = r.require(g.path.clone(), "gitops.path", "environments/{environment}");
    if let Some(path) = &path
        && (path.starts_with('/') || path.split('/').any(|part| part == ".."))
    {
        r.invalid(
            "gitops.path",
            format!("`gitops.path` must be relative to the repository root, got `{path}`"),
            "not a relative path",
            "write a path such as `environments/{environment}`",
        );
    }
    Some(GitOps {
        repository: repository?,
        revision: revision?,
        path: path?.replace("{environment}", env),
    })
}

/// `https://…`, `ssh://…`, `git://…` or scp-like `git@host:org/repo.git`.
fn is_git_url(text: &str) -> bool {
    if let Ok(url) = url::Url::parse(text) {
        return matches!(url.scheme(), "https" | "http" | "ssh" | "git" | "file")
            && (url.host().is_some() || url.scheme() == "file");
    }
    match text.split_once(':') {
        Some((user_host, path)) => {
            user_host.contains('@') && !path.is_empty() && !path.starts_with("//")
        }
        None => false,
    }
}

fn resolve_workloads(r: &mut Resolver, raw: &RawSettings) -> Option<Workloads> {
    let default = Default::default();
    let w = raw.workloads.as_ref().unwrap_or(&default);
    let replicas = r.count(w.replicas, "workloads.replicas", "3");
    let resources = w.resources.clone().unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let request_cpu = r.cpu(
        requests.cpu.as_ref(),
        "workloads.resources.requests.cpu",
        "500m",
    );
    let request_memory = r.bytes(
        requests.memory.as_ref(),
        "workloads.resources.requests.memory",
        "512Mi",
    );
    let limit_cpu = r.cpu(
        limits.cpu.as_ref(),
        "workloads.resources.limits.cpu",
        "1000m",
    );
    let limit_memory = r.bytes(
        limits.memory.as_ref(),
        "workloads.resources.limits.memory",
        "1Gi",
    );
    let image_tag = r.require(w.image_tag.clone(), "workloads.image_tag", "1.4.2");
    // Reported at whichever of the two was written last (the layer that broke it).
    if let (Some(request), Some(limit)) = (request_cpu, limit_cpu)
        && request > limit
    {
        let at = r.latest(&[
            "workloads.resources.requests.cpu",
            "workloads.resources.limits.cpu",
        ]);
        r.invalid(
            at,
            format!("CPU request {request} is above the limit {limit}"),
            if at.contains("requests") {
                "above the limit"
            } else {
                "below the request"
            },
            "make the request at most the limit",
        );
    }
    if let (Some(request), Some(limit)) = (request_memory, limit_memory)
        && request > limit
    {
        let at = r.latest(&[
            "workloads.resources.requests.memory",
            "workloads.resources.limits.memory",
        ]);
        r.invalid(
            at,
            format!("memory request {request} is above the limit {limit}"),
            if at.contains("requests") {
                "above the limit"
            } else {
                "below the request"
            },
            "make the request at most the limit",
        );
    }
    Some(Workloads {
        replicas: replicas?,
        requests: ResourceList {
            cpu: request_cpu?,
            memory: request_memory?,
        },
        limits: ResourceList {
            cpu: limit_cpu?,
            memory: limit_memory?,
        },
        anti_affinity: w.anti_affinity.unwrap_or(false),
        image_tag: image_tag?,
        allow_empty_apps: w.allow_empty_apps.unwrap_or(false),
    })
}

fn resolve_namespaces(r: &mut Resolver, raw: &RawSettings) -> Option<Namespaces> {
    let default = Default::default();
    let n = raw.namespaces.as_ref().unwrap_or(&default);
    let pod_security = match n.pod_security {
        Some(RawPodSecurity::Privileged) => PodSecurity::Privileged,
        Some(RawPodSecurity::Baseline) => PodSecurity::Baseline,
        Some(RawPodSecurity::Restricted) | None => PodSecurity::Restricted,
    };
    let quota = match &n.quota {
        None => None,
        Some(q) => {
            let cpu = r.cpu(q.cpu.as_ref(), "namespaces.quota.cpu", "8");
            let memory = r.bytes(q.memory.as_ref(), "namespaces.quota.memory", "16Gi");
            let pods = r.count(q.pods, "namespaces.quota.pods", "50");
            Some(Quota {
                cpu: cpu?,
                memory: memory?,
                pods: pods?,
            })
        }
    };
    Some(Namespaces {
        pod_security,
        default_deny: n.default_deny.unwrap_or(true),
        quota,
    })
}

/// Two pairs whose node ranges overlap would hand the same address to two VMs. Each
/// overlap is reported at the pair configured later. A sort and sweep
/// (`overlapping_ranges`), not a check of every two pairs: hierarchies of thousands of
/// pairs are expected.
fn check_overlapping_ranges(clusters: &[(Cluster, &EffectiveConfig)], problems: &mut Problems) {
    // Each pair's node range, and each address of its machines outside it (a pinned
    // one, or one recorded before `network.nodes.start` moved) as a range of its own,
    // with the pair it belongs to and where to report it.
    let mut spans: Vec<(NodeRange, usize, String)> = Vec::new();
    for (index, (cluster, _)) in clusters.iter().enumerate() {
        let range = cluster.network.node_range;
        spans.push((range, index, "network.nodes.start".into()));
        for (address, path) in allocate::addresses_outside(cluster) {
            spans.push((
                NodeRange {
                    first: address,
                    count: 1,
                },
                index,
                path,
            ));
        }
    }
    let ranges: Vec<NodeRange> = spans.iter().map(|(range, _, _)| *range).collect();
    for (later, earlier) in super::network::overlapping_ranges(&ranges) {
        let (a_range, a_index, _) = &spans[earlier];
        let (b_range, b_index, b_path) = &spans[later];
        if a_index == b_index {
            continue;
        }
        let ((a, _), (b, b_effective)) = (&clusters[*a_index], &clusters[*b_index]);
        let origin = b_effective.node.origin_of(&KeyPath::parse(b_path));
        problems.push(
            Problem::error(
                "config::overlapping-ranges",
                format!(
                    "node range {b_range} of {} overlaps {a_range} of {}",
                    b.id(),
                    a.id()
                ),
            )
            .at(origin)
            .label(format!("overlaps {}", a.id()))
            .help("give every (environment, cluster) pair its own addresses: move `network.nodes.start` or use another subnet"),
        );
    }
}

/// A VIP answers for one cluster's API: shared by two pairs, or the address a node of
/// another pair is given, both clusters break. Reported at the pair configured later.
fn check_shared_vips(clusters: &[(Cluster, &EffectiveConfig)], problems: &mut Problems) {
    let mut vips: std::collections::HashMap<Ipv4Addr, usize> = std::collections::HashMap::new();
    // Node ranges by first address, to find the one that may hold a VIP.
    let mut ranges: Vec<(u32, usize)> = clusters
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (u32::from(c.network.node_range.first), i))
        .collect();
    ranges.sort_unstable();
    for (index, (cluster, effective)) in clusters.iter().enumerate() {
        let vip = cluster.network.vip;
        let path = KeyPath::parse("network.vip");
        if effective.is_unchecked(&path) {
            continue;
        }
        let origin = effective.node.origin_of(&path);
        if let Some(&first) = vips.get(&vip) {
            let other = &clusters[first].0;
            problems.push(
                Problem::error(
                    "config::shared-address",
                    format!(
                        "the VIP {vip} of {} is also the VIP of {}",
                        cluster.id(),
                        other.id()
                    ),
                )
                .at(origin)
                .label(format!("used by {}", other.id()))
                .help("give every (environment, cluster) pair its own VIP"),
            );
        } else {
            vips.insert(vip, index);
        }
        // The range starting closest below the VIP (ranges that overlap each other are
        // reported on their own).
        let at = ranges.partition_point(|(first, _)| *first <= u32::from(vip));
        if let Some(&(_, other)) = at.checked_sub(1).and_then(|i| ranges.get(i))
            && other != index
            && clusters[other].0.network.node_range.contains(vip)
        {
            let other = &clusters[other].0;
            problems.push(
                Problem::error(
                    "config::shared-address",
                    format!(
                        "the VIP {vip} of {} is a node address of {} ({})",
                        cluster.id(),
                        other.id(),
                        other.network.node_range
                    ),
                )
                .at(origin)
                .label(format!("a node of {} is given this address", other.id()))
                .help("move the VIP out of every pair's node range"),
            );
        }
    }
}

/// The origin of whichever of `paths` was set by the most specific layer (read last);
/// the first on a tie.
fn latest_origin(effective: &EffectiveConfig, paths: &[&str]) -> Origin {
    paths
        .iter()
        .filter_map(|p| effective.node.lookup(&KeyPath::parse(p)))
        .map(|n| n.origin)
        .reduce(|best, next| if next.file > best.file { next } else { best })
        .unwrap_or(effective.node.origin)
}

/// VM IDs are claimed from `proxmox.vmid_range` one VM at a time during apply: a range
/// too small failed half-way through, after creating the VMs that fit. A range must
/// hold a pair's VMs, and pairs on one Proxmox cluster whose ranges overlap share
/// their IDs: their VMs must fit in the IDs those ranges cover together. Each is
/// reported once per place, naming the pairs.
fn check_vmid_ranges(clusters: &[(Cluster, &EffectiveConfig)], problems: &mut Problems) {
    let ids = |p: &Proxmox| u64::from(p.vmid_end.saturating_sub(p.vmid_start)) + 1;
    // Alone: (place) → the range and the pairs it cannot hold, with their VMs.
    let mut alone: indexmap::IndexMap<Origin, (u32, u32, Vec<String>)> = Default::default();
    let mut fits = Vec::new();
    for (i, (cluster, effective)) in clusters.iter().enumerate() {
        let p = &cluster.proxmox;
        if p.vmid_start > p.vmid_end {
            // An empty range: reported on its own.
            continue;
        }
        if cluster.nodes.len() as u64 > ids(p) {
            let origin = latest_origin(
                effective,
                &["proxmox.vmid_range.end", "proxmox.vmid_range.start"],
            );
            alone
                .entry(origin)
                .or_insert_with(|| (p.vmid_start, p.vmid_end, Vec::new()))
                .2
                .push(format!("{} ({})", cluster.id(), cluster.nodes.len()));
        } else {
            fits.push(i);
        }
    }
    // A range too small alone says it all: its pairs are not counted again together.
    let reported: std::collections::HashSet<(&str, u32, u32)> = clusters
        .iter()
        .filter(|(c, _)| c.nodes.len() as u64 > ids(&c.proxmox))
        .map(|(c, _)| {
            (
                c.proxmox.endpoint.as_str(),
                c.proxmox.vmid_start,
                c.proxmox.vmid_end,
            )
        })
        .collect();
    fits.retain(|&i| {
        let p = &clusters[i].0.proxmox;
        !reported.contains(&(p.endpoint.as_str(), p.vmid_start, p.vmid_end))
    });
    for (origin, (start, end, pairs)) in alone {
        problems.push(
            Problem::error(
                "config::vmid-range-too-small",
                format!(
                    "`proxmox.vmid_range` {start}–{end} holds {} VM IDs, fewer than the VMs of {}",
                    u64::from(end - start) + 1,
                    pairs.join(", ")
                ),
            )
            .at(origin)
            .label("too few VM IDs")
            .help("widen the range: it needs one free ID per VM"),
        );
    }
    // Together: the pairs that fit alone, by Proxmox cluster, swept by range.
    let mut by_endpoint: indexmap::IndexMap<&str, Vec<usize>> = indexmap::IndexMap::new();
    for i in fits {
        by_endpoint
            .entry(clusters[i].0.proxmox.endpoint.as_str())
            .or_default()
            .push(i);
    }
    for (endpoint, mut order) in by_endpoint {
        order.sort_by_key(|&i| {
            let p = &clusters[i].0.proxmox;
            (p.vmid_start, p.vmid_end, i)
        });
        // A group of overlapping ranges, its reach, and its VMs.
        let mut group: Vec<usize> = Vec::new();
        let (mut start, mut end, mut vms) = (0u32, 0u32, 0u64);
        for i in order {
            let (cluster, effective) = &clusters[i];
            let p = &cluster.proxmox;
            if group.is_empty() || p.vmid_start > end {
                group.clear();
                (start, end, vms) = (p.vmid_start, p.vmid_end, 0);
            }
            end = end.max(p.vmid_end);
            vms += cluster.nodes.len() as u64;
            group.push(i);
            let ids = u64::from(end - start) + 1;
            if vms > ids {
                let names: Vec<String> = group.iter().map(|&g| clusters[g].0.id()).collect();
                problems.push(
                    Problem::error(
                        "config::vmid-range-too-small",
                        format!(
                            "{vms} VMs of {} share VM IDs {start}–{end} on {endpoint}, which hold {ids}",
                            names.join(", ")
                        ),
                    )
                    .at(latest_origin(
                        effective,
                        &["proxmox.vmid_range.end", "proxmox.vmid_range.start"],
                    ))
                    .label(format!("{} no longer fits", cluster.id()))
                    .help("widen the ranges, or give the pairs ranges of their own"),
                );
                // Once per group.
                group.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Selection, load_config};

    /// A complete one-environment, one-cluster configuration; `extra` is appended to the
    /// cluster file (later keys of a flow mapping are not allowed twice, so tests add
    /// keys the base leaves out, or override through `environments.dev`).
    const DEFAULTS: &str = "\
proxmox: {endpoint: 'https://pve:8006', token: 'root@pam!ci=s', nodes: [pve1], storage: local-lvm, bridge: vmbr0}
talos: {version: v1.13.9}
kubernetes: {version: 1.32.2}
control_plane: {count: 1, cpu: 2, memory: 4Gi, disk: 40Gi}
network: {nodes: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, start: 10.0.0.10}, vip: 10.0.0.5, pods: 10.244.0.0/16, services: 10.96.0.0/12}
gitops: {repository: 'https://git.example/apps.git', revision: main, path: apps}
workloads: {replicas: 1, image_tag: '1', resources: {requests: {cpu: 1, memory: 1Mi}, limits: {cpu: 1, memory: 1Mi}}}
";

    /// Load files written to a temporary directory (which must load cleanly) and resolve.
    fn resolve_files(files: &[(&str, &str)]) -> (Option<Model>, Vec<Problem>) {
        resolve_files_recorded(files, &RecordedMachines::new())
    }

    /// [`resolve_files`] with machines recorded in state.
    fn resolve_files_recorded(
        files: &[(&str, &str)],
        recorded: &RecordedMachines,
    ) -> (Option<Model>, Vec<Problem>) {
        struct NoVariables;
        impl crate::config::Variables for NoVariables {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let (config, problems) = load_config(dir.path(), &Selection::default(), &NoVariables);
        assert!(problems.is_empty(), "{problems:?}");
        let (model, problems) = resolve_model_with(&config, recorded);
        (model, problems.into_iter().collect())
    }

    fn resolve_with(cluster: &str) -> (Option<Model>, Vec<Problem>) {
        resolve_files(&[
            ("defaults/all.yaml", DEFAULTS),
            ("environments/dev.yaml", "clusters: [c]\n"),
            ("clusters/c.yaml", cluster),
        ])
    }

    /// dev/c resolved with `cluster` as its cluster file and `machines` (name, pool,
    /// address, node) recorded in state.
    fn resolve_recorded(
        cluster: &str,
        machines: &[(&str, &str, &str, Option<&str>)],
    ) -> (Option<Model>, Vec<Problem>) {
        let mut records = MachineRecords::default();
        for (name, pool, address, node) in machines {
            records.insert(
                "c",
                name,
                MachineIdentity {
                    pool: pool.to_string(),
                    address: address.parse().unwrap(),
                    node: node.map(str::to_string),
                    vmid: None,
                },
            );
        }
        let defaults = DEFAULTS.replace("nodes: [pve1]", "nodes: [pve1, pve2, pve3]");
        resolve_files_recorded(
            &[
                ("defaults/all.yaml", defaults.as_str()),
                ("environments/dev.yaml", "clusters: [c]\n"),
                ("clusters/c.yaml", cluster),
            ],
            &RecordedMachines::from([("dev".to_string(), records)]),
        )
    }

    /// (name, address) pairs.
    type Named = Vec<(String, String)>;

    /// (name, address) of every machine, and of every leaving one.
    fn addresses(model: &Model) -> (Named, Named) {
        let cluster = model.clusters().next().unwrap();
        let pairs = |items: Vec<(&String, Ipv4Addr)>| {
            items
                .into_iter()
                .map(|(name, address)| (name.clone(), address.to_string()))
                .collect()
        };
        (
            pairs(cluster.nodes.iter().map(|m| (&m.name, m.address)).collect()),
            pairs(
                cluster
                    .leaving
                    .iter()
                    .map(|m| (&m.name, m.address))
                    .collect(),
            ),
        )
    }

    fn named(pairs: &[(&str, &str)]) -> Named {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const WORKERS: &str = "workers: [{name: general, count: 1, cpu: 1, memory: 1Gi, disk: 1Gi}]\n";

    #[test]
    fn without_records_machines_take_consecutive_addresses_control_planes_first() {
        let (model, problems) = resolve_recorded(
            "control_plane: {count: 3}\nworkers: [{name: general, count: 2, cpu: 1, memory: 1Gi, disk: 1Gi}]\n",
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let model = model.unwrap();
        let (nodes, leaving) = addresses(&model);
        assert_eq!(
            nodes,
            named(&[
                ("cp-1", "10.0.0.10"),
                ("cp-2", "10.0.0.11"),
                ("cp-3", "10.0.0.12"),
                ("general-1", "10.0.0.13"),
                ("general-2", "10.0.0.14"),
            ])
        );
        assert!(leaving.is_empty());
        let cluster = model.clusters().next().unwrap();
        assert_eq!(
            cluster.network.node_range.to_string(),
            "10.0.0.10–10.0.0.14"
        );
        assert!(
            cluster
                .nodes
                .iter()
                .all(|m| !m.recorded && m.node.is_none())
        );
    }

    /// The lab's report: growing the control plane from 1 to 3 moved `general-1`.
    #[test]
    fn growing_one_pool_never_moves_another_pools_machines() {
        let recorded = [
            ("cp-1", "cp", "10.0.0.10", Some("pve1")),
            ("general-1", "general", "10.0.0.11", Some("pve2")),
        ];
        let (model, problems) = resolve_recorded(
            &format!("control_plane: {{count: 3}}\n{WORKERS}"),
            &recorded,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let model = model.unwrap();
        assert_eq!(
            addresses(&model).0,
            named(&[
                ("cp-1", "10.0.0.10"),
                ("cp-2", "10.0.0.12"),
                ("cp-3", "10.0.0.13"),
                ("general-1", "10.0.0.11"),
            ])
        );
        let cluster = model.clusters().next().unwrap();
        let general = cluster
            .nodes
            .iter()
            .find(|m| m.name == "general-1")
            .unwrap();
        assert!(general.recorded);
        assert_eq!(general.node.as_deref(), Some("pve2"));
        assert!(
            !cluster
                .nodes
                .iter()
                .find(|m| m.name == "cp-2")
                .unwrap()
                .recorded
        );
    }

    #[test]
    fn a_removed_machine_keeps_its_address_until_it_is_gone_and_new_ones_take_the_lowest_free() {
        // general-2 leaves while a control plane is added: the new one may not take
        // general-2's address, which its VM holds until the removal is applied.
        let recorded = [
            ("cp-1", "cp", "10.0.0.10", None),
            ("general-1", "general", "10.0.0.11", None),
            ("general-2", "general", "10.0.0.12", None),
        ];
        let (model, problems) = resolve_recorded(
            &format!("control_plane: {{count: 2}}\n{WORKERS}"),
            &recorded,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let (nodes, leaving) = addresses(&model.unwrap());
        assert_eq!(
            nodes,
            named(&[
                ("cp-1", "10.0.0.10"),
                ("cp-2", "10.0.0.13"),
                ("general-1", "10.0.0.11"),
            ])
        );
        assert_eq!(leaving, named(&[("general-2", "10.0.0.12")]));

        // Once general-2 is gone its address is the lowest free one again.
        let (model, problems) = resolve_recorded(
            &format!("control_plane: {{count: 2}}\n{WORKERS}"),
            &recorded[..2],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            addresses(&model.unwrap()).0,
            named(&[
                ("cp-1", "10.0.0.10"),
                ("cp-2", "10.0.0.12"),
                ("general-1", "10.0.0.11"),
            ])
        );
    }

    #[test]
    fn a_lowered_count_removes_the_highest_names_and_a_removed_pool_leaves_whole() {
        let recorded = [
            ("cp-1", "cp", "10.0.0.10", None),
            ("cp-2", "cp", "10.0.0.11", None),
            ("cp-3", "cp", "10.0.0.12", None),
            ("gpu-1", "gpu", "10.0.0.13", None),
        ];
        let (model, problems) = resolve_recorded(
            &format!("control_plane: {{count: 2}}\n{WORKERS}"),
            &recorded,
        );
        assert!(
            problems
                .iter()
                .all(|p| p.severity != crate::diag::Severity::Error),
            "{problems:?}"
        );
        let (nodes, leaving) = addresses(&model.unwrap());
        assert_eq!(
            nodes,
            named(&[
                ("cp-1", "10.0.0.10"),
                ("cp-2", "10.0.0.11"),
                ("general-1", "10.0.0.14"),
            ])
        );
        assert_eq!(
            leaving,
            named(&[("cp-3", "10.0.0.12"), ("gpu-1", "10.0.0.13")])
        );
    }

    #[test]
    fn pins_set_a_machines_address_and_node_and_new_machines_go_around_them() {
        let (model, problems) = resolve_recorded(
            "control_plane: {count: 2, machines: {cp-1: {address: 10.0.0.11}, cp-2: {node: pve3}}}\n",
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let model = model.unwrap();
        assert_eq!(
            addresses(&model).0,
            named(&[("cp-1", "10.0.0.11"), ("cp-2", "10.0.0.10")])
        );
        let cluster = model.clusters().next().unwrap();
        assert_eq!(cluster.nodes[1].node.as_deref(), Some("pve3"));
        assert_eq!(cluster.nodes[0].node, None);
    }

    #[test]
    fn bad_pins_are_reported_at_the_pin() {
        let recorded = [("cp-1", "cp", "10.0.0.10", None)];
        for (pins, message, line) in [
            (
                "cp-3: {address: 10.0.0.20}",
                "`cp-3` is not a machine of pool `cp`, which has 2 (cp-1, cp-2)",
                "cp-3",
            ),
            (
                "cp-2: {address: 10.0.0.10}",
                "`10.0.0.10` pinned for `cp-2` is the address of `cp-1`",
                "cp-2",
            ),
            (
                "cp-2: {address: 10.0.0.5}",
                "`10.0.0.5` pinned for `cp-2` is the VIP",
                "cp-2",
            ),
            (
                "cp-2: {address: 10.0.1.5}",
                "`10.0.1.5` pinned for `cp-2` is outside the node network 10.0.0.0/24",
                "cp-2",
            ),
            (
                "cp-2: {node: pve9}",
                "`cp-2` is pinned to Proxmox node `pve9`, which is not in `proxmox.nodes`",
                "cp-2",
            ),
        ] {
            let cluster = format!("control_plane:\n  count: 2\n  machines:\n    {pins}\n");
            let (model, problems) = resolve_recorded(&cluster, &recorded);
            assert!(model.is_none(), "{pins}");
            assert_eq!(problems.len(), 1, "{pins}: {problems:?}");
            assert_eq!(problems[0].message, message);
            // Reported in the cluster file, on the pin's line.
            let origin = problems[0].origin.unwrap();
            assert_eq!(origin.line, 4, "{pins}: {line}");
        }
    }

    #[test]
    fn a_recorded_address_the_network_no_longer_holds_is_an_error_with_the_way_out() {
        let (model, problems) = resolve_recorded("", &[("cp-1", "cp", "10.9.0.10", None)]);
        assert!(model.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].message,
            "machine `cp-1` has the address 10.9.0.10 (recorded in state), outside the node network 10.0.0.0/24"
        );
        assert!(
            problems[0]
                .help
                .as_deref()
                .unwrap()
                .contains("`control_plane.machines.cp-1.address`"),
            "{problems:?}"
        );
    }

    #[test]
    fn node_range_problems_show_with_the_others() {
        let defaults = DEFAULTS.replace("token: 'root@pam!ci=s', ", "");
        let (model, problems) = resolve_files(&[
            ("defaults/all.yaml", defaults.as_str()),
            ("environments/dev.yaml", "clusters: [c]\n"),
            ("clusters/c.yaml", "network: {vip: 10.0.0.10}\n"),
        ]);
        assert!(model.is_none());
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages.contains(&"the VIP 10.0.0.10 is inside the node range 10.0.0.10"),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("proxmox.token")),
            "{messages:?}"
        );
    }

    #[test]
    fn the_minimal_configuration_resolves() {
        let (model, problems) =
            resolve_with("workers: [{name: w, count: 2, cpu: 1, memory: 1Gi, disk: 1Gi}]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(model.unwrap().clusters().next().unwrap().nodes.len(), 3);
    }

    #[test]
    fn huge_node_counts_are_problems_not_overflows() {
        // Two pools of u32::MAX / 2 + 1 used to overflow the node total (a panic in debug
        // builds) or allocate billions of machines.
        let (model, problems) = resolve_with(
            "workers:\n  - {name: a, count: 2147483648, cpu: 1, memory: 1Gi, disk: 1Gi}\n  - {name: b, count: 2147483648, cpu: 1, memory: 1Gi, disk: 1Gi}\n",
        );
        assert!(model.is_none());
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages
                .contains(&"`workers[0].count` is 2147483648, more nodes than a cluster can have"),
            "{messages:?}"
        );
        let (_, problems) = resolve_with("control_plane: {count: 4294967295}\n");
        assert_eq!(
            problems[0].message,
            "`control_plane.count` is 4294967295, more nodes than a cluster can have"
        );
    }

    #[test]
    fn only_argocd_has_an_ha_setting() {
        let (model, problems) = resolve_with(
            "platform: {argocd: {enabled: true, version: v3.5.1, ha: true}, cilium: {ha: false}}\n",
        );
        assert!(model.is_none());
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            ["`platform.cilium.ha` is set, but only argocd has an HA install"]
        );
        let (model, problems) =
            resolve_with("platform: {argocd: {enabled: true, version: v3.5.1, ha: true}}\n");
        assert!(problems.is_empty(), "{problems:?}");
        let model = model.unwrap();
        let platform = &model.clusters().next().unwrap().platform;
        assert_eq!(
            platform.service(ServiceKind::Argocd).unwrap().ha,
            Some(true)
        );
    }

    #[test]
    fn huge_cpu_numbers_are_problems_not_overflows() {
        let (model, problems) = resolve_with(
            "environments: {dev: {workloads: {resources: {requests: {cpu: 9223372036854775807}}}}}\n",
        );
        assert!(model.is_none());
        assert_eq!(
            problems[0].message,
            "malformed CPU quantity `9223372036854775807` in `workloads.resources.requests.cpu`"
        );
    }

    #[test]
    fn a_key_missing_from_a_shared_layer_is_reported_once_at_its_parent_key() {
        let defaults = DEFAULTS.replace("endpoint: 'https://pve:8006', ", "");
        let (model, problems) = resolve_files(&[
            ("defaults/all.yaml", defaults.as_str()),
            ("environments/dev.yaml", "clusters: [a, b]\n"),
            ("environments/prod.yaml", "clusters: [a]\n"),
            (
                "clusters/a.yaml",
                "environments: {prod: {network: {nodes: {start: 10.0.0.100}, vip: 10.0.0.6}}}\n",
            ),
            (
                "clusters/b.yaml",
                "network: {nodes: {start: 10.0.0.200}, vip: 10.0.0.7}\n",
            ),
        ]);
        assert!(model.is_none());
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            problems[0].message,
            "missing required key `proxmox.endpoint` for 3 (environment, cluster) pairs: dev/a, dev/b, prod/a"
        );
        // At `proxmox:` (line 1, column 1 of defaults/all.yaml), not at its first value.
        let origin = problems[0].origin.unwrap();
        assert_eq!((origin.line, origin.column), (1, 1));
    }

    #[test]
    fn an_ssh_image_upload_resolves_with_its_defaults() {
        let (model, problems) = resolve_with(
            "environments: {dev: {proxmox: {image_upload: {method: ssh, private_key_file: /keys/pve, known_hosts: /keys/known_hosts, hosts: {pve1: 192.0.2.11}}}}}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let model = model.unwrap();
        let upload = model
            .clusters()
            .next()
            .unwrap()
            .proxmox
            .image_upload
            .clone();
        assert_eq!(
            upload,
            Some(SshImageUpload {
                user: "root".into(),
                port: 22,
                private_key_file: "/keys/pve".into(),
                host_key: HostKey::KnownHosts("/keys/known_hosts".into()),
                hosts: [("pve1".to_string(), "192.0.2.11".to_string())].into(),
                source_dir: "images".into(),
                import_dir: None,
            })
        );
        let (model, _) = resolve_with("");
        assert_eq!(
            model
                .unwrap()
                .clusters()
                .next()
                .unwrap()
                .proxmox
                .image_upload,
            None
        );
    }

    #[test]
    fn an_ssh_image_upload_without_host_key_verification_is_refused() {
        let (model, problems) = resolve_with(
            "environments: {dev: {proxmox: {image_upload: {method: ssh, private_key_file: /keys/pve}}}}\n",
        );
        assert!(model.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("needs a way to verify the nodes' host keys"),
            "{problems:?}"
        );
    }

    #[test]
    fn api_tokens_have_user_realm_id_and_secret() {
        assert!(is_api_token("root@pam!infraflux=0f2c"));
        for bad in ["root@pam", "root!x=y", "root@pam!=y", "root@pam!x="] {
            assert!(!is_api_token(bad), "{bad}");
        }
    }

    #[test]
    fn git_urls_accept_https_ssh_and_scp_forms() {
        for good in [
            "https://github.com/org/apps.git",
            "ssh://git@host/org/apps",
            "git@github.com:org/apps.git",
        ] {
            assert!(is_git_url(good), "{good}");
        }
        for bad in ["apps", "github.com/org/apps", "ftp://host/x"] {
            assert!(!is_git_url(bad), "{bad}");
        }
    }
}
