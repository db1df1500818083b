//! VACUUM: elements whose heap tuples are gone are flagged deleted, so scans
//! never return them (their heap slots may be reused). They stay in the
//! graph as routing nodes, which keeps recall intact; their space is not
//! reclaimed yet (REINDEX compacts). The cleanup pass also repairs
//! reachability: concurrent inserts prune lists and can, rarely, leave an
//! element with no incoming link; each such element is linked from its
//! nearest reachable element again.

use super::build::params_of;
use super::graph::DiskGraph;
use super::page::{self, item, max_offset, LockedBuffer, PageWrite};
use quiver_core::hnsw::fasthash::{IdHashMap, IdHashSet};
use quiver_core::hnsw::layout::ItemRef;
use quiver_core::hnsw::{search_layer, Candidate};
use quiver_core::space::AlignedBytes;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::ElementShape;

fn result(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: a zeroed result in the vacuum's memory context.
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()) as *mut _ }
    } else {
        stats
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    let stats = result(stats);
    // SAFETY: vacuum passes a valid info with the open index.
    let index = unsafe { (*info).index };
    let Some(callback) = callback else { return stats };
    let n = page::nblocks(index);
    for block in 1..n {
        pgrx::check_for_interrupts!();
        let buf = LockedBuffer::read(index, block, true);
        let mut dead = Vec::new();
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
            if it.len() < quiver_core::hnsw::layout::ELEMENT_HEADER || ElementShape::is_deleted(it) {
                continue;
            }
            let mut tid = page::heap_tid(ElementShape::heap(it));
            // SAFETY: the callback only reads the tid.
            if unsafe { callback(&mut tid, callback_state) } {
                dead.push(off);
            }
        }
        if dead.is_empty() {
            continue;
        }
        let mut w = PageWrite::start(index);
        let p = w.register(buf, false);
        for off in &dead {
            if let Some(it) = item(p, *off) {
                ElementShape::set_deleted(it);
            }
        }
        w.finish();
        // SAFETY: stats is ours (allocated above or passed in).
        unsafe { (*stats).tuples_removed += dead.len() as f64 };
    }
    stats
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: valid info from vacuum.
    if unsafe { (*info).analyze_only } {
        return stats;
    }
    let stats = result(stats);
    let index = unsafe { (*info).index };
    repair_reachability(index);
    let n = page::nblocks(index);
    let mut live = 0.0;
    for block in 1..n {
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            if let Some(it) = item(buf.page(), off) {
                if it.len() >= quiver_core::hnsw::layout::ELEMENT_HEADER && !ElementShape::is_deleted(it) {
                    live += 1.0;
                }
            }
        }
    }
    // SAFETY: stats is ours.
    unsafe {
        (*stats).num_pages = n;
        (*stats).num_index_tuples = live;
        (*stats).estimated_count = false;
    }
    stats
}

/// Links every live element that a walk of level 0 from the entry point
/// cannot reach; returns how many were relinked.
pub fn repair_reachability(index: pg_sys::Relation) -> usize {
    let meta = page::read_meta(index);
    let Some((entry, top)) = meta.entry else { return 0 };
    let shape = ElementShape { params: params_of(&meta), vector_bytes: meta.kind.bytes_for(meta.dims as usize) };
    let mut fixed = 0;
    for _round in 0..3 {
        let mut links: IdHashMap<u64, (Vec<ItemRef>, bool)> = IdHashMap::default();
        for block in 1..page::nblocks(index) {
            let buf = LockedBuffer::read(index, block, false);
            for off in 1..=max_offset(buf.page()) {
                let Some(it) = item(buf.page(), off) else { continue };
                if shape.validate(it).is_err() {
                    continue;
                }
                let mut l = Vec::new();
                shape.neighbors(it, 0, &mut l);
                links.insert(ItemRef { block, offset: off }.pack(), (l, ElementShape::is_deleted(it)));
            }
        }
        let mut seen: IdHashSet<u64> = IdHashSet::default();
        seen.insert(entry.pack());
        let mut stack = vec![entry.pack()];
        while let Some(x) = stack.pop() {
            if let Some((l, _)) = links.get(&x) {
                for t in l {
                    if seen.insert(t.pack()) {
                        stack.push(t.pack());
                    }
                }
            }
        }
        let orphans: Vec<u64> = links.iter().filter(|(k, (_, del))| !del && !seen.contains(k)).map(|(k, _)| *k).collect();
        if orphans.is_empty() {
            break;
        }
        for x in orphans {
            pgrx::check_for_interrupts!();
            let xr = ItemRef::unpack(x);
            let mut probe = DiskGraph::new(index, &meta, AlignedBytes::default());
            let v = probe.with_element(xr, |b| AlignedBytes::from_bytes(shape.vector(b)));
            let mut g = DiskGraph::new(index, &meta, v);
            g.metric = meta.metric.construction();
            g.keep_vectors = true;
            let start = g.descend(entry, top as usize, 0);
            let mut visited = IdHashSet::default();
            let cur = search_layer(&mut g, &start, shape.params.ef_construction, 0, &mut visited);
            let max = shape.params.max_neighbors(0);
            let reachable: Vec<&Candidate<u64>> = cur.iter().filter(|c| c.node != x && seen.contains(&c.node)).collect();
            let roomy = reachable.iter().find(|c| links.get(&c.node).map(|(l, _)| l.len() < max).unwrap_or(false));
            if let Some(t) = roomy.or(reachable.first()) {
                if super::insert::connect(&mut g, ItemRef::unpack(t.node), xr, t.distance, 0, true) {
                    fixed += 1;
                }
            }
        }
    }
    fixed
}
