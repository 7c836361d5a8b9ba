//! Typed PVE property strings: `netN`, `scsiN` (any drive), `ipconfigN`, `agent`, tags
//! and disk sizes.
//!
//! Each type parses what PVE returns (any key order, aliases, `1`/`on`/`yes` booleans)
//! and formats one canonical form, so `parse(format(x)) == x`. Comparison is a separate
//! question: [`NetDevice::matches`] and friends compare a *desired* value with what PVE
//! reports, with PVE's defaults filled in and server-assigned values (a generated MAC,
//! the volume name a new disk got) accepted — reordering or those values are never drift.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{kind}` property string `{input}`: {reason}")]
pub struct ParseError {
    pub kind: &'static str,
    pub input: String,
    pub reason: String,
}

fn error(kind: &'static str, input: &str, reason: impl Into<String>) -> ParseError {
    ParseError {
        kind,
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// `key=value` items of a property string, in order; a bare item has no key.
fn items(input: &str) -> Vec<(Option<&str>, &str)> {
    input
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, value)) => (Some(key), value),
            None => (None, part),
        })
        .collect()
}

/// PVE's boolean spellings (`PVE::JSONSchema::parse_boolean`).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

fn format_bool(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

fn bool_item(kind: &'static str, input: &str, key: &str, value: &str) -> Result<bool, ParseError> {
    parse_bool(value).ok_or_else(|| error(kind, input, format!("`{key}` is not a boolean")))
}

fn number_item<T: std::str::FromStr>(
    kind: &'static str,
    input: &str,
    key: &str,
    value: &str,
) -> Result<T, ParseError> {
    value
        .parse()
        .map_err(|_| error(kind, input, format!("`{key}` is not a number")))
}

fn push_opt(out: &mut Vec<String>, key: &str, value: Option<impl fmt::Display>) {
    if let Some(value) = value {
        out.push(format!("{key}={value}"));
    }
}

// ---- disk size -------------------------------------------------------------------

/// A disk size in bytes, written as PVE writes it: the largest unit that divides it
/// (`40G`, `512M`, `528K`), plain bytes otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskSize(pub u64);

const KIB: u64 = 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;

impl DiskSize {
    pub fn from_gib(gib: u64) -> Self {
        DiskSize(gib * GIB)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole GiB, rounded up (a 1.5 GiB image needs a 2 GiB disk).
    pub fn gib_ceil(self) -> u64 {
        self.0.div_ceil(GIB)
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let (number, unit) = match input.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&input[..i], Some(c.to_ascii_uppercase())),
            _ => (input, None),
        };
        let multiplier = match unit {
            None => 1,
            Some('K') => KIB,
            Some('M') => KIB * KIB,
            Some('G') => GIB,
            Some('T') => GIB * KIB,
            Some(_) => return Err(error("size", input, "unknown unit (K, M, G or T)")),
        };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(error("size", input, "not a number"));
        }
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(DiskSize)
                .ok_or_else(|| error("size", input, "too large"));
        }
        let fraction: f64 = number
            .parse()
            .map_err(|_| error("size", input, "not a number"))?;
        Ok(DiskSize((fraction * multiplier as f64) as u64))
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [('T', GIB * KIB), ('G', GIB), ('M', KIB * KIB), ('K', KIB)] {
            if self.0 != 0 && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

// ---- netN ------------------------------------------------------------------------

/// NIC models PVE knows; `<model>=<mac>` is how PVE writes the first item.
pub const NET_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// `netN`: `virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=10`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetDevice {
    pub model: String,
    /// Upper case. `None` when creating: PVE generates one.
    pub macaddr: Option<String>,
    pub bridge: Option<String>,
    pub tag: Option<u16>,
    pub firewall: Option<bool>,
    pub link_down: Option<bool>,
    pub mtu: Option<u16>,
    pub queues: Option<u8>,
    pub rate: Option<String>,
    pub trunks: Option<String>,
    /// Keys this type does not model, kept so nothing is lost on a round trip.
    pub extra: BTreeMap<String, String>,
}

