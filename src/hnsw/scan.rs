//! Index scans: `ORDER BY embedding <op> $1 LIMIT k`. Results come back in
//! distance order. With `hnsw.iterative_scan` the scan searches again with a
//! continues the same level-0 search (frontier and visited set carried
//! over) when the first `ef_search` candidates are used up (a WHERE clause
//! filtered them), until the graph or `hnsw.max_scan_tuples` is exhausted.

use super::graph::{checked_value, normalized, DiskGraph};
use super::options::{self, IterativeScan, OVERSAMPLING, RESCORE};
use super::page;
use super::rescore::HeapVectors;
use pgrx::pg_sys;
use quiver_core::hnsw::fasthash::IdHashSet;
use quiver_core::hnsw::layout::{ItemRef, Meta};
use quiver_core::hnsw::origin_seeds;
use quiver_core::hnsw::resumable::Resumable;
use quiver_core::hnsw::{Candidate, QueryDistance};
use quiver_core::quantize::Quantization;
use quiver_core::space::AlignedBytes;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::VecDeque;

struct ScanState {
    meta: Meta,
    query: Option<AlignedBytes>,
    /// The query as given (not normalised), for rescoring: normalising a
    /// halfvec query rounds it to f16, and rescoring must order rows as the
    /// SQL operator does.
    exact_query: Option<AlignedBytes>,
    /// The ORDER BY value was NULL or, under cosine, a zero vector.
    no_query: bool,
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
    /// Binary-quantized scans with `quiver.rescore` on: `results` holds
    /// candidates in code order; those read from the table wait here by
    /// exact distance until returned.
    rescoring: bool,
    rescored: BinaryHeap<Reverse<Rescored>>,
    rescored_count: usize,
    /// hnsw.ef_search for this scan (split among shards: see `shards`)
    ef: usize,
}

