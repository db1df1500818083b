//! VACUUM: elements whose heap tuples are gone are flagged deleted, so scans
//! never return them (their heap slots may be reused). They stay in the
//! graph as routing nodes, which keeps every live element reachable and
//! recall intact; their space is not reclaimed yet (REINDEX compacts).

use super::page::{self, item, max_offset, LockedBuffer, PageWrite};
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
