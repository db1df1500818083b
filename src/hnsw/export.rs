//! Reads a built index into the portable graph of a snapshot
//! (`quiver_core::hnsw::portable`): every live element with its level and
//! neighbours, named by the id of the row it indexes as the snapshot's
//! MVCC snapshot sees that row (HOT chains followed). Elements whose row is
//! not visible (deleted or updated rows VACUUM has not cleaned up yet) go
//! without an id: a restore links across them (see `portable`).
//!
//! Concurrent inserts and VACUUM are not blocked: pages are read one at a
//! time under a share lock, and a link to an element that moved or was
//! never seen is dropped by the restore (the graph stays valid, at worst a
//! few links thinner).

use super::page::{self, heap_tid, item, max_offset, LockedBuffer};
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{self, ElementShape, ItemRef};
use quiver_core::hnsw::portable::{encode_elements, encode_header, PortableElement};

/// Elements per graph record (a few hundred kB each).
const ELEMENTS_PER_RECORD: usize = 2000;

/// Writes the graph of `index_oid` (an hnsw index on `heap_oid`, whose
/// column `id` holds the row ids) as graph record payloads through `emit`,
/// header first. Returns the number of elements written.
pub fn export(
    index_oid: pg_sys::Oid,
    heap_oid: pg_sys::Oid,
    shard: u32,
    snapshot: pg_sys::Snapshot,
    mut emit: impl FnMut(&[u8]),
) -> u64 {
    // SAFETY: both relations exist (the caller found them in the catalog);
    // AccessShareLock is what a reader takes, blocking nothing but DDL.
    let (index, heap) = unsafe {
        (
            pg_sys::index_open(index_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE),
            pg_sys::table_open(heap_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE),
        )
    };
    let meta = page::read_meta(index);
    let center = {
        let buf = LockedBuffer::read(index, page::META_BLOCK, false);
        item(buf.page(), page::CENTER_ITEM).map(|b| b.to_vec()).unwrap_or_default()
    };
    let mut payload = Vec::new();
    encode_header(shard, &meta, &center, &mut payload);
    emit(&payload);

    // SAFETY: attribute lookup by name in an open relation.
    let id_attno = unsafe { pg_sys::get_attnum(heap_oid, c"id".as_ptr()) } as i32;
    if id_attno <= 0 {
        pgrx::error!("snapshot: table has no id column");
    }
    let shape = ElementShape { params: super::build::params_of(&meta), vector_bytes: meta.stored_bytes() };
    let mut rows = RowIds::open(heap, snapshot, id_attno);
    let mut batch: Vec<PortableElement> = Vec::with_capacity(ELEMENTS_PER_RECORD);
    let mut page_elements: Vec<(PortableElement, Option<ItemRef>)> = Vec::new();
    let mut written = 0u64;
    for block in 1..page::nblocks(index) {
        {
            let buf = LockedBuffer::read(index, block, false);
            let p = buf.page();
            // SAFETY: a locked page; new (all-zero) pages have no items.
            if unsafe { pg_sys::PageIsNew(p) } {
                continue;
            }
            for offset in 1..=max_offset(p) {
                let Some(bytes) = item(p, offset) else { continue };
                if layout::is_vector_item(bytes) {
                    continue; // a vector kept apart: rows are read from the table
                }
                let level = match shape.validate(bytes) {
                    Ok(l) => l,
                    Err(e) => page::corrupted(index, &format!("element ({block},{offset}): {e}")),
                };
                let deleted = ElementShape::is_deleted(bytes);
                let neighbors = (0..=level)
                    .map(|l| {
                        let mut v = Vec::new();
                        shape.neighbors(bytes, l, &mut v);
                        v
                    })
                    .collect();
                page_elements.push((
                    PortableElement { at: ItemRef { block, offset }, id: None, neighbors },
                    (!deleted).then(|| ElementShape::heap(bytes)),
                ));
            }
        } // the index page is released before the table is read
        for (mut e, tid) in page_elements.drain(..) {
            e.id = tid.and_then(|t| rows.id_of(t));
            batch.push(e);
        }
        if batch.len() >= ELEMENTS_PER_RECORD {
            written += flush(shard, &mut batch, &mut payload, &mut emit);
        }
        pgrx::check_for_interrupts!();
    }
    written += flush(shard, &mut batch, &mut payload, &mut emit);
    drop(rows);
    // SAFETY: opened above; locks are kept to the end of the transaction.
    unsafe {
        pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    written
}

fn flush(shard: u32, batch: &mut Vec<PortableElement>, payload: &mut Vec<u8>, emit: &mut impl FnMut(&[u8])) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    payload.clear();
    encode_elements(shard, batch, payload);
    emit(payload);
    let n = batch.len() as u64;
    batch.clear();
    n
}

/// The id of the row version a snapshot sees at a heap TID (following a
/// HOT chain from its root, as index scans do).
struct RowIds {
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    snapshot: pg_sys::Snapshot,
    attno: i32,
}

impl RowIds {
    fn open(heap: pg_sys::Relation, snapshot: pg_sys::Snapshot, attno: i32) -> RowIds {
        // SAFETY: an open table; slot and fetch are released in Drop.
        unsafe {
            RowIds {
                fetch: pg_sys::table_index_fetch_begin(heap),
                slot: pg_sys::table_slot_create(heap, std::ptr::null_mut()),
                snapshot,
                attno,
            }
        }
    }

    fn id_of(&mut self, tid: ItemRef) -> Option<i64> {
        let mut t = heap_tid(tid);
        let mut call_again = false;
        let mut all_dead = false;
        // SAFETY: fetch and slot belong to this table; the TID came from its
        // index; the int8 is read by value while the slot holds the tuple.
        unsafe {
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
            let id = (!isnull).then(|| d.value() as i64);
            pg_sys::ExecClearTuple(self.slot);
            id
        }
    }
}

impl Drop for RowIds {
    fn drop(&mut self) {
        // SAFETY: created in `open`, released once here.
        unsafe {
            pg_sys::table_index_fetch_end(self.fetch);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}
