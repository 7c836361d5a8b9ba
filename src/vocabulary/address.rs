//! Resource addresses: `<environment>/<cluster>/<type>.<name>`, e.g.
//! `prod/workload/proxmox_vm.cp-1`. Typed, with one canonical string form used in
//! state, plans, the graph and on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceAddr {
    pub environment: String,
    pub cluster: String,
    /// Resource type, e.g. `proxmox_vm`.
    pub kind: String,
    pub name: String,
}

impl ResourceAddr {
    pub fn new(
        environment: impl Into<String>,
        cluster: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ResourceAddr {
            environment: environment.into(),
            cluster: cluster.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}.{}",
            self.environment, self.cluster, self.kind, self.name
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid resource address `{input}`: expected <environment>/<cluster>/<type>.<name>, e.g. prod/workload/proxmox_vm.cp-1"
)]
pub struct AddrParseError {
    pub input: String,
}

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FromStr for ResourceAddr {
    type Err = AddrParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || AddrParseError {
            input: input.to_string(),
        };
        let mut parts = input.splitn(3, '/');
        let (Some(environment), Some(cluster), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(error());
        };
        let (kind, name) = resource.split_once('.').ok_or_else(error)?;
        if ![environment, cluster, kind, name]
            .iter()
            .all(|p| valid_part(p))
            || kind.contains('.')
            || environment.contains('.')
            || cluster.contains('.')
        {
            return Err(error());
        }
        Ok(ResourceAddr::new(environment, cluster, kind, name))
    }
}

impl Serialize for ResourceAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_canonically() {
        let addr: ResourceAddr = "prod/workload/proxmox_vm.cp-1".parse().unwrap();
        assert_eq!(
            addr,
            ResourceAddr::new("prod", "workload", "proxmox_vm", "cp-1")
        );
        assert_eq!(addr.to_string(), "prod/workload/proxmox_vm.cp-1");
        // Names may contain dots (e.g. a version); the type may not.
        let addr: ResourceAddr = "dev/edge/proxmox_image.v1.13.9".parse().unwrap();
        assert_eq!(addr.name, "v1.13.9");
        for bad in [
            "prod/workload",
            "prod/workload/proxmox_vm",
            "prod//x.y",
            "a/b/c.d/e",
            "p rod/w/x.y",
        ] {
            assert!(bad.parse::<ResourceAddr>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(env in "[a-z][a-z0-9-]{0,8}", cluster in "[a-z][a-z0-9_-]{0,8}", kind in "[a-z_]{1,12}", name in "[a-z0-9][a-z0-9.-]{0,10}") {
            let addr = ResourceAddr::new(env, cluster, kind, name);
            prop_assert_eq!(addr.to_string().parse::<ResourceAddr>().unwrap(), addr);
        }
    }
}
