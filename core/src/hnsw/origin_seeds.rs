//! Where L2 and L1 scans of a cosine-linked graph start besides the descent:
//! the index's elements nearest the origin.
//!
//! A high-dimensional sparse vector shares few coordinates with most others,
//! and for those `|q - x|² = |q|² + |x|²` (and `|q - x|₁ = |q|₁ + |x|₁`): a
//! query's nearest by L2 or L1 are partly the elements that share its
//! coordinates and partly the elements of smallest norm anywhere, whatever
//! their coordinates. On 3,000 SPLADE-like vectors about half of each
//! query's 10 nearest by L2 were among the 10 smallest of the whole index.
//! The graph is linked by the cosine (`space::links_by_cosine`), which knows
//! nothing of norms, so no walk from the query's neighbourhood leads to
//! them. The index therefore keeps the `ORIGIN_SEEDS` elements nearest the
//! origin under its metric (kept by inserts, refreshed by VACUUM), and a
//! scan starts from them as well as from where its descent ends.

use super::layout::LayoutError;
use crate::space::{ElementKind, Metric};

/// Elements kept: above the 10 a typical `LIMIT` asks for, well below the
/// `ef_search` a scan expands, so the seeds cost a scan a few distances.
pub const ORIGIN_SEEDS: usize = 32;

/// Bytes of the stored list: a count, then `ORIGIN_SEEDS` slots of a packed
/// element reference (u64) and its distance to the origin (f32). Fixed size,
/// so the list is rewritten in place.
pub const ORIGIN_SEEDS_BYTES: usize = 4 + ORIGIN_SEEDS * 12;

/// Whether an index keeps origin seeds: only cosine-linked graphs queried
/// by a metric in which the origin matters.
pub fn kept_by(metric: Metric, links_by_cosine: bool) -> bool {
    links_by_cosine && matches!(metric, Metric::L2Squared | Metric::L1)
}

/// An element's distance to the origin under `metric` (its squared L2 norm
/// or its L1 norm): a sparse vector with no entries, or dense zeros.
pub fn distance_to_origin(kind: ElementKind, metric: Metric, vector: &[u8]) -> f32 {
    let origin = match kind {
        ElementKind::Sparse => Vec::new(),
        _ => vec![0u8; vector.len()],
    };
    crate::space::distance_raw(kind, metric, vector, &origin)
}

/// The elements nearest the origin, nearest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginSeeds {
    entries: Vec<(u64, f32)>,
}

impl OriginSeeds {
    pub fn nodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.0)
    }

    /// (element, distance to the origin), nearest first.
    pub fn entries(&self) -> impl Iterator<Item = (u64, f32)> + '_ {
        self.entries.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an element at `distance` from the origin would be kept.
    pub fn would_keep(&self, distance: f32) -> bool {
        distance.is_finite()
            && (self.entries.len() < ORIGIN_SEEDS || self.entries.last().map(|e| distance < e.1).unwrap_or(true))
    }

    /// Keeps `node` if it is among the nearest; true when the list changed.
    pub fn offer(&mut self, node: u64, distance: f32) -> bool {
        if !self.would_keep(distance) || self.entries.iter().any(|e| e.0 == node) {
            return false;
        }
        let at = self.entries.partition_point(|e| e.1 <= distance);
        self.entries.insert(at, (node, distance));
        self.entries.truncate(ORIGIN_SEEDS);
        true
    }

    /// Drops the elements `keep` refuses (VACUUM: the deleted ones).
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.entries.retain(|e| keep(e.0));
    }

    pub fn to_bytes(&self) -> [u8; ORIGIN_SEEDS_BYTES] {
        let mut b = [0u8; ORIGIN_SEEDS_BYTES];
        b[..4].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (i, (node, d)) in self.entries.iter().enumerate() {
            let o = 4 + i * 12;
            b[o..o + 8].copy_from_slice(&node.to_le_bytes());
            b[o + 8..o + 12].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    /// The list as stored; a wrong size, a count past the slots or a list
    /// out of order is an error (the caller names the index).
    pub fn from_bytes(b: &[u8]) -> Result<Self, LayoutError> {
        if b.len() != ORIGIN_SEEDS_BYTES {
            return Err(LayoutError::Truncated { need: ORIGIN_SEEDS_BYTES, have: b.len() });
        }
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if n > ORIGIN_SEEDS {
            return Err(LayoutError::BadCode("origin seed count"));
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let o = 4 + i * 12;
            let node = u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
            let d = f32::from_le_bytes(b[o + 8..o + 12].try_into().expect("4 bytes"));
            if !d.is_finite() || entries.last().map(|&(_, p): &(u64, f32)| d < p).unwrap_or(false) {
                return Err(LayoutError::BadCode("origin seed distance"));
            }
            entries.push((node, d));
        }
        Ok(OriginSeeds { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_nearest_in_order_and_no_more() {
        let mut s = OriginSeeds::default();
        for i in 0..100u64 {
            s.offer(i, ((i * 37) % 100) as f32);
        }
        assert_eq!(s.len(), ORIGIN_SEEDS);
        let kept: Vec<u64> = s.nodes().collect();
        let mut want: Vec<u64> = (0..100u64).collect();
        want.sort_by_key(|i| (i * 37) % 100);
        assert_eq!(kept, want[..ORIGIN_SEEDS]);
        assert!(!s.offer(1000, 99.0), "farther than all kept");
        assert!(!s.offer(kept[0], 0.0), "already kept");
        assert!(s.offer(1000, -1.0));
        assert_eq!(s.nodes().next(), Some(1000));
        assert!(!s.offer(2000, f32::NAN));
    }

    #[test]
    fn round_trips_and_refuses_damaged_lists() {
        let mut s = OriginSeeds::default();
        s.offer(7, 2.0);
        s.offer(9, 1.0);
        let b = s.to_bytes();
        assert_eq!(OriginSeeds::from_bytes(&b).unwrap(), s);
        assert!(OriginSeeds::from_bytes(&b[..10]).is_err());
        let mut bad = b;
        bad[0] = 200;
        assert!(OriginSeeds::from_bytes(&bad).is_err());
        let mut swapped = b;
        swapped[12..16].copy_from_slice(&5.0f32.to_le_bytes());
        assert!(OriginSeeds::from_bytes(&swapped).is_err(), "out of order");
    }

    #[test]
    fn retain_drops_and_distance_to_origin_is_the_norm() {
        let mut s = OriginSeeds::default();
        for i in 0..5u64 {
            s.offer(i, i as f32);
        }
        s.retain(|n| n % 2 == 0);
        assert_eq!(s.nodes().collect::<Vec<_>>(), vec![0, 2, 4]);
        // sparse {3: 3.0, 8: -4.0}: indices then values
        let mut v = Vec::new();
        for i in [3u32, 8] {
            v.extend_from_slice(&i.to_le_bytes());
        }
        for x in [3.0f32, -4.0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(distance_to_origin(ElementKind::Sparse, Metric::L2Squared, &v), 25.0);
        assert_eq!(distance_to_origin(ElementKind::Sparse, Metric::L1, &v), 7.0);
        assert!(kept_by(Metric::L1, true) && !kept_by(Metric::Cosine, true) && !kept_by(Metric::L2Squared, false));
    }
}
