//! INSERT: find neighbours by searching the on-page graph, place the new
//! element, then link it into its neighbours' lists page by page.
//!
//! Locking: the search takes only brief share locks. Placing the element
//! takes the meta page exclusively and then one data page (the meta page is
//! always locked first). Linking locks one neighbour page at a time and
//! re-checks the list it computed against, retrying when a concurrent
//! insert changed it. No lock covers the whole index.

use super::build::params_of;
use super::graph::{index_value, DiskGraph};
use super::page::{self, add_item, free_space, init_page, item, meta_from_page, LockedBuffer, PageWrite, META_BLOCK};
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ElementShape, ItemRef, Meta};
use quiver_core::hnsw::{search_layer, select_neighbors, Candidate, PairDistance, SplitMix64};
use quiver_core::space::AlignedBytes;
use std::cell::RefCell;
use quiver_core::hnsw::fasthash::IdHashSet;

thread_local! {
    static LEVEL_RNG: RefCell<SplitMix64> = RefCell::new(SplitMix64(
        (std::process::id() as u64) << 32
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7),
    ));
}

fn random_unit() -> f64 {
    LEVEL_RNG.with(|r| r.borrow_mut().next_unit())
}

/// A link to add in the same WAL record as a new element: `node`'s level-0
/// list, as read before placing, and the list it should become (with the
/// new element's slot marked by `NEW_SLOT`).
struct FirstLink {
    node: ItemRef,
    expected: Vec<ItemRef>,
    next: Vec<ItemRef>,
}

/// Placeholder for the new element's position in `FirstLink::next`.
const NEW_SLOT: ItemRef = ItemRef { block: u32::MAX - 1, offset: 0 };

/// Puts `data` on the insert page (or a new page) and updates the meta page
/// in the same WAL record; sets the entry point when the index was empty.
/// With `first_link`, the nearest neighbour's link to the new element goes
/// into that record too, so that after a crash at any point the element
/// is reachable. Returns the position and whether that link was written.
fn place(index: pg_sys::Relation, data: &[u8], level: usize, first_link: Option<&FirstLink>, shape: &ElementShape) -> (ItemRef, Meta, bool) {
    let meta_buf = LockedBuffer::read(index, META_BLOCK, true);
    let mut meta = match meta_from_page(meta_buf.page()) {
        Ok(m) => m,
        Err(e) => page::corrupted(index, &format!("meta page: {e}")),
    };
    let need = data.len().next_multiple_of(8) + 4;
    let mut target = None;
    if meta.insert_block != META_BLOCK {
        let b = LockedBuffer::read(index, meta.insert_block, true);
        if free_space(b.page()) >= need {
            target = Some((b, false));
        }
    }
    if target.is_none() {
        // Space VACUUM reclaimed from deleted elements, before growing the index.
        target = page::page_with_free_space(index, need).map(|b| (b, false));
    }
    let (buf, fresh) = target.unwrap_or_else(|| (page::new_page(index), true));
    let block = buf.block();
    let mut w = PageWrite::start(index);
    let meta_page = w.register(meta_buf, false);
    let data_page = w.register(buf, fresh);
    if fresh {
        init_page(data_page);
    }
    let Some(offset) = add_item(data_page, data) else {
        pgrx::error!("hnsw: element of {} bytes does not fit on a page", data.len());
    };
    let r = ItemRef { block, offset };
    // Placers hold the meta page exclusively, so no other backend holds two
    // data pages while we lock the neighbour's: no deadlock.
    let mut linked = false;
    if let Some(fl) = first_link {
        let link_page = if fl.node.block == block {
            Some(data_page)
        } else {
            Some(w.register(LockedBuffer::read(index, fl.node.block, true), false))
        };
        if let Some(it) = link_page.and_then(|p| item(p, fl.node.offset)) {
            let mut now = Vec::new();
            shape.neighbors(it, 0, &mut now);
            if now == fl.expected {
                let next: Vec<ItemRef> = fl.next.iter().map(|x| if *x == NEW_SLOT { r } else { *x }).collect();
                shape.set_neighbors(it, 0, &next);
                linked = true;
            }
        }
    }
    meta.insert_block = block;
    meta.elements += 1;
    if meta.entry.is_none() {
        meta.entry = Some((r, level as u16));
    }
    item(meta_page, 1).expect("meta item").copy_from_slice(&meta.to_bytes());
    w.finish();
    (r, meta, linked)
}

