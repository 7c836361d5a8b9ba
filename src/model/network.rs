//! Node address ranges and the checks that keep clusters from stepping on each other.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

/// `first` and the `count - 1` addresses after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct NodeRange {
    pub first: Ipv4Addr,
    pub count: u32,
}

impl NodeRange {
    /// The last address, or `None` when the range runs past 255.255.255.255.
    pub fn last(&self) -> Option<Ipv4Addr> {
        let span = self.count.checked_sub(1)?;
        u32::from(self.first).checked_add(span).map(Ipv4Addr::from)
    }

    pub fn nth(&self, index: u32) -> Option<Ipv4Addr> {
        (index < self.count)
            .then(|| u32::from(self.first).checked_add(index).map(Ipv4Addr::from))
            .flatten()
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let (first, value) = (u32::from(self.first), u32::from(address));
        value >= first && self.last().is_some_and(|last| value <= u32::from(last))
    }

    pub fn overlaps(&self, other: &NodeRange) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => {
                u32::from(self.first) <= u32::from(b_last)
                    && u32::from(other.first) <= u32::from(a_last)
            }
            _ => false,
        }
    }
}

impl fmt::Display for NodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last() {
            Some(last) if self.count > 1 => write!(f, "{}–{}", self.first, last),
            _ => write!(f, "{}", self.first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: &str, count: u32) -> NodeRange {
        NodeRange {
            first: first.parse().unwrap(),
            count,
        }
    }

    #[test]
    fn ranges_know_their_bounds_and_overlaps() {
        let a = range("10.0.0.10", 3);
        assert_eq!(a.last(), Some("10.0.0.12".parse().unwrap()));
        assert!(a.contains("10.0.0.12".parse().unwrap()));
        assert!(!a.contains("10.0.0.13".parse().unwrap()));
        assert!(a.overlaps(&range("10.0.0.12", 5)));
        assert!(!a.overlaps(&range("10.0.0.13", 5)));
        assert_eq!(a.to_string(), "10.0.0.10–10.0.0.12");
        assert_eq!(range("255.255.255.255", 2).last(), None);
    }
}
