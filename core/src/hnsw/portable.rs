//! The built graph of an index in a form that outlives its pages: the
//! graph records of a snapshot (see `crate::snapshot`). Elements are named
//! by the id of their row, not by heap TIDs (a restored table puts its rows
//! elsewhere), and their neighbours by the element's page position in the
//! original index, which a restore maps to the new element order.
//!
//! ```text
//! graph record payload  u8 part | u32 shard (hash partition remainder, 0 unsharded) | part body
//! part 1 (header, once per shard, first)  meta item bytes (layout::Meta, 40) |
//!        u32 center length | center bytes (f16 per dimension; 0 bytes unless binary)
//! part 2 (elements)  u32 count | per element: u32 block | u16 offset | i64 row id |
//!        u8 level, +128 when the element's row is not in the snapshot (the id is then 0) |
//!        per level 0..=level: u8 n | n x (u32 block | u16 offset)
//! ```
//! Elements of rows the snapshot does not hold (deleted or updated rows the
//! index still links, as VACUUM has not run) are exported for their links
//! only: a restore leaves them out and links across them, as VACUUM's
//! repair would. Rows without an element are left for the caller to insert
//! (`Relinked::rest`).

use super::fasthash::IdHashMap;
use super::layout::{ItemRef, Meta, META_SIZE};
use super::{Params, MAX_LEVEL};

pub const PART_HEADER: u8 = 1;
pub const PART_ELEMENTS: u8 = 2;
const NO_ROW: u8 = 128;

/// One element as exported: where it was, whose row it indexes, its links.
#[derive(Debug, Clone, PartialEq)]
pub struct PortableElement {
    pub at: ItemRef,
    /// None: the element's row is not in the snapshot
    pub id: Option<i64>,
    /// neighbours per level, 0 first; the element's level is `len() - 1`
    pub neighbors: Vec<Vec<ItemRef>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GraphPart {
    Header { shard: u32, meta: Meta, center: Vec<u8> },
    Elements { shard: u32, elements: Vec<PortableElement> },
}

fn put_ref(r: ItemRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.block.to_le_bytes());
    out.extend_from_slice(&r.offset.to_le_bytes());
}

pub fn encode_header(shard: u32, meta: &Meta, center: &[u8], out: &mut Vec<u8>) {
    out.push(PART_HEADER);
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&meta.to_bytes());
    out.extend_from_slice(&(center.len() as u32).to_le_bytes());
    out.extend_from_slice(center);
}

pub fn encode_elements(shard: u32, elements: &[PortableElement], out: &mut Vec<u8>) {
    out.push(PART_ELEMENTS);
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&(elements.len() as u32).to_le_bytes());
    for e in elements {
        assert!(!e.neighbors.is_empty() && e.neighbors.len() <= MAX_LEVEL + 1, "element level");
        put_ref(e.at, out);
        out.extend_from_slice(&e.id.unwrap_or(0).to_le_bytes());
        out.push((e.neighbors.len() - 1) as u8 | if e.id.is_none() { NO_ROW } else { 0 });
        for level in &e.neighbors {
            out.push(u8::try_from(level.len()).expect("at most 255 neighbours per level"));
            for r in level {
                put_ref(*r, out);
            }
        }
    }
}

/// A bounds-checked reader over one payload.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or("graph record ends early")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn item_ref(&mut self) -> Result<ItemRef, String> {
        let b = self.take(6)?;
        Ok(ItemRef {
            block: u32::from_le_bytes(b[0..4].try_into().expect("4")),
            offset: u16::from_le_bytes([b[4], b[5]]),
        })
    }
}

pub fn decode(payload: &[u8]) -> Result<GraphPart, String> {
    let mut c = Cursor { b: payload, at: 0 };
    let part = c.u8()?;
    let shard = c.u32()?;
    let out = match part {
        PART_HEADER => {
            let meta = Meta::from_bytes(c.take(META_SIZE)?).map_err(|e| format!("graph header: {e}"))?;
            let n = c.u32()? as usize;
            let center = c.take(n)?.to_vec();
            GraphPart::Header { shard, meta, center }
        }
        PART_ELEMENTS => {
            let count = c.u32()? as usize;
            // each element takes at least 16 bytes: a lying count fails here, not in an allocation
            if count > payload.len() / 16 {
                return Err("graph record counts more elements than it holds".into());
            }
            let mut elements = Vec::with_capacity(count);
            for _ in 0..count {
                let at = c.item_ref()?;
                let id = i64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
                let flags = c.u8()?;
                let id = (flags & NO_ROW == 0).then_some(id);
                let level = (flags & !NO_ROW) as usize;
                if level > MAX_LEVEL {
                    return Err(format!("graph element level {level} is above {MAX_LEVEL}"));
                }
                let mut neighbors = Vec::with_capacity(level + 1);
                for _ in 0..=level {
                    let n = c.u8()? as usize;
                    let mut l = Vec::with_capacity(n);
                    for _ in 0..n {
                        l.push(c.item_ref()?);
                    }
                    neighbors.push(l);
                }
                elements.push(PortableElement { at, id, neighbors });
            }
            GraphPart::Elements { shard, elements }
        }
        p => return Err(format!("unknown graph record part {p}")),
    };
    if c.at != payload.len() {
        return Err("graph record has trailing bytes".into());
    }
    Ok(out)
}