/// The level-0 list `node` should have with the new element (at distance
/// `d`) forced in: appended when there is room, else replacing the farthest.
fn plan_first_link(g: &mut DiskGraph, node: ItemRef) -> Option<FirstLink> {
    let shape = g.shape;
    let expected = g.with_element(node, |b| {
        let mut l = Vec::new();
        shape.neighbors(b, 0, &mut l);
        l
    });
    let mut next = expected.clone();
    if next.len() < shape.params.max_neighbors(0) {
        next.push(NEW_SLOT);
    } else {
        let dists: Vec<f32> = next.iter().map(|n| g.pair_distance(node.pack(), n.pack())).collect();
        let far = (0..next.len()).max_by(|&a, &b| dists[a].total_cmp(&dists[b]))?;
        next[far] = NEW_SLOT;
    }
    Some(FirstLink { node, expected, next })
}

/// Adds `new` to `node`'s list on `level`, pruning with the heuristic when
/// full; with `force`, a full list gives up its farthest link for `new` even
/// when the heuristic would not keep it. Returns whether `new` is linked.
pub(crate) fn connect(g: &mut DiskGraph, node: ItemRef, new: ItemRef, new_distance: f32, level: usize, force: bool) -> bool {
    let shape = g.shape;
    let max = shape.params.max_neighbors(level);
    for _attempt in 0..5 {
        let (current, node_level) = g.with_element(node, |b| {
            let mut l = Vec::new();
            let nl = ElementShape::level(b);
            if nl >= level {
                shape.neighbors(b, level, &mut l);
            }
            (l, nl)
        });
        if node_level < level {
            return false;
        }
        if current.contains(&new) {
            return true;
        }
        let next: Vec<ItemRef> = if current.len() < max {
            let mut n = current.clone();
            n.push(new);
            n
        } else {
            let mut cands: Vec<Candidate<u64>> = current
                .iter()
                .map(|c| Candidate { distance: g.pair_distance(node.pack(), c.pack()), node: c.pack() })
                .collect();
            let farthest = cands.iter().enumerate().max_by(|a, b| a.1.cmp(b.1)).map(|(i, _)| i);
            cands.push(Candidate { distance: new_distance, node: new.pack() });
            let mut kept: Vec<ItemRef> = select_neighbors(&cands, max, g).iter().map(|c| ItemRef::unpack(c.node)).collect();
            if force && !kept.contains(&new) {
                kept = current.clone();
                kept[farthest.expect("full list")] = new;
            }
            kept
        };
        if !next.contains(&new) {
            return false; // the new element did not make the cut
        }
        let buf = LockedBuffer::read(g.index, node.block, true);
        let mut w = PageWrite::start(g.index);
        let p = w.register(buf, false);
        let Some(it) = item(p, node.offset) else {
            page::corrupted(g.index, &format!("no element at ({},{})", node.block, node.offset));
        };
        let mut now = Vec::new();
        shape.neighbors(it, level, &mut now);
        if now != current {
            continue; // changed under us: recompute (the guard aborts on drop)
        }
        shape.set_neighbors(it, level, &next);
        w.finish();
        return true;
    }
    false
}