impl NetDevice {
    pub fn virtio(bridge: impl Into<String>) -> Self {
        NetDevice {
            model: "virtio".into(),
            bridge: Some(bridge.into()),
            ..NetDevice::default()
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        const KIND: &str = "net";
        let mut net = NetDevice::default();
        for (key, value) in items(input) {
            match key {
                None if NET_MODELS.contains(&value) => net.model = value.to_string(),
                None => return Err(error(KIND, input, format!("unknown model `{value}`"))),
                Some(model) if NET_MODELS.contains(&model) => {
                    net.model = model.to_string();
                    net.macaddr = Some(value.to_ascii_uppercase());
                }
                Some("model") => net.model = value.to_string(),
                Some("macaddr") => net.macaddr = Some(value.to_ascii_uppercase()),
                Some("bridge") => net.bridge = Some(value.to_string()),
                Some("tag") => net.tag = Some(number_item(KIND, input, "tag", value)?),
                Some("firewall") => net.firewall = Some(bool_item(KIND, input, "firewall", value)?),
                Some("link_down") => {
                    net.link_down = Some(bool_item(KIND, input, "link_down", value)?)
                }
                Some("mtu") => net.mtu = Some(number_item(KIND, input, "mtu", value)?),
                Some("queues") => net.queues = Some(number_item(KIND, input, "queues", value)?),
                Some("rate") => net.rate = Some(value.to_string()),
                Some("trunks") => net.trunks = Some(value.to_string()),
                Some(other) => {
                    net.extra.insert(other.to_string(), value.to_string());
                }
            }
        }
        if net.model.is_empty() {
            return Err(error(KIND, input, "no model (e.g. `virtio`)"));
        }
        Ok(net)
    }

    /// Whether `actual` (as PVE reports it) satisfies this desired device: a MAC left
    /// unset is PVE's to choose; `firewall` and `link_down` default to off.
    pub fn matches(&self, actual: &NetDevice) -> bool {
        let off = |v: Option<bool>| v.unwrap_or(false);
        self.model == actual.model
            && (self.macaddr.is_none() || self.macaddr == actual.macaddr)
            && self.bridge == actual.bridge
            && self.tag == actual.tag
            && off(self.firewall) == off(actual.firewall)
            && off(self.link_down) == off(actual.link_down)
            && self.mtu == actual.mtu
            && self.queues == actual.queues
            && self.rate == actual.rate
            && self.trunks == actual.trunks
            && self.extra == actual.extra
    }
}

impl fmt::Display for NetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keyed = Vec::new();
        push_opt(&mut keyed, "bridge", self.bridge.as_ref());
        push_opt(&mut keyed, "firewall", self.firewall.map(format_bool));
        push_opt(&mut keyed, "link_down", self.link_down.map(format_bool));
        push_opt(&mut keyed, "mtu", self.mtu);
        push_opt(&mut keyed, "queues", self.queues);
        push_opt(&mut keyed, "rate", self.rate.as_ref());
        push_opt(&mut keyed, "tag", self.tag);
        push_opt(&mut keyed, "trunks", self.trunks.as_ref());
        keyed.extend(self.extra.iter().map(|(k, v)| format!("{k}={v}")));
        keyed.sort();
        match &self.macaddr {
            Some(mac) => write!(f, "{}={mac}", self.model)?,
            None => f.write_str(&self.model)?,
        }
        for item in keyed {
            write!(f, ",{item}")?;
        }
        Ok(())
    }
}

// ---- drives (scsiN, efidisk0, ide2 …) ------------------------------------------

/// A drive: `local-lvm:vm-100-disk-0,discard=on,iothread=1,size=40G`, or when creating
/// `local-lvm:0,import-from=local:import/talos.raw` (a new volume on `local-lvm`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drive {
    /// `storage:volume`, `storage:size-in-GiB` for a new one, `none` or `cdrom`.
    pub volume: String,
    pub size: Option<DiskSize>,
    pub discard: Option<String>,
    pub iothread: Option<bool>,
    pub ssd: Option<bool>,
    pub import_from: Option<String>,
    pub cache: Option<String>,
    pub format: Option<String>,
    pub media: Option<String>,
    pub backup: Option<bool>,
    pub replicate: Option<bool>,
    pub extra: BTreeMap<String, String>,
}

