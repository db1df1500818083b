//! Index scans: `ORDER BY embedding <op> $1 LIMIT k`. Results come back in
//! distance order. With `hnsw.iterative_scan` the scan searches again with a
//! doubled beam when the first `ef_search` candidates are used up (a WHERE
//! clause filtered them), skipping what it returned, until the graph or
//! `hnsw.max_scan_tuples` is exhausted.

use super::graph::{index_value, DiskGraph};
use super::options::{IterativeScan, EF_SEARCH, ITERATIVE_SCAN, MAX_SCAN_TUPLES};
use super::page;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ItemRef, Meta};
use quiver_core::hnsw::{search_layer, Candidate, QueryDistance};
use quiver_core::space::AlignedBytes;
use std::collections::{HashSet, VecDeque};

struct ScanState {
    meta: Meta,
    query: Option<AlignedBytes>,
    results: VecDeque<(f32, ItemRef)>,
    returned: HashSet<u64>,
    started: bool,
    exhausted: bool,
    ef: usize,
    visited: usize,
    last_distance: f32,
}

fn state(scan: pg_sys::IndexScanDesc) -> &'static mut ScanState {
    // SAFETY: opaque was set in ambeginscan to a ScanState owned by the
    // scan's memory context, which outlives every callback of the scan.
    unsafe { &mut *((*scan).opaque as *mut ScanState) }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: RelationGetIndexScan allocates the descriptor in the current
    // (per-query) memory context; our state is dropped when it is deleted.
    unsafe {
        let scan = pg_sys::RelationGetIndexScan(index, nkeys, norderbys);
        let st = ScanState {
            meta: page::read_meta(index),
            query: None,
            results: VecDeque::new(),
            returned: HashSet::new(),
            started: false,
            exhausted: false,
            ef: 0,
            visited: 0,
            last_distance: f32::NEG_INFINITY,
        };
        (*scan).opaque = pgrx::PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(st) as *mut _;
        scan
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    _keys: pg_sys::ScanKey,
    _nkeys: i32,
    orderbys: pg_sys::ScanKey,
    norderbys: i32,
) {
    let st = state(scan);
    st.results.clear();
    st.returned.clear();
    st.started = false;
    st.exhausted = false;
    st.visited = 0;
    st.last_distance = f32::NEG_INFINITY;
    // SAFETY: orderbys holds norderbys scan keys; the descriptor's own copy
    // (orderByData) is refreshed from them as index AMs are expected to do.
    unsafe {
        if norderbys > 0 && !orderbys.is_null() && orderbys != (*scan).orderByData {
            std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
        if (*scan).numberOfOrderBys < 1 {
            pgrx::error!("cannot scan hnsw index without order");
        }
        let key = &*(*scan).orderByData;
        st.query = if key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
            None
        } else {
            index_value(key.sk_argument, &st.meta)
        };
    }
}

/// Searches with beam `ef` and queues the elements not returned yet.
fn search_round(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    st.meta = page::read_meta(unsafe { (*scan).indexRelation });
    let (Some(query), Some((entry, top))) = (st.query.clone(), st.meta.entry) else {
        st.exhausted = true;
        return;
    };
    let index = unsafe { (*scan).indexRelation };
    let mut g = DiskGraph::new(index, &st.meta, query);
    let mut cur = vec![Candidate { distance: g.distance(entry.pack()), node: entry.pack() }];
    for lv in (1..=top as usize).rev() {
        let mut visited = HashSet::new();
        cur = search_layer(&mut g, &cur, 1, lv, &mut visited);
    }
    let mut visited = HashSet::new();
    let found = search_layer(&mut g, &cur, st.ef, 0, &mut visited);
    st.visited += g.visited;
    let round_visited = g.visited;
    let before = st.returned.len() + st.results.len();
    let strict = ITERATIVE_SCAN.get() == IterativeScan::StrictOrder && !st.returned.is_empty();
    let mut queued: HashSet<u64> = st.results.iter().map(|(_, h)| h.pack()).collect();
    for c in found {
        let Some(info) = g.info.get(&c.node) else { continue };
        if info.deleted {
            continue;
        }
        let key = info.heap.pack();
        if st.returned.contains(&key) || queued.contains(&key) {
            continue;
        }
        if strict && c.distance < st.last_distance {
            continue; // would break the order already returned
        }
        queued.insert(key);
        st.results.push_back((c.distance, info.heap));
    }
    // Nothing new although the beam covered everything this round reached:
    // the graph has no more to give.
    if st.returned.len() + st.results.len() == before && st.ef >= round_visited {
        st.exhausted = true;
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    if !st.started {
        st.started = true;
        st.ef = EF_SEARCH.get().max(1) as usize;
        search_round(scan, st);
    }
    loop {
        if let Some((d, heap)) = st.results.pop_front() {
            st.returned.insert(heap.pack());
            st.last_distance = st.last_distance.max(d);
            // SAFETY: the descriptor is live; we report an exact ordering.
            unsafe {
                (*scan).xs_heaptid = page::heap_tid(heap);
                (*scan).xs_recheck = false;
                (*scan).xs_recheckorderby = false;
            }
            return true;
        }
        if st.exhausted || ITERATIVE_SCAN.get() == IterativeScan::Off {
            return false;
        }
        let limit = MAX_SCAN_TUPLES.get().max(1) as usize;
        if st.visited >= limit || st.ef >= limit {
            return false;
        }
        pgrx::check_for_interrupts!();
        st.ef = (st.ef * 2).min(limit);
        search_round(scan, st);
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state itself is dropped with the scan's memory context; release
    // its buffers of results early.
    let st = state(scan);
    st.results = VecDeque::new();
    st.returned = HashSet::new();
}
