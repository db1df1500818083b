//! Rescoring for binary-quantized indexes: the index ranks candidates by
//! their codes' estimated distances; the exact distance needs the vector,
//! which only the table holds. [`HeapVectors`] reads it for a heap TID the
//! way an index scan's executor would (HOT chain followed, visibility by
//! the scan's snapshot).

use super::page::heap_tid;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ItemRef, Meta};
use quiver_core::space::{distance_raw, AlignedBytes, Metric};

/// A table fetch for one burst of rescoring. Never kept across calls from
/// Postgres: it holds buffer pins, which an abort must not find in a struct
/// that is dropped later (the scan's memory context goes after the
/// resource owner has released them).
pub struct HeapVectors {
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    snapshot: pg_sys::Snapshot,
    attno: i32,
}

impl HeapVectors {
    /// None when the scan has no table or snapshot to read (not the case
    /// for executor index scans).
    pub fn open(scan: pg_sys::IndexScanDesc) -> Option<HeapVectors> {
        // SAFETY: the descriptor is live during the scan; rd_index describes
        // the index's key (one plain column, checked at build).
        unsafe {
            let heap = (*scan).heapRelation;
            let snapshot = (*scan).xs_snapshot;
            if heap.is_null() || snapshot.is_null() {
                return None;
            }
            let attno = *(*(*(*scan).indexRelation).rd_index).indkey.values.as_ptr() as i32;
            if attno <= 0 {
                return None;
            }
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            let fetch = pg_sys::table_index_fetch_begin(heap);
            Some(HeapVectors { fetch, slot, snapshot, attno })
        }
    }

    /// The exact ordering distance from `query` (as given, not normalised)
    /// to the row at `tid`, or None when no version of it is visible to the
    /// scan (or its vector is NULL).
    pub fn distance(&mut self, tid: ItemRef, meta: &Meta, query: &AlignedBytes) -> Option<f32> {
        let mut t = heap_tid(tid);
        let mut call_again = false;
        let mut all_dead = false;
        // SAFETY: fetch and slot belong to this scan's table; the TID came
        // from the index; the datum is read while the slot still holds the
        // tuple (its buffer stays pinned until the next fetch or drop).
        let datum = unsafe {
            let found = pg_sys::table_index_fetch_tuple(
                self.fetch,
                &mut t,
                self.snapshot,
                self.slot,
                &mut call_again,
                &mut all_dead,
            );
            if !found {
                return None;
            }
            let mut isnull = false;
            let d = pg_sys::slot_getattr(self.slot, self.attno, &mut isnull);
            if isnull {
                return None;
            }
            d
        };
        let (dims, bytes) = crate::varlena::datum_payload(datum, meta.kind);
        // SAFETY: the slot's tuple is no longer referenced (bytes were copied).
        unsafe { pg_sys::ExecClearTuple(self.slot) };
        if dims != meta.dims as usize {
            return None;
        }
        let v = AlignedBytes::from_bytes(&bytes);
        if meta.metric == Metric::Cosine {
            // -<q, v> / |v| orders rows as cosine distance does (|q| is the
            // same for all), in two SIMD passes without normalising a copy.
            let norm_sq = -distance_raw(meta.kind, Metric::NegativeDot, v.as_bytes(), v.as_bytes());
            if !(norm_sq > 0.0 && norm_sq.is_finite()) {
                return None; // a zero vector has no cosine distance (not indexed either)
            }
            let neg_dot = distance_raw(meta.kind, Metric::NegativeDot, query.as_bytes(), v.as_bytes());
            return Some(neg_dot / norm_sq.sqrt());
        }
        Some(distance_raw(meta.kind, meta.metric, query.as_bytes(), v.as_bytes()))
    }
}

impl Drop for HeapVectors {
    fn drop(&mut self) {
        // SAFETY: created in `open`, released once here (also while unwinding
        // from an ERROR, before the resource owner releases anything).
        unsafe {
            pg_sys::table_index_fetch_end(self.fetch);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}
