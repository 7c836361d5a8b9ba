//! Kubernetes-style quantities: byte sizes (`512Mi`, `4Gi`, `1G`) and CPU (`500m`, `2`).

use std::fmt;

use serde::Serialize;

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    pub fn mebibytes(self) -> u64 {
        self.0.div_ceil(Self::MIB)
    }

    /// Whole GiB, rounded up (Proxmox sizes disks in G).
    pub fn gibibytes(self) -> u64 {
        self.0.div_ceil(Self::GIB)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// CPU in thousandths of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MilliCpu(pub u64);

impl fmt::Display for MilliCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed quantity `{0}`")]
pub struct QuantityError(pub String);

/// Split `1.5Gi` into (1.5, "Gi").
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    number.parse::<f64>().ok().map(|n| (n, suffix))
}

/// Parse a byte size: a plain number of bytes, or a number with a binary (`Ki Mi Gi Ti Pi
/// Ei`) or decimal (`k M G T P E`) suffix.
pub fn parse_bytes(text: &str) -> Result<Bytes, QuantityError> {
    let error = || QuantityError(text.to_string());
    let (number, suffix) = split_number(text).ok_or_else(error)?;
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return Err(error()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(error());
    }
    Ok(Bytes(bytes as u64))
}

/// Parse CPU: `500m`, `2`, `1.5`.
pub fn parse_cpu(text: &str) -> Result<MilliCpu, QuantityError> {
    let error = || QuantityError(text.to_string());
    let (number, suffix) = split_number(text).ok_or_else(error)?;
    let millis = match suffix {
        "m" => number,
        "" => number * 1000.0,
        _ => return Err(error()),
    };
    if !millis.is_finite() || millis >= u64::MAX as f64 || millis.fract() != 0.0 {
        return Err(error());
    }
    Ok(MilliCpu(millis as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_sizes_accept_kubernetes_units() {
        assert_eq!(parse_bytes("512Mi").unwrap(), Bytes(512 << 20));
        assert_eq!(parse_bytes("4Gi").unwrap(), Bytes(4 << 30));
        assert_eq!(parse_bytes("1.5Gi").unwrap(), Bytes(3 << 29));
        assert_eq!(parse_bytes("1G").unwrap(), Bytes(1_000_000_000));
        assert_eq!(parse_bytes("1024").unwrap(), Bytes(1024));
        for bad in ["4GB", "Gi", "", "-1Gi", "1.Gi", "4 gi", "0.5"] {
            assert!(parse_bytes(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn cpu_accepts_millicores_and_cores() {
        assert_eq!(parse_cpu("500m").unwrap(), MilliCpu(500));
        assert_eq!(parse_cpu("2").unwrap(), MilliCpu(2000));
        assert_eq!(parse_cpu("1.5").unwrap(), MilliCpu(1500));
        assert!(parse_cpu("2cores").is_err());
        assert!(parse_cpu("0.5m").is_err());
    }

    proptest! {
        #[test]
        fn byte_sizes_round_trip_through_display(n in 0u64..1 << 40) {
            let bytes = Bytes(n);
            prop_assert_eq!(parse_bytes(&bytes.to_string()).unwrap(), bytes);
        }

        #[test]
        fn parsers_never_panic(text in ".{0,12}") {
            let _ = parse_bytes(&text);
            let _ = parse_cpu(&text);
        }
    }
}
