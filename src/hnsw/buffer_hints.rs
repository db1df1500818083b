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
//!
//! A hint also tells where a block's page and buffer header probably are
//! before anything is pinned, so a search can start loading both for a
//! whole expansion at once (`prefetch_page`) instead of paying their cache
//! misses one after the other.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Blocks of one relation that get a hint (4 bytes each); pages past it
/// are read the ordinary way. 2^21 blocks are a 16 GB index.
const MAX_HINTED_BLOCKS: u32 = 1 << 21;
/// Relations hinted at once; more (other indexes, REINDEX giving a new
/// file) start the table afresh.
const MAX_HINTED_RELATIONS: usize = 16;

type Blocks = Rc<RefCell<Vec<pg_sys::Buffer>>>;

thread_local! {
    /// (tablespace, database, relfilenode) -> buffer of each block, 0 = none.
    static HINTS: RefCell<HashMap<[u32; 3], Blocks>> = RefCell::new(HashMap::new());
}

/// One relation's hints, looked up once per reader instead of per page.
pub struct BlockHints {
    #[cfg(not(feature = "pg13"))]
    blocks: Blocks,
}

impl BlockHints {
    /// The hints of `index`'s current file.
    ///
    /// # Safety
    /// `index` must be an open relation.
    pub unsafe fn for_index(index: pg_sys::Relation) -> Self {
        #[cfg(feature = "pg13")]
        let _ = index;
        BlockHints {
            #[cfg(not(feature = "pg13"))]
            blocks: HINTS.with(|h| {
                let k = key(index);
                let mut h = h.borrow_mut();
                if !h.contains_key(&k) && h.len() >= MAX_HINTED_RELATIONS {
                    // handles still held keep their tables alive
                    h.clear();
                }
                h.entry(k).or_default().clone()
            }),
        }
    }

    /// Pins block `block` of `index`'s main fork (like `ReadBufferExtended`
    /// in normal mode), through the hint when it is still good.
    ///
    /// # Safety
    /// `index` must be the open relation these hints were made for.
    pub unsafe fn read_buffer(&self, index: pg_sys::Relation, block: u32) -> pg_sys::Buffer {
        #[cfg(not(feature = "pg13"))]
        if let Some(hint) = self.hint(block) {
            // SAFETY: `hint` is a shared buffer number this backend got from
            // the buffer manager (see `remember`), so it is in range;
            // ReadRecentBuffer checks under the buffer header lock that it
            // still holds this block and pins it only then.
            #[cfg(any(feature = "pg14", feature = "pg15"))]
            let hit =
                unsafe { pg_sys::ReadRecentBuffer((*index).rd_node, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) };
            #[cfg(not(any(feature = "pg14", feature = "pg15")))]
            let hit =
                unsafe { pg_sys::ReadRecentBuffer((*index).rd_locator, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) };
            if hit {
                return hint;
            }
        }
        // SAFETY: the caller's relation is open; ReadBufferExtended raises
        // ERROR for a block past the end rather than returning garbage.
        let b = unsafe {
            pg_sys::ReadBufferExtended(
                index,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                block,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            )
        };
        #[cfg(not(feature = "pg13"))]
        self.remember(block, b);
        b
    }

    /// The shared buffer that last held `block`, if any.
    #[cfg(not(feature = "pg13"))]
    fn hint(&self, block: u32) -> Option<pg_sys::Buffer> {
        self.blocks.borrow().get(block as usize).copied().filter(|&b| b > 0)
    }

    /// Starts loading the buffer header and the first line of the page
    /// that probably holds `block`, and returns that page's address; None
    /// without a hint. Nothing is pinned: the address is only good for
    /// reads that tolerate a page changing under them (prefetch hints).
    #[cfg(not(feature = "pg13"))]
    pub fn prefetch_page(&self, block: u32) -> Option<*const u8> {
        let hint = self.hint(block)?;
        let i = (hint - 1) as usize;
        // SAFETY: only addresses are computed: `hint` is a valid shared
        // buffer number, and both arrays live in shared memory mapped for
        // the life of the backend, so the addresses are inside them.
        let (desc, page) = unsafe {
            (
                pg_sys::BufferDescriptors.add(i) as *const u8,
                (pg_sys::BufferBlocks as *const u8).add(i * pg_sys::BLCKSZ as usize),
            )
        };
        prefetch_line(desc);
        prefetch_line(page);
        Some(page)
    }

    #[cfg(feature = "pg13")]
    pub fn prefetch_page(&self, _block: u32) -> Option<*const u8> {
        None
    }

    #[cfg(not(feature = "pg13"))]
    fn remember(&self, block: u32, buffer: pg_sys::Buffer) {
        // Local buffers (temporary indexes) are cheap to look up already.
        if buffer <= 0 || block >= MAX_HINTED_BLOCKS {
            return;
        }
        let mut v = self.blocks.borrow_mut();
        if v.len() <= block as usize {
            v.resize(block as usize + 1, 0);
        }
        v[block as usize] = buffer;
    }
}

#[cfg(not(feature = "pg13"))]
fn key(index: pg_sys::Relation) -> [u32; 3] {
    // SAFETY: the caller of `for_index` guarantees an open relation.
    let rel = unsafe { &*index };
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    let k = [rel.rd_node.spcNode.to_u32(), rel.rd_node.dbNode.to_u32(), rel.rd_node.relNode.to_u32()];
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    let k = [rel.rd_locator.spcOid.to_u32(), rel.rd_locator.dbOid.to_u32(), rel.rd_locator.relNumber.to_u32()];
    k
}

/// Starts loading the cache line at `p` (a hint: never faults, never blocks).
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch has no architectural effect and accepts any address;
    // SSE is part of the x86_64 baseline.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
