//! PVE property strings (`local-lvm:0,discard=on,size=40G`, `virtio,bridge=vmbr0`), read
//! and written by the simulator on its own: it does not borrow the client's parsers, so
//! the two can disagree, and a disagreement shows up as a failing lab run.

/// A property string: an optional leading bare value, then `key=value` pairs in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyString {
    pub head: Option<String>,
    pub pairs: Vec<(String, String)>,
}

impl PropertyString {
    pub fn parse(text: &str) -> Self {
        let mut property = PropertyString::default();
        for (index, part) in text.split(',').enumerate() {
            match part.split_once('=') {
                Some((key, value)) => property.pairs.push((key.to_string(), value.to_string())),
                None if index == 0 => property.head = Some(part.to_string()),
                None => property.pairs.push((part.to_string(), String::new())),
            }
        }
        property
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((key.to_string(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(index).1)
    }
}

impl std::fmt::Display for PropertyString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.head.iter().cloned().collect();
        parts.extend(self.pairs.iter().map(|(k, v)| format!("{k}={v}")));
        f.write_str(&parts.join(","))
    }
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// `40G`, `512M`, `4096K`, `1T`, or bytes, as PVE writes disk sizes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], Some(c.to_ascii_uppercase())),
        _ => (text, None),
    };
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        None => 1,
        Some('K') => KIB,
        Some('M') => MIB,
        Some('G') => GIB,
        Some('T') => GIB * 1024,
        Some(_) => return None,
    };
    Some((number * factor as f64) as u64)
}

/// Bytes as PVE prints a size: the largest unit that divides it (`40G`, `4M`).
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [('T', GIB * 1024), ('G', GIB), ('M', MIB), ('K', KIB)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// Tags as PVE stores them: split on `;`, `,` or spaces, sorted, duplicates removed.
pub fn normalize_tags(text: &str) -> String {
    let mut tags: Vec<&str> = text
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_strings_round_trip() {
        let text = "local-lvm:0,discard=on,import-from=local:import/talos.raw";
        let mut drive = PropertyString::parse(text);
        assert_eq!(drive.head.as_deref(), Some("local-lvm:0"));
        assert_eq!(drive.get("import-from"), Some("local:import/talos.raw"));
        assert_eq!(drive.to_string(), text);
        drive.remove("import-from");
        drive.set("size", "40G");
        assert_eq!(drive.to_string(), "local-lvm:0,discard=on,size=40G");
    }

    #[test]
    fn sizes_and_tags_as_pve_writes_them() {
        assert_eq!(parse_size("40G"), Some(40 * GIB));
        assert_eq!(parse_size("512M"), Some(512 * MIB));
        assert_eq!(parse_size("1.5G"), Some(3 * GIB / 2));
        assert_eq!(format_size(40 * GIB), "40G");
        assert_eq!(format_size(4 * MIB), "4M");
        assert_eq!(
            normalize_tags("prod;infraflux,dev prod"),
            "dev;infraflux;prod"
        );
    }
}
