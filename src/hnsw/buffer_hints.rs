//! Reading index pages without the shared buffer table, when we can.
//!
//! Every page a search visits for the first time costs `ReadBufferExtended`
//! a lookup in the shared buffer mapping table under a partition lock: 14%
//! of a WordNet scan's time, more than the dot products of some queries.
//! This backend remembers in which buffer it last found each index block,
//! and `ReadRecentBuffer` (PostgreSQL 14+) pins that buffer directly when it
//! still holds the block (checking the buffer's tag under its header lock,
//! so a stale hint is only a miss, never a wrong page). The hints are this
//! backend's own memory: no pin is held between calls.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;

/// Blocks of one relation that get a hint (4 bytes each); pages past it
/// are read the ordinary way. 2^21 blocks are a 16 GB index.
const MAX_HINTED_BLOCKS: u32 = 1 << 21;
/// Relations hinted at once; more (other indexes, REINDEX giving a new
/// file) start the table afresh.
const MAX_HINTED_RELATIONS: usize = 16;

thread_local! {
    /// (tablespace, database, relfilenode) -> buffer of each block, 0 = none.
    static HINTS: RefCell<HashMap<[u32; 3], Vec<pg_sys::Buffer>>> = RefCell::new(HashMap::new());
}

/// Pins block `block` of `index`'s main fork (like `ReadBufferExtended`
/// in normal mode), through the hint when it is still good.
///
/// # Safety
/// `index` must be an open relation.
pub unsafe fn read_buffer(index: pg_sys::Relation, block: u32) -> pg_sys::Buffer {
    #[cfg(not(feature = "pg13"))]
    let k = key(index);
    #[cfg(not(feature = "pg13"))]
    if let Some(b) = read_hinted(index, k, block) {
        return b;
    }
    // SAFETY: the caller's relation is open; ReadBufferExtended raises
    // ERROR for a block past the end rather than returning garbage.
    let b = unsafe {
        pg_sys::ReadBufferExtended(index, pg_sys::ForkNumber::MAIN_FORKNUM, block, pg_sys::ReadBufferMode::RBM_NORMAL, std::ptr::null_mut())
    };
    #[cfg(not(feature = "pg13"))]
    remember(k, block, b);
    b
}

#[cfg(not(feature = "pg13"))]
fn key(index: pg_sys::Relation) -> [u32; 3] {
    // SAFETY: the caller of `read_buffer` guarantees an open relation.
    let rel = unsafe { &*index };
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    let k = [rel.rd_node.spcNode.to_u32(), rel.rd_node.dbNode.to_u32(), rel.rd_node.relNode.to_u32()];
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    let k = [rel.rd_locator.spcOid.to_u32(), rel.rd_locator.dbOid.to_u32(), rel.rd_locator.relNumber.to_u32()];
    k
}

#[cfg(not(feature = "pg13"))]
fn read_hinted(index: pg_sys::Relation, k: [u32; 3], block: u32) -> Option<pg_sys::Buffer> {
    let hint = HINTS.with(|h| h.borrow().get(&k).and_then(|v| v.get(block as usize).copied()))?;
    // Only shared buffers are hinted (see `remember`): a hint is a number
    // this backend got from the buffer manager, so it is in range.
    if hint <= 0 {
        return None;
    }
    // SAFETY: `hint` is a valid shared buffer number; ReadRecentBuffer
    // checks under the buffer header lock that it still holds this block
    // and pins it only then.
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    let hit = unsafe { pg_sys::ReadRecentBuffer((*index).rd_node, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) };
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    let hit = unsafe { pg_sys::ReadRecentBuffer((*index).rd_locator, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) };
    hit.then_some(hint)
}

#[cfg(not(feature = "pg13"))]
fn remember(k: [u32; 3], block: u32, buffer: pg_sys::Buffer) {
    // Local buffers (temporary indexes) are cheap to look up already.
    if buffer <= 0 || block >= MAX_HINTED_BLOCKS {
        return;
    }
    HINTS.with(|h| {
        let mut h = h.borrow_mut();
        if !h.contains_key(&k) && h.len() >= MAX_HINTED_RELATIONS {
            h.clear();
        }
        let v = h.entry(k).or_default();
        if v.len() <= block as usize {
            v.resize(block as usize + 1, 0);
        }
        v[block as usize] = buffer;
    });
}