/// Inserts one element for heap tuple `heap` with vector bytes `v`;
/// `meta` is the meta page as the caller just read it (its entry point is
/// where the search starts).
pub fn insert_element(index: pg_sys::Relation, meta: &Meta, heap: ItemRef, v: AlignedBytes) {
    let meta = *meta;
    let params = params_of(&meta);
    let shape = ElementShape { params, vector_bytes: meta.stored_bytes() };
    let level = params.level_for(random_unit());
    let mut g = DiskGraph::new(index, &meta, v.clone());
    let stored = g.stored_form(&v);
    let Some((entry, top)) = meta.entry else {
        drop(g);
        let (me, m, _) = place(index, &shape.encode(level, heap, stored.as_bytes()), level, None, &shape);
        if m.entry.map(|(e, _)| e) != Some(me) {
            // Someone else made the first insert meanwhile: our element sits
            // unlinked; link it now like any other.
            relink_after_race(index, m, heap, v, level);
        }
        return;
    };
    let top = top as usize;
    g.metric = meta.metric.construction();
    let mut cur = g.descend(entry, top, level);
    let mut chosen_per_level: Vec<Vec<Candidate<u64>>> = vec![Vec::new(); level + 1];
    for lv in (0..=level.min(top)).rev() {
        let mut visited = IdHashSet::default();
        let found = search_layer(&mut g, &cur, params.ef_construction, lv, &mut visited);
        chosen_per_level[lv] = select_neighbors(&found, params.max_neighbors(lv), &mut g);
        if !found.is_empty() {
            cur = found;
        }
    }
    let mut data = shape.encode(level, heap, stored.as_bytes());
    for (lv, chosen) in chosen_per_level.iter().enumerate() {
        let refs: Vec<ItemRef> = chosen.iter().map(|c| ItemRef::unpack(c.node)).collect();
        shape.set_neighbors(&mut data, lv, &refs);
    }
    let first = chosen_per_level[0].first().and_then(|c| plan_first_link(&mut g, ItemRef::unpack(c.node)));
    let (me, _, first_linked) = place(index, &data, level, first.as_ref(), &shape);
    for (lv, chosen) in chosen_per_level.iter().enumerate() {
        let mut linked = lv == 0 && first_linked;
        for c in chosen {
            linked |= connect(&mut g, ItemRef::unpack(c.node), me, c.distance, lv, false);
        }
        // Nobody kept a link to the new element: it would be unreachable.
        if !linked && lv == 0 {
            if let Some(c) = chosen.first() {
                connect(&mut g, ItemRef::unpack(c.node), me, c.distance, lv, true);
            }
        }
    }
    if level > top {
        let meta_buf = LockedBuffer::read(index, META_BLOCK, true);
        let mut w = PageWrite::start(index);
        let p = w.register(meta_buf, false);
        let it = item(p, 1).expect("meta item");
        let mut m = match Meta::from_bytes(it) {
            Ok(m) => m,
            Err(e) => page::corrupted(index, &format!("meta page: {e}")),
        };
        if m.entry.map(|(_, l)| level > l as usize).unwrap_or(true) {
            m.entry = Some((me, level as u16));
            it.copy_from_slice(&m.to_bytes());
            w.finish();
        }
    }
}

/// Rare path: two backends inserted "the first" element concurrently. The
/// one that did not become the entry point searches for neighbours of its
/// element now (found by its heap tid) and links it both ways.
fn relink_after_race(index: pg_sys::Relation, meta: Meta, heap: ItemRef, v: AlignedBytes, level: usize) {
    let Some((entry, top)) = meta.entry else { return };
    let params = params_of(&meta);
    let mut g = DiskGraph::new(index, &meta, v);
    g.metric = meta.metric.construction();
    let start = g.descend(entry, top as usize, 0);
    let mut visited = IdHashSet::default();
    let cur = search_layer(&mut g, &start, params.ef_construction, 0, &mut visited);
    // our own element is the nearest one with our heap tid
    let Some(me) = cur.iter().find(|c| g.info.get(&c.node).map(|i| i.heap == heap).unwrap_or(false)).map(|c| c.node) else {
        return;
    };
    let others: Vec<Candidate<u64>> = cur.into_iter().filter(|c| c.node != me).collect();
    let me = ItemRef::unpack(me);
    for lv in 0..=level.min(top as usize) {
        let chosen = select_neighbors(&others, params.max_neighbors(lv), &mut g);
        for c in &chosen {
            connect(&mut g, me, ItemRef::unpack(c.node), c.distance, lv, false);
            connect(&mut g, ItemRef::unpack(c.node), me, c.distance, lv, true);
        }
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _index_info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: one indexed column: values/isnull have one entry; heap_tid is valid.
    if unsafe { *isnull } {
        return false;
    }
    page::begin_insert(index);
    let meta = page::read_meta(index);
    let Some(v) = index_value(unsafe { *values }, &meta) else {
        page::end_insert(index);
        return false;
    };
    let heap = page::item_ref(unsafe { &*heap_tid });
    insert_element(index, &meta, heap, v);
    page::end_insert(index);
    false
}
