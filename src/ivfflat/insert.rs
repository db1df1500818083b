//! Rows into lists (INSERT, and the build's second pass) and out of them
//! (VACUUM). Lock order: a list's directory page, then its entry pages;
//! VACUUM and scans hold one page at a time.

use super::build::{nearest_list, stored_value};
use super::layout::{self, IvfMeta};
use crate::hnsw::page::{add_item, free_space, item, max_offset, nblocks, new_page, LockedBuffer, PageWrite};
use pgrx::pg_sys;

/// Adds `entry` to the list whose chain starts at `first`, on the first
/// page from `insert` on with room (VACUUM moves `insert` back to the
/// earliest page it freed room on), else on a new page linked at the end.
/// `directory`, when given, is the list's directory item (buffer locked
/// exclusively by the caller, offset), updated in the same WAL record when
/// the insert page moves. Returns the chain's first and insert pages.
pub fn append(
    index: pg_sys::Relation,
    first: u32,
    insert: u32,
    entry: &[u8],
    mut directory: Option<(LockedBuffer, u16)>,
) -> (u32, u32) {
    let invalid = pg_sys::InvalidBlockNumber;
    let need = layout::needs(entry.len());
    let mut block = insert;
    let mut tail: Option<LockedBuffer> = None;
    while block != invalid {
        let b = LockedBuffer::read(index, block, true);
        if free_space(b.page()) >= need {
            let mut w = PageWrite::start(index);
            if block != insert {
                if let Some((dir_buf, offset)) = directory.take() {
                    set_directory(index, &mut w, dir_buf, offset, first, block);
                }
            }
            let p = w.register(b, false);
            add_item(p, entry).expect("room checked under the lock");
            w.finish();
            return (first, block);
        }
        let next = layout::next_block(b.page());
        if next == invalid {
            tail = Some(b);
            break;
        }
        block = next; // `b` is released here: one entry page held at a time
    }
    let fresh = new_page(index);
    let new_block = fresh.block();
    let first_now = if first == invalid { new_block } else { first };
    let mut w = PageWrite::start(index);
    if let Some((dir_buf, offset)) = directory {
        set_directory(index, &mut w, dir_buf, offset, first_now, new_block);
    }
    if let Some(b) = tail {
        let p = w.register(b, false);
        layout::set_next(p, new_block);
    }
    let p = w.register(fresh, true);
    layout::init_entry_page(p);
    add_item(p, entry).expect("an entry fits an empty page (checked at build)");
    w.finish();
    (first_now, new_block)
}

fn set_directory(
    index: pg_sys::Relation,
    w: &mut PageWrite,
    dir_buf: LockedBuffer,
    offset: u16,
    first: u32,
    insert: u32,
) {
    let p = w.register(dir_buf, false);
    let Some(it) = item(p, offset) else { layout::corrupted(index, "directory item vanished") };
    it[..4].copy_from_slice(&first.to_le_bytes());
    it[4..8].copy_from_slice(&insert.to_le_bytes());
}

/// After VACUUM: each list's inserts start again at the earliest page of
/// its chain with room for a row, so freed space is used before the index
/// grows.
fn rewind_insert_pages(index: pg_sys::Relation, meta: &IvfMeta) {
    let need = layout::needs(layout::ENTRY_HEADER + meta.vector_bytes as usize);
    for l in layout::read_directory(index, meta) {
        pgrx::check_for_interrupts!();
        let mut block = l.first;
        let mut roomy = None;
        while block != pg_sys::InvalidBlockNumber {
            let b = LockedBuffer::read(index, block, false);
            if free_space(b.page()) >= need {
                roomy = Some(block);
                break;
            }
            block = layout::next_block(b.page());
        }
        let Some(roomy) = roomy else { continue };
        let dir = LockedBuffer::read(index, l.block, true);
        let Some(it) = item(dir.page(), l.offset) else { layout::corrupted(index, "directory item vanished") };
        let (first, insert, _) = layout::parse_directory_item(it);
        if insert == roomy {
            continue;
        }
        let mut w = PageWrite::start(index);
        set_directory(index, &mut w, dir, l.offset, first, roomy);
        w.finish();
    }
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
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let Some(v) = stored_value(unsafe { *values }, &meta) else { return false };
    let lists = layout::read_directory(index, &meta);
    let centers: Vec<Vec<u8>> = lists.iter().map(|l| l.center.clone()).collect();
    let target = &lists[nearest_list(&meta, &centers, v.as_bytes())];
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let entry = layout::entry_item(unsafe { &*heap_tid }, v.as_bytes());
    // The chain's ends as they are now, under the directory page's lock.
    let dir = LockedBuffer::read(index, target.block, true);
    let Some(it) = item(dir.page(), target.offset) else { layout::corrupted(index, "directory item vanished") };
    let (first, insert, _) = layout::parse_directory_item(it);
    append(index, first, insert, &entry, Some((dir, target.offset)));
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
    if removed > 0.0 {
        rewind_insert_pages(index, &meta);
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
    // SAFETY: vacuum passes a valid info.
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