impl Drive {
    pub fn new(volume: impl Into<String>) -> Self {
        Drive {
            volume: volume.into(),
            ..Drive::default()
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        const KIND: &str = "drive";
        let mut drive = Drive::default();
        for (key, value) in items(input) {
            match key {
                None | Some("file") | Some("volume") => drive.volume = value.to_string(),
                Some("size") => drive.size = Some(DiskSize::parse(value)?),
                Some("discard") => drive.discard = Some(value.to_string()),
                Some("iothread") => {
                    drive.iothread = Some(bool_item(KIND, input, "iothread", value)?)
                }
                Some("ssd") => drive.ssd = Some(bool_item(KIND, input, "ssd", value)?),
                Some("import-from") => drive.import_from = Some(value.to_string()),
                Some("cache") => drive.cache = Some(value.to_string()),
                Some("format") => drive.format = Some(value.to_string()),
                Some("media") => drive.media = Some(value.to_string()),
                Some("backup") => drive.backup = Some(bool_item(KIND, input, "backup", value)?),
                Some("replicate") => {
                    drive.replicate = Some(bool_item(KIND, input, "replicate", value)?)
                }
                Some(other) => {
                    drive.extra.insert(other.to_string(), value.to_string());
                }
            }
        }
        if drive.volume.is_empty() {
            return Err(error(KIND, input, "no volume"));
        }
        Ok(drive)
    }

    /// The storage of `storage:volume`, if the drive names one.
    pub fn storage(&self) -> Option<&str> {
        let (storage, _) = self.volume.split_once(':')?;
        (!storage.is_empty() && !self.volume.starts_with('/')).then_some(storage)
    }

    /// `storage:<number>`: a volume PVE allocates (and names) on create.
    pub fn is_new_volume(&self) -> bool {
        self.volume.split_once(':').is_some_and(|(_, rest)| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
    }

    /// Whether `actual` satisfies this desired drive, with PVE's defaults filled in
    /// (`discard=ignore`, `iothread=0`, `ssd=0`, `backup=1`, `replicate=1`,
    /// `media=disk`). The name PVE gave a new volume and the `import-from` instruction
    /// (consumed on create) are not compared; a size or format left unset is not either.
    pub fn matches(&self, actual: &Drive) -> bool {
        let volume = if self.is_new_volume() {
            self.storage() == actual.storage()
        } else {
            self.volume == actual.volume
        };
        let or = |v: Option<bool>, default: bool| v.unwrap_or(default);
        let text = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
        volume
            && (self.size.is_none() || self.size == actual.size)
            && text(&self.discard, "ignore") == text(&actual.discard, "ignore")
            && or(self.iothread, false) == or(actual.iothread, false)
            && or(self.ssd, false) == or(actual.ssd, false)
            && self.cache == actual.cache
            && (self.format.is_none() || self.format == actual.format)
            && text(&self.media, "disk") == text(&actual.media, "disk")
            && or(self.backup, true) == or(actual.backup, true)
            && or(self.replicate, true) == or(actual.replicate, true)
            && self.extra == actual.extra
    }
}

impl fmt::Display for Drive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keyed = Vec::new();
        push_opt(&mut keyed, "backup", self.backup.map(format_bool));
        push_opt(&mut keyed, "cache", self.cache.as_ref());
        push_opt(&mut keyed, "discard", self.discard.as_ref());
        push_opt(&mut keyed, "format", self.format.as_ref());
        push_opt(&mut keyed, "import-from", self.import_from.as_ref());
        push_opt(&mut keyed, "iothread", self.iothread.map(format_bool));
        push_opt(&mut keyed, "media", self.media.as_ref());
        push_opt(&mut keyed, "replicate", self.replicate.map(format_bool));
        push_opt(&mut keyed, "size", self.size);
        push_opt(&mut keyed, "ssd", self.ssd.map(format_bool));
        keyed.extend(self.extra.iter().map(|(k, v)| format!("{k}={v}")));
        keyed.sort();
        f.write_str(&self.volume)?;
        for item in keyed {
            write!(f, ",{item}")?;
        }
        Ok(())
    }
}

