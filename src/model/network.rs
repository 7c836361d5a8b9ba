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

/// Ranges that overlap another, as `(later, earlier)` index pairs (by position in
/// `ranges`): every range that overlaps any other appears in at least one pair, with one
/// pair per range found overlapping the ranges sorted before it, so the result stays
/// small (not every overlapping pair) and is found in O(n log n) by sorting on the first
/// address and sweeping with the range that reaches furthest so far. Ranges that run
/// past 255.255.255.255 have no last address and are left out (they are reported as
/// not fitting their network).
pub fn overlapping_ranges(ranges: &[NodeRange]) -> Vec<(usize, usize)> {
    let mut order: Vec<(u32, u32, usize)> = ranges
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((u32::from(r.first), u32::from(r.last()?), i)))
        .collect();
    order.sort_unstable();
    let mut pairs = Vec::new();
    // (last address, index) of the range reaching furthest among those seen.
    let mut furthest: Option<(u32, usize)> = None;
    for (first, last, index) in order {
        match furthest {
            Some((reach, holder)) if first <= reach => {
                pairs.push((index.max(holder), index.min(holder)));
                if last > reach {
                    furthest = Some((last, index));
                }
            }
            _ => furthest = Some((last, index)),
        }
    }
    pairs.sort_unstable();
    pairs
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
    use proptest::prelude::*;

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

    #[test]
    fn the_sweep_reports_later_ranges_against_the_one_they_overlap() {
        let ranges = [
            range("10.0.0.10", 6),       // 0: .10–.15
            range("10.0.1.10", 8),       // 1: another subnet
            range("10.0.0.12", 8),       // 2: .12–.19, overlaps 0
            range("10.0.0.30", 1),       // 3: alone
            range("10.0.0.8", 3),        // 4: .8–.10, overlaps 0
            range("255.255.255.255", 2), // 5: no last address
        ];
        assert_eq!(overlapping_ranges(&ranges), [(2, 0), (4, 0)]);
        assert!(overlapping_ranges(&[]).is_empty());
    }

    fn any_range() -> impl Strategy<Value = NodeRange> {
        // A small address space, so that overlaps are common.
        (0u32..64, 1u32..8).prop_map(|(first, count)| NodeRange {
            first: Ipv4Addr::from(0x0a00_0000 + first),
            count,
        })
    }

    proptest! {
        #[test]
        fn the_sweep_finds_every_range_the_pairwise_check_finds(
            ranges in prop::collection::vec(any_range(), 0..24)
        ) {
            let pairs = overlapping_ranges(&ranges);
            for (later, earlier) in &pairs {
                prop_assert!(later > earlier);
                prop_assert!(ranges[*later].overlaps(&ranges[*earlier]));
            }
            for (i, a) in ranges.iter().enumerate() {
                let overlaps_another = ranges
                    .iter()
                    .enumerate()
                    .any(|(j, b)| i != j && a.overlaps(b));
                let reported = pairs.iter().any(|(x, y)| *x == i || *y == i);
                prop_assert_eq!(overlaps_another, reported, "range {} of {:?}", i, ranges);
            }
        }
    }
}
