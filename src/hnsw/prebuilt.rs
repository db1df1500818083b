//! Graphs handed to the next build of a table's index: a snapshot restore
//! (`crate::snapshot_restore`) leaves each shard's stored graph here, with
//! the new heap TID of every row id, and `CREATE INDEX` (`build`) writes
//! that graph instead of linking one. Restore depends on this module, the
//! build only on its own siblings.

use pgrx::pg_sys;
use quiver_core::hnsw::fasthash::IdHashMap;
use quiver_core::hnsw::layout::Meta;
use quiver_core::hnsw::portable::PortableElement;
use std::cell::RefCell;
use std::collections::HashMap;

/// A shard's stored graph and where its rows landed, waiting for the index build.
pub struct PrebuiltGraph {
    pub meta: Meta,
    pub center: Vec<u8>,
    pub elements: Vec<PortableElement>,
    /// new heap TID (packed as `ItemRef::pack`) -> row id
    pub ids: IdHashMap<u64, i64>,
}

struct Waiting {
    /// the handing-over transaction: graphs never outlive it
    xid: pg_sys::TransactionId,
    graphs: HashMap<pg_sys::Oid, PrebuiltGraph>,
}

thread_local! {
    static WAITING: RefCell<Option<Waiting>> = const { RefCell::new(None) };
}

/// Leaves `graphs` (table oid -> graph) for the index builds of this
/// transaction, replacing any left before.
pub fn hand_over(graphs: HashMap<pg_sys::Oid, PrebuiltGraph>) {
    // SAFETY: the caller has written rows, so the transaction has an xid.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    WAITING.with(|p| *p.borrow_mut() = (!graphs.is_empty()).then_some(Waiting { xid, graphs }));
}

/// The graph left for table `heap` by this transaction, if any (taken: a
/// second build of the same table links its own).
pub fn take(heap: pg_sys::Oid) -> Option<PrebuiltGraph> {
    // SAFETY: reads the top transaction's xid, if it has one.
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    WAITING.with(|p| {
        let mut p = p.borrow_mut();
        let same = p.as_ref().map(|x| x.xid == xid && xid != pg_sys::InvalidTransactionId).unwrap_or(false);
        if !same {
            *p = None;
            return None;
        }
        let waiting = p.as_mut().expect("checked above");
        let g = waiting.graphs.remove(&heap);
        if waiting.graphs.is_empty() {
            *p = None;
        }
        g
    })
}