// ---- ipconfigN -------------------------------------------------------------------

/// `ipconfigN`: `ip=10.0.0.10/24,gw=10.0.0.1` (cloud-init network settings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpConfig {
    /// `a.b.c.d/len` or `dhcp`.
    pub ip: Option<String>,
    pub gw: Option<String>,
    pub ip6: Option<String>,
    pub gw6: Option<String>,
}

impl IpConfig {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut config = IpConfig::default();
        for (key, value) in items(input) {
            let slot = match key {
                Some("ip") => &mut config.ip,
                Some("gw") => &mut config.gw,
                Some("ip6") => &mut config.ip6,
                Some("gw6") => &mut config.gw6,
                _ => {
                    return Err(error(
                        "ipconfig",
                        input,
                        "expected ip=, gw=, ip6= or gw6= items",
                    ));
                }
            };
            *slot = Some(value.to_string());
        }
        Ok(config)
    }

    pub fn matches(&self, actual: &IpConfig) -> bool {
        self == actual
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        push_opt(&mut out, "ip", self.ip.as_ref());
        push_opt(&mut out, "gw", self.gw.as_ref());
        push_opt(&mut out, "ip6", self.ip6.as_ref());
        push_opt(&mut out, "gw6", self.gw6.as_ref());
        f.write_str(&out.join(","))
    }
}

// ---- agent -----------------------------------------------------------------------

/// `agent`: `1`, or `enabled=1,fstrim_cloned_disks=1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agent {
    pub enabled: bool,
    pub freeze_fs: Option<bool>,
    pub fstrim_cloned_disks: Option<bool>,
    /// `virtio` (PVE's default) or `isa`.
    pub agent_type: Option<String>,
}

impl Agent {
    pub fn enabled(enabled: bool) -> Self {
        Agent {
            enabled,
            ..Agent::default()
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        const KIND: &str = "agent";
        let mut agent = Agent::default();
        for (key, value) in items(input) {
            match key {
                None | Some("enabled") => agent.enabled = bool_item(KIND, input, "enabled", value)?,
                Some("freeze-fs") | Some("freeze-fs-on-backup") | Some("guest-fsfreeze") => {
                    agent.freeze_fs = Some(bool_item(KIND, input, "freeze-fs", value)?)
                }
                Some("fstrim_cloned_disks") => {
                    agent.fstrim_cloned_disks =
                        Some(bool_item(KIND, input, "fstrim_cloned_disks", value)?)
                }
                Some("type") => agent.agent_type = Some(value.to_string()),
                Some(other) => return Err(error(KIND, input, format!("unknown key `{other}`"))),
            }
        }
        Ok(agent)
    }

    /// With PVE's defaults: `freeze-fs=1`, `fstrim_cloned_disks=0`, `type=virtio`.
    pub fn matches(&self, actual: &Agent) -> bool {
        let kind = |a: &Agent| a.agent_type.clone().unwrap_or_else(|| "virtio".into());
        self.enabled == actual.enabled
            && self.freeze_fs.unwrap_or(true) == actual.freeze_fs.unwrap_or(true)
            && self.fstrim_cloned_disks.unwrap_or(false)
                == actual.fstrim_cloned_disks.unwrap_or(false)
            && kind(self) == kind(actual)
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.freeze_fs.is_none()
            && self.fstrim_cloned_disks.is_none()
            && self.agent_type.is_none()
        {
            return f.write_str(format_bool(self.enabled));
        }
        let mut out = vec![format!("enabled={}", format_bool(self.enabled))];
        push_opt(&mut out, "freeze-fs", self.freeze_fs.map(format_bool));
        push_opt(
            &mut out,
            "fstrim_cloned_disks",
            self.fstrim_cloned_disks.map(format_bool),
        );
        push_opt(&mut out, "type", self.agent_type.as_ref());
        f.write_str(&out.join(","))
    }
}

// ---- tags ------------------------------------------------------------------------

/// Tags as PVE stores them: lower case, sorted, no duplicates, written `a;b`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn new<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut tags: Vec<String> = tags
            .into_iter()
            .map(|t| t.as_ref().trim().to_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        tags.sort();
        tags.dedup();
        Tags(tags)
    }