/// A candidate with its exact distance, ordered nearest first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rescored(f32, ItemRef);
impl Eq for Rescored {}
impl Ord for Rescored {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}
impl PartialOrd for Rescored {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Counts the search that just ended, if one ran.
fn finish_search(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    if let Some(t) = st.started_at.take() {
        let distances = st.search.as_ref().map(|(_, r)| r.visited_count as u64).unwrap_or(0);
        // SAFETY: the descriptor and its index are live during the scan.
        let index = unsafe { (*(*scan).indexRelation).rd_id };
        crate::metrics::record_scan(
            index,
            st.rows,
            distances,
            st.rescored_count as u64,
            t.elapsed().as_micros() as u64,
        );
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
            exact_query: None,
            no_query: false,
            search: None,
            results: VecDeque::new(),
            returned: IdHashSet::default(),
            started: false,
            exhausted: false,
            last_distance: f32::NEG_INFINITY,
            started_at: None,
            rows: 0,
            rescoring: false,
            rescored: BinaryHeap::new(),
            rescored_count: 0,
            ef: 40,
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
    st.rescored.clear();
    st.rescored_count = 0;
    st.search = None;
    st.started = false;
    st.exhausted = false;
    st.last_distance = f32::NEG_INFINITY;
    // SAFETY: the descriptor is live; heapRelation may be null (not for executor scans).
    st.ef = super::shards::search_ef(unsafe { (*scan).heapRelation });
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
        let given = (key.sk_flags & pg_sys::SK_ISNULL as i32 == 0).then(|| {
            let index = (*(*scan).indexRelation).rd_id;
            checked_value(key.sk_argument, &st.meta, || crate::metrics::record_error(index))
        });
        st.exact_query = given.clone().filter(|_| st.meta.quantization == Quantization::Binary);
        st.query = given.and_then(|v| normalized(v, &st.meta));
        st.no_query = st.query.is_none();
    }
}

/// Starts the search and takes its first batch. A walk that finds nothing
/// at all in a non-empty index started from an element VACUUM reclaimed
/// under it (VACUUM waits for inserts, not for scans: an element the
/// descent ends on can lose its slot before its links are read), so it
/// starts again from the entry point then on the meta page.
fn start_walk(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    for _ in 0..3 {
        st.search = None;
        st.exhausted = false;
        start_search(scan, st);
        if st.search.is_none() {
            return; // an empty index
        }
        next_batch(st);
        if !st.results.is_empty() || !st.exhausted {
            return;
        }
    }
}

/// Descends the upper levels and sets up the level-0 search.
fn start_search(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    // SAFETY: the descriptor is live during the scan.
    let index = unsafe { (*scan).indexRelation };
    let mut attempts = 0;
    let (mut g, cur) = loop {
        st.meta = page::read_meta(index);
        let Some((entry, top)) = st.meta.entry else {
            st.exhausted = true;
            return;
        };
        let mut g = DiskGraph::new(index, &st.meta, st.query.clone().unwrap_or_default());
        g.no_query = st.no_query;
        g.info.reserve(2048); // a typical scan's visits, without rehashing
        let cur = g.descend(entry, top as usize, 0);
        // An entry point VACUUM reclaimed after we read the meta page is
        // infinitely far (stored vectors are finite): read the new one.
        attempts += 1;
        if cur.first().map(|c| c.distance.is_finite()).unwrap_or(false) || attempts == 3 {
            break (g, cur);
        }
    };
    let mut cur = cur;
    if !st.no_query && origin_seeds::kept_by(g.metric, g.links_by_cosine) {
        // the elements nearest the origin, which no walk from the query's
        // neighbourhood reaches in a cosine-linked graph (see origin_seeds)
        for node in page::read_origin_seeds(index).nodes() {
            if cur.iter().all(|c| c.node != node) {
                let distance = g.distance(node);
                if distance.is_finite() {
                    cur.push(Candidate { distance, node });
                }
            }
        }
    }
    let r = Resumable::new(&mut g, &cur);
    st.search = Some((g, r));
}

/// Queues the next batch of candidates (see [`batch_shape`]); marks the
/// scan exhausted when the graph has nothing more.
fn next_batch(st: &mut ScanState) {
    let Some((g, r)) = st.search.as_mut() else {
        st.exhausted = true;
        return;
    };
    let (beam, pool) = batch_shape(st.ef, st.rescoring);
    let mut batch = r.next_batch(g, beam);
    if pool > beam && !batch.is_empty() {
        // elements the walk measured but did not keep: free candidates
        let mut more = r.take_measured(pool - beam);
        batch.append(&mut more);
    }
    if batch.is_empty() {
        st.exhausted = true;
        return;
    }
    // A scan that stops after this batch also returns the rows tied with
    // its farthest result, up to 9 per result at that distance: pgvector
    // keeps up to 10 rows of one vector in one element, so with identical
    // vectors its scans return that many per element found.
    if options::iterative_scan() == IterativeScan::Off && !st.rescoring && !st.no_query {
        if let Some(worst) = batch.last().map(|c| c.distance) {
            let at_worst = batch.iter().filter(|c| c.distance == worst).count();
            let mut ties = r.take_ties(worst, at_worst * (DUPLICATES_PER_ELEMENT - 1));
            batch.append(&mut ties);
        }
    }
    queue(st, batch);
}

/// After `hnsw.max_scan_tuples`, an iterative scan stops walking but still
/// returns what the walk measured and did not return yet, nearest first, as
/// pgvector's does: under a selective filter those are where the matching
/// rows are (on 400k rows with a 1% filter, stopping at the limit returned
/// 9.6 rows per `LIMIT 10`). Marks the scan exhausted when none are left.
fn drain_measured(st: &mut ScanState) {
    let Some((_, r)) = st.search.as_mut() else {
        st.exhausted = true;
        return;
    };
    let batch = r.take_measured(st.ef.max(1));
    if batch.is_empty() {
        st.exhausted = true;
        return;
    }
    queue(st, batch);
}

/// Puts the rows of `batch` (nearest first) in the scan's result queue, each
/// heap row once.
fn queue(st: &mut ScanState, batch: Vec<Candidate<u64>>) {
    let Some((g, _)) = st.search.as_mut() else { return };
    // Code order is not the order returned when rescoring: keep them all.
    let strict = options::iterative_scan() == IterativeScan::StrictOrder && !st.rescoring;
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

/// Rows pgvector keeps in one element when their vectors are identical.
const DUPLICATES_PER_ELEMENT: usize = 10;

/// Beam of the graph walk and candidates per batch. Without rescoring both
/// are `hnsw.ef_search`. Rescoring scans take `oversampling x ef_search`
/// candidates (they return up to ef_search rows, the exact best of that
/// many by code) but widen the beam only by the square root of the
/// oversampling, filling the rest with elements the walk measured and did
/// not keep: on WordNet 100k (ef_search 40, oversampling 2) beam 57 + 80
/// candidates gave recall 0.954 at 869 QPS where beam 80 gave 0.958 at 656.
fn batch_shape(ef: usize, rescoring: bool) -> (usize, usize) {
    if !rescoring {
        return (ef, ef);
    }
    let os = OVERSAMPLING.get();
    let pool = ((ef as f64 * os).ceil() as usize).clamp(ef, 100_000);
    let beam = ((ef as f64 * os.sqrt()).ceil() as usize).clamp(1, pool);
    (beam, pool)
}

/// What a scan whose queue ran dry does next: end (no iterative scan, or
/// nothing left), walk on, or return only the candidates it measured (past
/// `hnsw.max_scan_tuples`, see [`drain_measured`]).
enum Continue {
    No,
    Walk,
    Drain,
}

fn may_continue(st: &ScanState) -> Continue {
    if st.exhausted || options::iterative_scan() == IterativeScan::Off {
        return Continue::No;
    }
    let visited = st.search.as_ref().map(|(_, r)| r.visited_count).unwrap_or(0);
    if visited < options::max_scan_tuples().max(1) as usize {
        Continue::Walk
    } else {
        Continue::Drain
    }
}

/// Reads exact distances from the table until `need` candidates have been
/// rescored (searching on when the queue runs dry and the scan may), so
/// that the nearest rescored one can be returned.
fn rescore_until(scan: pg_sys::IndexScanDesc, st: &mut ScanState, need: usize) {
    if st.rescored_count >= need {
        return;
    }
    let Some(mut heap) = HeapVectors::open(scan) else {
        // No table to read: return code order (never the case for executor scans).
        st.rescoring = false;
        return;
    };
    let Some(query) = st.exact_query.clone() else { return };
    let mut need = need;
    while st.rescored_count < need {
        if let Some((_, tid)) = st.results.pop_front() {
            st.rescored_count += 1;
            if let Some(d) = heap.distance(tid, &st.meta, &query) {
                st.rescored.push(Reverse(Rescored(d, tid)));
            }
            continue;
        }
        match may_continue(st) {
            Continue::No => break,
            Continue::Walk => next_batch(st),
            Continue::Drain => drain_measured(st),
        }
        pgrx::check_for_interrupts!();
        // A new batch is rescored whole, so its rows come back in exact
        // order among themselves (filtered scans read many batches).
        need = need.max(st.rescored_count + st.results.len());
    }
}

/// The next row of a rescoring scan: its whole first batch
/// (`oversampling x ef_search` candidates by code, from a walk with beam
/// `sqrt(oversampling) x ef_search`) is rescored before the first row;
/// iterative scans rescore each later batch whole and keep at least
/// `oversampling` candidates rescored per row returned. A candidate
/// rescored later that is nearer than a row already returned is dropped
/// unless the order may be relaxed (as pgvector's strict_order does).
fn next_rescored(scan: pg_sys::IndexScanDesc, st: &mut ScanState) -> Option<(f32, ItemRef)> {
    let relaxed = options::iterative_scan() == IterativeScan::RelaxedOrder;
    loop {
        let per_row = (OVERSAMPLING.get() * (st.rows as f64 + 1.0)).ceil() as usize;
        let need = per_row.max(batch_shape(st.ef, true).1);
        rescore_until(scan, st, need);
        let Reverse(Rescored(d, tid)) = st.rescored.pop()?;
        if d < st.last_distance && !relaxed {
            continue;
        }
        return Some((d, tid));
    }
}

/// `pgstat_count_index_scan`, a C macro: counts the scan in
/// `pg_stat_user_indexes.idx_scan`, as btree's and pgvector's scans do.
///
/// # Safety
/// `index` must be an open relation.
pub(crate) unsafe fn count_index_scan(index: pg_sys::Relation) {
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    // SAFETY: pgstat_info is NULL or the relation's live stats entry.
    unsafe {
        if !(*index).pgstat_info.is_null() {
            (*(*index).pgstat_info).t_counts.t_numscans += 1;
        }
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    // SAFETY: as pgstat_should_count_relation does: associate the stats
    // entry on first use when statistics are enabled for the relation.
    unsafe {
        if !(*index).pgstat_enabled {
            return;
        }
        if (*index).pgstat_info.is_null() {
            pg_sys::pgstat_assoc_relation(index);
        }
        if !(*index).pgstat_info.is_null() {
            #[cfg(feature = "pg15")]
            {
                (*(*index).pgstat_info).t_counts.t_numscans += 1;
            }
            #[cfg(not(feature = "pg15"))]
            {
                (*(*index).pgstat_info).counts.numscans += 1;
            }
        }
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    if !st.started {
        st.started = true;
        // SAFETY: the descriptor and its index relation are live during the scan.
        unsafe { count_index_scan((*scan).indexRelation) };
        st.started_at = crate::metrics::enabled().then(std::time::Instant::now);
        st.rescoring = st.meta.quantization == Quantization::Binary && RESCORE.get() && !st.no_query;
        start_walk(scan, st);
    }
    loop {
        let next = if st.rescoring { next_rescored(scan, st) } else { st.results.pop_front() };
        if let Some((d, heap)) = next {
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
        if st.rescoring {
            return false;
        }
        if !st.results.is_empty() {
            continue; // rescoring was impossible: code order it is
        }
        match may_continue(st) {
            Continue::No => return false,
            Continue::Walk => next_batch(st),
            Continue::Drain => drain_measured(st),
        }
        pgrx::check_for_interrupts!();
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
    st.rescored = BinaryHeap::new();
    st.search = None;
}