/// Highest item offset any page can hold (MaxOffsetNumber of 32 kB pages).
const MAX_OFFSET: u16 = 8192;

/// Checks the graph records of a snapshot as they are read, so that a
/// crafted file whose checksums are right but whose graph is not (links on
/// a level their target does not have, links to itself or to positions no
/// page can hold, more links than the index allows, elements without their
/// header, one position twice) is refused before anything is restored.
/// Links to positions the snapshot does not hold are allowed: an export
/// under concurrent writes drops elements it never saw, and the restore
/// drops links to them. Memory: one entry per element, one per link above
/// level 0.
#[derive(Default)]
pub struct GraphCheck {
    shards: IdHashMap<u32, ShardCheck>,
}

#[derive(Default)]
struct ShardCheck {
    params: Option<Params>,
    levels: IdHashMap<u64, u8>,
    /// (from, level, to) of every link above level 0, checked at the end
    upper: Vec<(ItemRef, u8, ItemRef)>,
}

fn valid_position(r: &ItemRef) -> bool {
    r.block != 0 && r.offset != 0 && r.offset <= MAX_OFFSET
}

impl GraphCheck {
    pub fn add(&mut self, part: &GraphPart) -> Result<(), String> {
        match part {
            GraphPart::Header { shard, meta, .. } => {
                let s = self.shards.entry(*shard).or_default();
                if s.params.is_some() {
                    return Err(format!("graph of shard {shard} has two headers"));
                }
                if meta.m < 2 || meta.m > 100 || (meta.ef_construction as usize) < 2 * meta.m as usize {
                    return Err(format!(
                        "graph of shard {shard} has impossible parameters (m {}, ef_construction {})",
                        meta.m, meta.ef_construction
                    ));
                }
                if let Some((e, _)) = meta.entry {
                    if !valid_position(&e) {
                        return Err(format!(
                            "graph of shard {shard} has its entry point at ({},{}), where no element can be",
                            e.block, e.offset
                        ));
                    }
                }
                s.params = Some(meta.params());
            }
            GraphPart::Elements { shard, elements } => {
                let s = self
                    .shards
                    .get_mut(shard)
                    .filter(|s| s.params.is_some())
                    .ok_or_else(|| format!("graph elements of shard {shard} come before its header"))?;
                let params = s.params.expect("checked");
                for e in elements {
                    let at = e.at;
                    if !valid_position(&at) {
                        return Err(format!("graph element at ({},{}), where no element can be", at.block, at.offset));
                    }
                    if s.levels.insert(at.pack(), (e.neighbors.len() - 1) as u8).is_some() {
                        return Err(format!("graph has two elements at ({},{})", at.block, at.offset));
                    }
                    for (level, list) in e.neighbors.iter().enumerate() {
                        if list.len() > params.max_neighbors(level) {
                            return Err(format!(
                                "graph element ({},{}) has {} links on level {level}, the index allows {}",
                                at.block,
                                at.offset,
                                list.len(),
                                params.max_neighbors(level)
                            ));
                        }
                        for (i, t) in list.iter().enumerate() {
                            if *t == at || !valid_position(t) || list[..i].contains(t) {
                                return Err(format!(
                                    "graph element ({},{}) has an impossible link on level {level} to ({},{})",
                                    at.block, at.offset, t.block, t.offset
                                ));
                            }
                            if level > 0 {
                                s.upper.push((at, level as u8, *t));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The checks that need the whole graph: each link above level 0 leads
    /// to an element that has that level.
    pub fn finish(self) -> Result<(), String> {
        for s in self.shards.values() {
            for (from, level, to) in &s.upper {
                if let Some(&l) = s.levels.get(&to.pack()) {
                    if l < *level {
                        return Err(format!(
                            "graph element ({},{}) links on level {level} to ({},{}), which has level {l}",
                            from.block, from.offset, to.block, to.offset
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The graph over a restored table's rows, in the shape the index build
/// writes: element k is row `order[k]`.
#[derive(Debug, Default, PartialEq)]
pub struct Relinked {
    pub order: Vec<usize>,
    /// per element, per level, neighbours as element numbers (a list may
    /// be longer than the level allows where it links across left-out
    /// elements: the caller prunes it)
    pub links: Vec<Vec<Vec<u32>>>,
    pub levels: Vec<u8>,
    /// (element, level) to start searches from
    pub entry: Option<(u32, usize)>,
    /// rows no exported element indexes (the caller inserts them)
    pub rest: Vec<usize>,
    /// per element: lost more than half its links on some level to elements
    /// left out (the new version of an updated row, whose only close
    /// neighbour was its old version): the caller links it again
    pub damaged: Vec<bool>,
}

/// Maps an exported graph onto the rows of a restored table (`row_ids[i]`
/// is the id of row i, None if unknown). `entry` is the exported entry
/// point. Errors when the graph does not fit `params` (a snapshot of an
/// index of another shape): the caller builds instead.
pub fn relink(
    params: &Params,
    entry: Option<(ItemRef, u16)>,
    elements: &[PortableElement],
    row_ids: &[Option<i64>],
) -> Result<Relinked, String> {
    let mut row_of: IdHashMap<i64, usize> = IdHashMap::default();
    row_of.reserve(row_ids.len());
    for (i, id) in row_ids.iter().enumerate() {
        if let Some(id) = id {
            row_of.insert(*id, i);
        }
    }
    let mut out = Relinked::default();
    let mut taken = vec![false; row_ids.len()];
    let mut kept = Vec::new(); // exported element per new element
    let mut number: IdHashMap<u64, u32> = IdHashMap::default();
    number.reserve(elements.len());
    for e in elements {
        let level = e.neighbors.len().checked_sub(1).ok_or("graph element without levels")?;
        if level > MAX_LEVEL {
            return Err(format!("graph element level {level} is above {MAX_LEVEL}"));
        }
        for (l, list) in e.neighbors.iter().enumerate() {
            if list.len() > params.max_neighbors(l) {
                return Err(format!(
                    "graph element has {} neighbours on level {l}, the index allows {}",
                    list.len(),
                    params.max_neighbors(l)
                ));
            }
        }
        let Some(&row) = e.id.and_then(|id| row_of.get(&id)) else { continue };
        if taken[row] || number.contains_key(&e.at.pack()) {
            continue; // one element per row and per position
        }
        taken[row] = true;
        number.insert(e.at.pack(), out.order.len() as u32);
        out.order.push(row);
        out.levels.push(level as u8);
        kept.push(e);
    }
    // the elements left out, to link across
    let left_out: IdHashMap<u64, &PortableElement> =
        elements.iter().filter(|e| !number.contains_key(&e.at.pack())).map(|e| (e.at.pack(), e)).collect();
    out.links = kept
        .iter()
        .enumerate()
        .map(|(k, e)| {
            e.neighbors
                .iter()
                .enumerate()
                .map(|(level, list)| {
                    let mut to: Vec<u32> = Vec::with_capacity(list.len());
                    let mut add = |r: &ItemRef| {
                        if let Some(&n) = number.get(&r.pack()) {
                            // (a link to a level the target lacks is dropped:
                            // the built index must pass index_check)
                            if n as usize != k && !to.contains(&n) && out.levels[n as usize] as usize >= level {
                                to.push(n);
                            }
                        }
                    };
                    for r in list {
                        match left_out.get(&r.pack()) {
                            // a left-out neighbour: its neighbours instead
                            Some(gone) => gone.neighbors.get(level).into_iter().flatten().for_each(&mut add),
                            None => add(r),
                        }
                    }
                    to
                })
                .collect()
        })
        .collect();
    out.damaged = kept
        .iter()
        .zip(&out.links)
        .map(|(e, now)| {
            e.neighbors.iter().zip(now).any(|(was, is): (&Vec<ItemRef>, &Vec<u32>)| 2 * is.len() < was.len())
        })
        .collect();
    out.entry = match entry.and_then(|(r, _)| number.get(&r.pack()).copied()) {
        Some(k) if out.levels[k as usize] == out.levels.iter().copied().max().unwrap_or(0) => {
            Some((k, out.levels[k as usize] as usize))
        }
        // the entry point's row is gone (or no longer the highest): the first highest element
        _ => out
            .levels
            .iter()
            .enumerate()
            .max_by_key(|(k, l)| (**l, std::cmp::Reverse(*k)))
            .map(|(k, l)| (k as u32, *l as usize)),
    };
    drop_unreachable(&mut out, &mut taken);
    out.rest = (0..row_ids.len()).filter(|i| !taken[*i]).collect();
    Ok(out)
}

/// Elements no path from the entry point reaches any more (their links
/// came from elements left out, typically the old version of an updated
/// row, which had the same vector) leave the graph: their rows go to
/// `rest` and are inserted, which links them properly.
fn drop_unreachable(g: &mut Relinked, taken: &mut [bool]) {
    let Some((entry, _)) = g.entry else { return };
    let n = g.order.len();
    let mut seen = vec![false; n];
    seen[entry as usize] = true;
    let mut stack = vec![entry];
    while let Some(k) = stack.pop() {
        for level in &g.links[k as usize] {
            for &t in level {
                if !std::mem::replace(&mut seen[t as usize], true) {
                    stack.push(t);
                }
            }
        }
    }
    if seen.iter().all(|s| *s) {
        return;
    }
    let mut number = vec![u32::MAX; n];
    let mut kept = 0u32;
    for k in 0..n {
        if seen[k] {
            number[k] = kept;
            kept += 1;
        } else {
            taken[g.order[k]] = false;
        }
    }
    let keep = |k: &usize| seen[*k];
    g.order = (0..n).filter(keep).map(|k| g.order[k]).collect();
    g.levels = (0..n).filter(keep).map(|k| g.levels[k]).collect();
    g.damaged = (0..n).filter(keep).map(|k| g.damaged[k]).collect();
    let links = std::mem::take(&mut g.links);
    g.links = links
        .into_iter()
        .enumerate()
        .filter(|(k, _)| seen[*k])
        .map(|(_, ls)| {
            ls.into_iter()
                .map(|l| {
                    l.into_iter()
                        .filter_map(|t| {
                            let k = number[t as usize];
                            (k != u32::MAX).then_some(k)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    g.entry = g.entry.map(|(e, l)| (number[e as usize], l));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::Quantization;
    use crate::space::{ElementKind, Metric};

    fn r(block: u32, offset: u16) -> ItemRef {
        ItemRef { block, offset }
    }

    fn meta() -> Meta {
        Meta {
            dims: 3,
            m: 2,
            ef_construction: 8,
            metric: Metric::L2Squared,
            kind: ElementKind::F32,
            quantization: Quantization::Binary,
            entry: Some((r(1, 2), 1)),
            insert_block: 1,
            elements: 3,
        }
    }

    fn elements() -> Vec<PortableElement> {
        vec![
            PortableElement { at: r(1, 1), id: Some(10), neighbors: vec![vec![r(1, 2), r(2, 1)]] },
            PortableElement { at: r(1, 2), id: Some(20), neighbors: vec![vec![r(1, 1), r(2, 1)], vec![r(2, 1)]] },
            PortableElement { at: r(2, 1), id: Some(30), neighbors: vec![vec![r(1, 2)], vec![r(1, 2)]] },
            PortableElement { at: r(2, 2), id: None, neighbors: vec![vec![r(1, 1)]] },
        ]
    }

    #[test]
    fn parts_round_trip_and_every_cut_is_an_error() {
        let mut h = Vec::new();
        encode_header(7, &meta(), &[1, 2, 3, 4, 5, 6], &mut h);
        assert_eq!(decode(&h).unwrap(), GraphPart::Header { shard: 7, meta: meta(), center: vec![1, 2, 3, 4, 5, 6] });
        let mut e = Vec::new();
        encode_elements(3, &elements(), &mut e);
        assert_eq!(decode(&e).unwrap(), GraphPart::Elements { shard: 3, elements: elements() });
        for cut in 0..e.len() {
            assert!(decode(&e[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = e.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        let mut bad = e.clone();
        bad[0] = 9;
        assert_eq!(decode(&bad).unwrap_err(), "unknown graph record part 9");
        let mut lying = e.clone();
        lying[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&lying).is_err());
    }

    #[test]
    fn relink_follows_ids_to_new_rows() {
        // rows restored in another order; row 3 has no element
        let ids = [Some(30), Some(10), Some(20), Some(40)];
        let g = relink(&Params::new(2, 8), Some((r(1, 2), 1)), &elements(), &ids).unwrap();
        assert_eq!(g.order, vec![1, 2, 0]);
        assert_eq!(g.levels, vec![0, 1, 1]);
        assert_eq!(g.links, vec![vec![vec![1, 2]], vec![vec![0, 2], vec![2]], vec![vec![1], vec![1]]]);
        assert_eq!(g.entry, Some((1, 1)));
        assert_eq!(g.rest, vec![3]);
        assert_eq!(g.damaged, vec![false; 3]);
    }

    #[test]
    fn relink_links_across_what_it_leaves_out() {
        // 20 is gone: 10 and 30 link to each other through it
        let ids = [Some(10), Some(30)];
        let g = relink(&Params::new(2, 8), Some((r(1, 2), 1)), &elements(), &ids).unwrap();
        assert_eq!(g.order, vec![0, 1]);
        assert_eq!(g.links, vec![vec![vec![1]], vec![vec![0], vec![]]]);
        assert_eq!(g.entry, Some((1, 1)));
        assert!(g.rest.is_empty());
        // 30 lost its only level-1 link
        assert_eq!(g.damaged, vec![false, true]);
        // nothing maps: every row is left to insert
        let g = relink(&Params::new(2, 8), None, &elements(), &[Some(99), None]).unwrap();
        assert!(g.order.is_empty() && g.entry.is_none());
        assert_eq!(g.rest, vec![0, 1]);
    }

    #[test]
    fn an_updated_rows_new_element_inherits_its_old_versions_links() {
        // old version 1 (not in the snapshot) and new version 2 of one row:
        // the same vector, so the new one's only link was the old one
        let e = |at: u16, id: Option<i64>, to: &[u16]| PortableElement {
            at: r(1, at),
            id,
            neighbors: vec![to.iter().map(|t| r(1, *t)).collect()],
        };
        let elements = [e(1, None, &[2, 3, 4]), e(2, Some(7), &[1]), e(3, Some(8), &[1, 4]), e(4, Some(9), &[3, 1])];
        let g = relink(&Params::new(2, 8), Some((r(1, 3), 0)), &elements, &[Some(7), Some(8), Some(9)]).unwrap();
        assert_eq!(g.order, vec![0, 1, 2]);
        assert_eq!(g.links, vec![vec![vec![1, 2]], vec![vec![0, 2]], vec![vec![1, 0]]]);
        assert!(g.rest.is_empty());
        assert_eq!(g.damaged, vec![false; 3]);
    }

    #[test]
    fn elements_only_a_left_out_element_linked_to_are_inserted_instead() {
        // 10 -> 20 -> 30, and only 40 (row gone, nobody links to it) links to 50
        let e = |at: u16, id: i64, to: &[u16]| PortableElement {
            at: r(1, at),
            id: Some(id),
            neighbors: vec![to.iter().map(|t| r(1, *t)).collect()],
        };
        let elements = [e(1, 10, &[2]), e(2, 20, &[3]), e(3, 30, &[]), e(4, 40, &[5]), e(5, 50, &[1])];
        let ids = [Some(50), Some(30), Some(20), Some(10)];
        let g = relink(&Params::new(2, 8), Some((r(1, 1), 0)), &elements, &ids).unwrap();
        assert_eq!(g.order, vec![3, 2, 1]);
        assert_eq!(g.links, vec![vec![vec![1]], vec![vec![2]], vec![vec![]]]);
        assert_eq!(g.entry, Some((0, 0)));
        assert_eq!(g.rest, vec![0]);
        assert_eq!(g.damaged, vec![false; 3]);
        // without 20, the entry 10 links to 30 through it
        let g = relink(&Params::new(2, 8), Some((r(1, 1), 0)), &elements, &[Some(50), Some(30), Some(10)]).unwrap();
        assert_eq!(g.order, vec![2, 1]);
        assert_eq!(g.links, vec![vec![vec![1]], vec![vec![]]]);
        assert_eq!(g.damaged, vec![false, false]);
        assert_eq!(g.rest, vec![0]);
    }

    #[test]
    fn relink_refuses_a_graph_of_another_shape() {
        let wide = PortableElement { at: r(1, 1), id: Some(10), neighbors: vec![vec![r(1, 2), r(1, 3), r(1, 4)]] };
        let err = relink(&Params::new(1, 8), None, &[wide], &[Some(10)]).unwrap_err();
        assert_eq!(err, "graph element has 3 neighbours on level 0, the index allows 2");
    }
}
