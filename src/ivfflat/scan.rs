//! ivfflat scans: the `ivfflat.probes` lists whose centers are nearest to
//! the query are read in full and their rows returned in distance order.
//! With `ivfflat.iterative_scan = relaxed_order`, a scan that runs out
//! probes the next nearest lists, one at a time, up to `ivfflat.max_probes`
//! (rows of a later list may be nearer than rows already returned).

use super::build::stored_value;
use super::layout::{self, IvfMeta};
use crate::hnsw::options;
use crate::hnsw::page::{item, max_offset, LockedBuffer};
use pgrx::pg_sys;
use quiver_core::space::{distance_raw, AlignedBytes};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An f32 distance ordered by `total_cmp` (NaN last), for the heap.
#[derive(Clone, Copy, PartialEq)]
struct OrderedDistance(f32);
impl Eq for OrderedDistance {}
impl PartialOrd for OrderedDistance {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedDistance {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn pack_tid(t: &pg_sys::ItemPointerData) -> u64 {
    ((t.ip_blkid.bi_hi as u64) << 32) | ((t.ip_blkid.bi_lo as u64) << 16) | t.ip_posid as u64
}

fn unpack_tid(x: u64) -> pg_sys::ItemPointerData {
    let mut t = pg_sys::ItemPointerData::default();
    t.ip_blkid.bi_hi = (x >> 32) as u16;
    t.ip_blkid.bi_lo = (x >> 16) as u16;
    t.ip_posid = x as u16;
    t
}

struct ScanState {
    meta: IvfMeta,
    /// None: a NULL query, or a zero vector under cosine. Every distance is
    /// 0 then, and lists are probed in directory order, as pgvector does.
    query: Option<AlignedBytes>,
    /// First blocks of the lists not yet probed, nearest center last.
    to_probe: Vec<u32>,
    probed: usize,
    /// Rows of the probed lists, nearest on top. A heap, not a sorted list:
    /// building it is linear and a `LIMIT 10` pops ten (sorting all rows of
    /// 20 probed lists was a tenth of the query).
    results: BinaryHeap<Reverse<(OrderedDistance, u64)>>,
    started: bool,
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
            meta: layout::read_meta(index),
            query: None,
            to_probe: Vec::new(),
            probed: 0,
            results: BinaryHeap::new(),
            started: false,
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
    st.to_probe.clear();
    st.probed = 0;
    st.started = false;
    // SAFETY: orderbys holds norderbys keys; the descriptor's own copy is
    // refreshed from them as index AMs are expected to do.
    unsafe {
        if norderbys > 0 && !orderbys.is_null() && orderbys != (*scan).orderByData {
            std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
        if (*scan).numberOfOrderBys < 1 {
            pgrx::error!("cannot scan ivfflat index without order");
        }
        let key = &*(*scan).orderByData;
        st.query =
            if key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 { None } else { stored_value(key.sk_argument, &st.meta) };
    }
}

/// Reads one list's rows into `out`.
fn read_list(index: pg_sys::Relation, st: &ScanState, first: u32, out: &mut Vec<Reverse<(OrderedDistance, u64)>>) {
    let mut block = first;
    let width = st.meta.vector_bytes as usize;
    while block != pg_sys::InvalidBlockNumber {
        pgrx::check_for_interrupts!();
        let buf = LockedBuffer::read(index, block, false);
        let p = buf.page();
        for off in 1..=max_offset(p) {
            let Some(it) = item(p, off) else { continue };
            if it.len() != layout::ENTRY_HEADER + width {
                layout::corrupted(index, &format!("entry ({block},{off}) has {} bytes", it.len()));
            }
            let d = match &st.query {
                Some(q) => distance_raw(st.meta.kind, st.meta.metric, q.as_bytes(), &it[layout::ENTRY_HEADER..]),
                None => 0.0,
            };
            out.push(Reverse((OrderedDistance(d), pack_tid(&layout::entry_tid(it)))));
        }
        block = layout::next_block(p);
    }
}

/// Probes the next `n` lists, adding their rows to what is not yet returned.
fn probe(index: pg_sys::Relation, st: &mut ScanState, n: usize) {
    let mut rows = std::mem::take(&mut st.results).into_vec();
    for _ in 0..n {
        let Some(first) = st.to_probe.pop() else { break };
        st.probed += 1;
        read_list(index, st, first, &mut rows);
    }
    st.results = BinaryHeap::from(rows); // heapify: linear
}

fn start(index: pg_sys::Relation, st: &mut ScanState) {
    st.meta = layout::read_meta(index);
    // Centers are compared where they lie on the directory pages: copying
    // them out cost more than the list scan itself at probes = 1.
    let metric = st.meta.assignment_metric();
    let width = layout::DIRECTORY_HEADER + st.meta.vector_bytes as usize;
    let mut order: Vec<(f32, usize, u32)> = Vec::with_capacity(st.meta.lists as usize);
    for block in st.meta.directory_first..=st.meta.directory_last {
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
            if it.len() != width {
                layout::corrupted(index, &format!("directory item ({block},{off}) has {} bytes", it.len()));
            }
            let (first, _, center) = layout::parse_directory_item(it);
            let d = match &st.query {
                Some(q) => distance_raw(st.meta.kind, metric, center, q.as_bytes()),
                None => 0.0,
            };
            order.push((d, order.len(), first));
        }
    }
    if order.len() != st.meta.lists as usize {
        layout::corrupted(
            index,
            &format!("directory holds {} lists, the meta page says {}", order.len(), st.meta.lists),
        );
    }
    // nearest last, ties in list order
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    st.to_probe = order.into_iter().map(|(_, _, first)| first).collect();
    let probes = options::ivfflat_probes().max(1) as usize;
    probe(index, st, probes);
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    // SAFETY: the descriptor is live during the scan.
    let index = unsafe { (*scan).indexRelation };
    if !st.started {
        st.started = true;
        // SAFETY: the index relation is open for the scan.
        unsafe { crate::hnsw::scan::count_index_scan(index) };
        start(index, st);
    }
    loop {
        if let Some(Reverse((_, tid))) = st.results.pop() {
            // SAFETY: the descriptor is live; the order is exact within
            // what was probed, so nothing needs rechecking.
            unsafe {
                (*scan).xs_heaptid = unpack_tid(tid);
                (*scan).xs_recheck = false;
                (*scan).xs_recheckorderby = false;
            }
            return true;
        }
        let max_probes = options::ivfflat_max_probes().max(options::ivfflat_probes()) as usize;
        if !options::ivfflat_iterative() || st.to_probe.is_empty() || st.probed >= max_probes {
            return false;
        }
        probe(index, st, 1);
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // The state is dropped with the scan's memory context; free the rows early.
    let st = state(scan);
    st.results = BinaryHeap::new();
    st.to_probe = Vec::new();
}