    /// PVE accepts `;`, `,` and spaces between tags.
    pub fn parse(input: &str) -> Self {
        Tags::new(input.split([';', ',', ' ']))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// PVE's tag syntax: `[a-z0-9_][a-z0-9_\-+.]*`.
    pub fn invalid(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|t| {
                let mut chars = t.chars();
                !chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    || !chars.all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c))
            })
            .map(String::as_str)
    }
}

impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(";"))
    }
}

/// `memory` is `4096` or, since PVE 8.1, `current=4096`.
pub fn parse_memory_mib(input: &str) -> Option<u64> {
    input
        .split(',')
        .find_map(|item| match item.split_once('=') {
            Some(("current", value)) => Some(value),
            None => Some(item),
            _ => None,
        })?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn net_parses_what_pve_returns_in_any_order() {
        let net =
            NetDevice::parse("virtio=bc:24:11:0a:0b:0c,firewall=1,bridge=vmbr0,tag=10").unwrap();
        assert_eq!(net.model, "virtio");
        assert_eq!(net.macaddr.as_deref(), Some("BC:24:11:0A:0B:0C"));
        assert_eq!(net.bridge.as_deref(), Some("vmbr0"));
        assert_eq!(net.tag, Some(10));
        assert_eq!(net.firewall, Some(true));
        assert_eq!(
            net.to_string(),
            "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,firewall=1,tag=10"
        );
        let alias =
            NetDevice::parse("model=virtio,macaddr=BC:24:11:0A:0B:0C,bridge=vmbr0").unwrap();
        assert_eq!(alias.to_string(), "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0");
        assert!(NetDevice::parse("bridge=vmbr0").is_err());
        assert!(NetDevice::parse("virtio,tag=banana").is_err());
    }

    #[test]
    fn a_generated_mac_and_default_firewall_are_not_drift() {
        let desired = NetDevice {
            tag: Some(10),
            ..NetDevice::virtio("vmbr0")
        };
        let actual =
            NetDevice::parse("virtio=BC:24:11:AA:BB:CC,tag=10,bridge=vmbr0,firewall=0").unwrap();
        assert!(desired.matches(&actual));
        let moved = NetDevice::parse("virtio=BC:24:11:AA:BB:CC,bridge=vmbr1,tag=10").unwrap();
        assert!(!desired.matches(&moved));
        let untagged = NetDevice::parse("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0").unwrap();
        assert!(!desired.matches(&untagged));
        let pinned = NetDevice {
            macaddr: Some("BC:24:11:00:00:01".into()),
            ..desired
        };
        assert!(!pinned.matches(&actual));
    }

    #[test]
    fn drives_compare_with_server_assigned_names_and_defaults() {
        let desired = Drive {
            size: Some(DiskSize::from_gib(40)),
            discard: Some("on".into()),
            import_from: Some("local:import/talos.raw".into()),
            ..Drive::new("local-lvm:0")
        };
        assert!(desired.is_new_volume());
        assert_eq!(
            desired.to_string(),
            "local-lvm:0,discard=on,import-from=local:import/talos.raw,size=40G"
        );
        let actual = Drive::parse("local-lvm:vm-100-disk-0,size=40G,discard=on,backup=1").unwrap();
        assert_eq!(actual.storage(), Some("local-lvm"));
        assert!(desired.matches(&actual));
        let grown = Drive::parse("local-lvm:vm-100-disk-0,discard=on,size=41G").unwrap();
        assert!(!desired.matches(&grown));
        let elsewhere = Drive::parse("ceph:vm-100-disk-0,discard=on,size=40G").unwrap();
        assert!(!desired.matches(&elsewhere));
        let file = Drive::parse("file=local-lvm:vm-100-disk-0,iothread=on").unwrap();
        assert_eq!(file.iothread, Some(true));
        assert_eq!(file.to_string(), "local-lvm:vm-100-disk-0,iothread=1");
    }

    #[test]
    fn sizes_use_the_largest_whole_unit() {
        assert_eq!(DiskSize::parse("40G").unwrap(), DiskSize::from_gib(40));
        assert_eq!(DiskSize::parse("1T").unwrap().to_string(), "1T");
        assert_eq!(DiskSize::parse("528K").unwrap().to_string(), "528K");
        assert_eq!(DiskSize::parse("1536M").unwrap().to_string(), "1536M");
        assert_eq!(DiskSize::parse("1.5G").unwrap().to_string(), "1536M");
        assert_eq!(DiskSize::parse("1.5G").unwrap().gib_ceil(), 2);
        assert_eq!(DiskSize::parse("1000").unwrap().to_string(), "1000");
        assert_eq!(DiskSize(0).to_string(), "0");
        assert!(DiskSize::parse("G").is_err());
        assert!(DiskSize::parse("12X").is_err());
    }

    #[test]
    fn ipconfig_agent_tags_and_memory() {
        let ip = IpConfig::parse("gw=10.0.0.1,ip=10.0.0.10/24").unwrap();
        assert_eq!(ip.to_string(), "ip=10.0.0.10/24,gw=10.0.0.1");
        assert!(IpConfig::parse("address=1").is_err());
        assert_eq!(Agent::parse("1").unwrap(), Agent::enabled(true));
        let agent = Agent::parse("enabled=1,fstrim_cloned_disks=1").unwrap();
        assert_eq!(agent.to_string(), "enabled=1,fstrim_cloned_disks=1");
        assert!(Agent::enabled(true).matches(&Agent::parse("1,type=virtio,freeze-fs=1").unwrap()));
        assert!(!Agent::enabled(true).matches(&Agent::parse("0").unwrap()));
        let tags = Tags::parse("prod;Infraflux,cp infraflux");
        assert_eq!(tags.to_string(), "cp;infraflux;prod");
        assert_eq!(Tags::new(["b", "a"]), Tags::parse("a;b"));
        assert_eq!(Tags::new(["ok", "-bad"]).invalid(), Some("-bad"));
        assert_eq!(parse_memory_mib("4096"), Some(4096));
        assert_eq!(parse_memory_mib("current=2048"), Some(2048));
        assert_eq!(parse_memory_mib("lots"), None);
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,7}"
    }

    fn mac() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<u8>(), 6).prop_map(|b| {
            b.iter()
                .map(|x| format!("{x:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
    }

    fn extra(known: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("x[a-z]{1,6}", word(), 0..3)
            .prop_filter("no known key", move |m| {
                m.keys().all(|k| !known.contains(&k.as_str()))
            })
    }

    prop_compose! {
        fn net()(
            model in proptest::sample::select(NET_MODELS),
            macaddr in proptest::option::of(mac()),
            bridge in proptest::option::of("vmbr[0-9]{1,2}"),
            tag in proptest::option::of(1u16..4095),
            firewall in proptest::option::of(any::<bool>()),
            link_down in proptest::option::of(any::<bool>()),
            mtu in proptest::option::of(1u16..9000),
            queues in proptest::option::of(0u8..64),
            rate in proptest::option::of("[0-9]{1,3}"),
            trunks in proptest::option::of("[0-9]{1,3}(;[0-9]{1,3}){0,2}"),
            extra in extra(&[]),
        ) -> NetDevice {
            NetDevice { model: model.to_string(), macaddr, bridge, tag, firewall, link_down, mtu, queues, rate, trunks, extra }
        }
    }

    prop_compose! {
        fn drive()(
            storage in word(),
            name in "(vm-[0-9]{3}-disk-[0-9]|[0-9]{1,3}|import/[a-z]{1,8}\\.raw)",
            size in proptest::option::of(0u64..(1 << 44)),
            discard in proptest::option::of(proptest::sample::select(vec!["on", "ignore"])),
            iothread in proptest::option::of(any::<bool>()),
            ssd in proptest::option::of(any::<bool>()),
            import_from in proptest::option::of("[a-z]{1,5}:import/[a-z]{1,8}\\.raw"),
            cache in proptest::option::of(proptest::sample::select(vec!["none", "writeback"])),
            format in proptest::option::of(proptest::sample::select(vec!["raw", "qcow2"])),
            media in proptest::option::of(proptest::sample::select(vec!["disk", "cdrom"])),
            backup in proptest::option::of(any::<bool>()),
            replicate in proptest::option::of(any::<bool>()),
            extra in extra(&[]),
        ) -> Drive {
            Drive {
                volume: format!("{storage}:{name}"),
                size: size.map(DiskSize),
                discard: discard.map(str::to_string),
                iothread, ssd, import_from,
                cache: cache.map(str::to_string),
                format: format.map(str::to_string),
                media: media.map(str::to_string),
                backup, replicate, extra,
            }
        }
    }

    fn ipv4() -> impl Strategy<Value = String> {
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, l)| format!("{}.{}.{}.{}/{l}", a[0], a[1], a[2], a[3]))
    }

    proptest! {
        #[test]
        fn net_round_trips(x in net()) {
            prop_assert_eq!(NetDevice::parse(&x.to_string()).unwrap(), x.clone());
            prop_assert!(x.matches(&x));
        }

        #[test]
        fn drive_round_trips(x in drive()) {
            prop_assert_eq!(Drive::parse(&x.to_string()).unwrap(), x.clone());
            prop_assert!(x.matches(&x));
        }

        #[test]
        fn size_round_trips(bytes in 0u64..(1 << 50)) {
            prop_assert_eq!(DiskSize::parse(&DiskSize(bytes).to_string()).unwrap(), DiskSize(bytes));
        }

        #[test]
        fn ipconfig_round_trips(
            ip in proptest::option::of(prop_oneof![ipv4(), Just("dhcp".to_string())]),
            gw in proptest::option::of("10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.1"),
            ip6 in proptest::option::of(Just("fd00::10/64".to_string())),
            gw6 in proptest::option::of(Just("fd00::1".to_string())),
        ) {
            let x = IpConfig { ip, gw, ip6, gw6 };
            prop_assert_eq!(IpConfig::parse(&x.to_string()).unwrap(), x);
        }

        #[test]
        fn agent_round_trips(
            enabled in any::<bool>(),
            freeze_fs in proptest::option::of(any::<bool>()),
            fstrim_cloned_disks in proptest::option::of(any::<bool>()),
            agent_type in proptest::option::of(proptest::sample::select(vec!["virtio".to_string(), "isa".to_string()])),
        ) {
            let x = Agent { enabled, freeze_fs, fstrim_cloned_disks, agent_type };
            prop_assert_eq!(Agent::parse(&x.to_string()).unwrap(), x);
        }

        #[test]
        fn tags_round_trip_and_ignore_order(tags in proptest::collection::vec("[a-z0-9_][a-z0-9_.+-]{0,6}", 0..5)) {
            let x = Tags::new(&tags);
            prop_assert_eq!(Tags::parse(&x.to_string()), x.clone());
            let mut reversed = tags.clone();
            reversed.reverse();
            prop_assert_eq!(Tags::new(&reversed), x.clone());
            prop_assert_eq!(x.invalid(), None);
        }

        #[test]
        fn reordered_net_items_are_not_drift(x in net()) {
            let text = x.to_string();
            let mut parts: Vec<&str> = text.split(',').collect();
            parts.reverse();
            let reordered = NetDevice::parse(&parts.join(",")).unwrap();
            prop_assert!(x.matches(&reordered));
        }
    }
}
