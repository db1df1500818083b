//! Index scans: `ORDER BY embedding <op> $1 LIMIT k`. Results come back in
//! distance order. With `hnsw.iterative_scan` the scan searches again with a
//! continues the same level-0 search (frontier and visited set carried
//! over) when the first `ef_search` candidates are used up (a WHERE clause
//! filtered them), until the graph or `hnsw.max_scan_tuples` is exhausted.

use super::graph::{index_value_or_else, DiskGraph};
use super::options::{IterativeScan, EF_SEARCH, ITERATIVE_SCAN, MAX_SCAN_TUPLES};
use super::page;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ItemRef, Meta};
use quiver_core::hnsw::fasthash::IdHashSet;
use quiver_core::hnsw::resumable::Resumable;
use quiver_core::space::AlignedBytes;
use std::collections::VecDeque;

struct ScanState {
    meta: Meta,
    query: Option<AlignedBytes>,
    /// The search in progress: the graph reader and the resumable frontier.
    search: Option<(DiskGraph, Resumable<u64>)>,
    results: VecDeque<(f32, ItemRef)>,
    returned: IdHashSet<u64>,
    started: bool,
    exhausted: bool,
    last_distance: f32,
    /// When the current search began, and rows returned since (metrics).
    started_at: Option<std::time::Instant>,
    rows: u64,
}

/// Counts the search that just ended, if one ran.
fn finish_search(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    if let Some(t) = st.started_at.take() {
        let distances = st.search.as_ref().map(|(_, r)| r.visited_count as u64).unwrap_or(0);
        // SAFETY: the descriptor and its index are live during the scan.
        let index = unsafe { (*(*scan).indexRelation).rd_id };
        crate::metrics::record_scan(index, st.rows, distances, t.elapsed().as_micros() as u64);
    }
    st.rows = 0;
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
            search: None,
            results: VecDeque::new(),
            returned: IdHashSet::default(),
            started: false,
            exhausted: false,
            last_distance: f32::NEG_INFINITY,
            started_at: None,
            rows: 0,
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
    finish_search(scan, st);
    st.results.clear();
    st.returned.clear();
    st.search = None;
    st.started = false;
    st.exhausted = false;
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
            let index = (*(*scan).indexRelation).rd_id;
            index_value_or_else(key.sk_argument, &st.meta, || crate::metrics::record_error(index))
        };
    }
}

/// Descends the upper levels and sets up the level-0 search.
fn start_search(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    // SAFETY: the descriptor is live during the scan.
    let index = unsafe { (*scan).indexRelation };
    let mut attempts = 0;
    let (mut g, cur) = loop {
        st.meta = page::read_meta(index);
        let (Some(query), Some((entry, top))) = (st.query.clone(), st.meta.entry) else {
            st.exhausted = true;
            return;
        };
        let mut g = DiskGraph::new(index, &st.meta, query);
        let cur = g.descend(entry, top as usize, 0);
        // An entry point VACUUM reclaimed after we read the meta page is
        // infinitely far (stored vectors are finite): read the new one.
        attempts += 1;
        if cur.first().map(|c| c.distance.is_finite()).unwrap_or(false) || attempts == 3 {
            break (g, cur);
        }
    };
    let r = Resumable::new(&mut g, &cur);
    g.release_pins();
    st.search = Some((g, r));
}

/// Queues the next batch of results (beam `ef`); marks the scan exhausted
/// when the graph has nothing more.
fn next_batch(st: &mut ScanState, ef: usize) {
    let Some((g, r)) = st.search.as_mut() else {
        st.exhausted = true;
        return;
    };
    let batch = r.next_batch(g, ef);
    g.release_pins();
    if batch.is_empty() {
        st.exhausted = true;
        return;
    }
    let strict = ITERATIVE_SCAN.get() == IterativeScan::StrictOrder;
    for c in batch {
        let Some(info) = g.info.get(&c.node) else { continue };
        if strict && c.distance < st.last_distance {
            continue; // would break the order already returned
        }
        if st.returned.insert(info.heap.pack()) {
            st.results.push_back((c.distance, info.heap));
        }
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    if !st.started {
        st.started = true;
        st.started_at = crate::metrics::enabled().then(std::time::Instant::now);
        start_search(scan, st);
        next_batch(st, EF_SEARCH.get().max(1) as usize);
    }
    loop {
        if let Some((d, heap)) = st.results.pop_front() {
            st.last_distance = st.last_distance.max(d);
            st.rows += 1;
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
        let visited = st.search.as_ref().map(|(_, r)| r.visited_count).unwrap_or(0);
        if visited >= MAX_SCAN_TUPLES.get().max(1) as usize {
            return false;
        }
        pgrx::check_for_interrupts!();
        next_batch(st, EF_SEARCH.get().max(1) as usize);
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state itself is dropped with the scan's memory context; release
    // its buffers of results early.
    let st = state(scan);
    finish_search(scan, st);
    st.results = VecDeque::new();
    st.returned = IdHashSet::default();
    st.search = None;
}
