//! Rows into lists (INSERT, and the build's second pass) and out of them
//! (VACUUM). Lock order: a list's directory page, then its entry pages;
//! VACUUM and scans hold one page at a time.

use super::build::{nearest_list, stored_value};
use super::layout::{self, IvfMeta};
use crate::hnsw::page::{add_item, free_space, item, max_offset, nblocks, new_page, LockedBuffer, PageWrite};
use pgrx::pg_sys;

/// Appends `entry` to the list whose chain runs from `first` to `last`
/// (InvalidBlockNumber when empty): on the last page when it has room,
/// else on a new page linked after it. `directory`, when given, is the
/// list's directory item (block, offset), exclusively locked by the caller's
/// `dir` buffer, and is updated in the same WAL record. Returns the chain's
/// new ends.
pub fn append(
    index: pg_sys::Relation,
    first: u32,
    last: u32,
    entry: &[u8],
    directory: Option<(LockedBuffer, u16)>,
) -> (u32, u32) {
    let invalid = pg_sys::InvalidBlockNumber;
    let last_buf = (last != invalid).then(|| LockedBuffer::read(index, last, true));
    if let Some(b) = &last_buf {
        if free_space(b.page()) >= layout::needs(entry.len()) {
            let b = last_buf.expect("checked");
            drop(directory); // the chain's ends do not change
            let mut w = PageWrite::start(index);
            let p = w.register(b, false);
            add_item(p, entry).expect("room checked under the lock");
            w.finish();
            return (first, last);
        }
    }
    let fresh = new_page(index);
    let new_block = fresh.block();
    let mut w = PageWrite::start(index);
    if let Some((dir_buf, offset)) = directory {
        let p = w.register(dir_buf, false);
        let Some(it) = item(p, offset) else { layout::corrupted(index, "directory item vanished") };
        let first_now = if first == invalid { new_block } else { first };
        it[..4].copy_from_slice(&first_now.to_le_bytes());
        it[4..8].copy_from_slice(&new_block.to_le_bytes());
    }
    if let Some(b) = last_buf {
        let p = w.register(b, false);
        layout::set_next(p, new_block);
    }
    let p = w.register(fresh, true);
    layout::init_entry_page(p);
    add_item(p, entry).expect("an entry fits an empty page (checked at build)");
    w.finish();
    (if first == invalid { new_block } else { first }, new_block)
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
    // SAFETY: one indexed column; values/isnull/heap_tid valid for the call.
    if unsafe { *isnull } {
        return false;
    }
    let meta = layout::read_meta(index);
    let Some(v) = stored_value(unsafe { *values }, &meta) else { return false };
    let lists = layout::read_directory(index, &meta);
    let centers: Vec<Vec<u8>> = lists.iter().map(|l| l.center.clone()).collect();
    let target = &lists[nearest_list(&meta, &centers, v.as_bytes())];
    let entry = layout::entry_item(unsafe { &*heap_tid }, v.as_bytes());
    // The chain's ends as they are now, under the directory page's lock.
    let dir = LockedBuffer::read(index, target.block, true);
    let Some(it) = item(dir.page(), target.offset) else { layout::corrupted(index, "directory item vanished") };
    let (first, last, _) = layout::parse_directory_item(it);
    append(index, first, last, &entry, Some((dir, target.offset)));
    false
}

fn result(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: a zeroed result for Postgres to read.
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()) as *mut _ }
    } else {
        stats
    }
}

/// The entry pages: every block after the directory.
fn entry_blocks(index: pg_sys::Relation, meta: &IvfMeta) -> std::ops::Range<u32> {
    meta.directory_last + 1..nblocks(index)
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    let stats = result(stats);
    // SAFETY: valid info from VACUUM.
    let index = unsafe { (*info).index };
    let meta = layout::read_meta(index);
    let callback = callback.expect("bulk delete callback");
    let (mut removed, mut kept) = (0.0, 0.0);
    for block in entry_blocks(index, &meta) {
        pgrx::check_for_interrupts!();
        let dead: Vec<u16> = {
            let buf = LockedBuffer::read(index, block, false);
            (1..=max_offset(buf.page()))
                .filter(|off| {
                    item(buf.page(), *off).is_some_and(|it| {
                        let mut tid = layout::entry_tid(it);
                        // SAFETY: the callback only reads the TID.
                        unsafe { callback(&mut tid, callback_state) }
                    })
                })
                .collect()
        };
        if dead.is_empty() {
            let buf = LockedBuffer::read(index, block, false);
            kept += (1..=max_offset(buf.page())).filter(|o| item(buf.page(), *o).is_some()).count() as f64;
            continue;
        }
        let buf = LockedBuffer::read(index, block, true);
        let mut w = PageWrite::start(index);
        let p = w.register(buf, false);
        // Only inserts append, so the offsets read above still hold these rows.
        let mut offsets = dead.clone();
        // SAFETY: `p` is the logged copy of an exclusively locked page;
        // PageIndexMultiDelete removes the sorted, valid offsets given.
        unsafe { pg_sys::PageIndexMultiDelete(p, offsets.as_mut_ptr(), offsets.len() as i32) };
        kept += (1..=max_offset(p)).filter(|o| item(p, *o).is_some()).count() as f64;
        w.finish();
        removed += dead.len() as f64;
    }
    // SAFETY: stats is ours.
    unsafe {
        (*stats).tuples_removed += removed;
        (*stats).num_index_tuples = kept;
        (*stats).num_pages = nblocks(index);
    }
    stats
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: valid info from VACUUM.
    if unsafe { (*info).analyze_only } {
        return stats;
    }
    if !stats.is_null() {
        return stats;
    }
    // No bulk delete ran (nothing to remove): count what is there.
    let stats = result(stats);
    let index = unsafe { (*info).index };
    let meta = layout::read_meta(index);
    let mut live = 0.0;
    for block in entry_blocks(index, &meta) {
        let buf = LockedBuffer::read(index, block, false);
        live += (1..=max_offset(buf.page())).filter(|o| item(buf.page(), *o).is_some()).count() as f64;
    }
    // SAFETY: stats is ours.
    unsafe {
        (*stats).num_index_tuples = live;
        (*stats).num_pages = nblocks(index);
        (*stats).estimated_count = false;
    }
    stats
}
