//! Buffer access for the index: shared reads of items, and [`PageWrite`],
//! the one guard through which every page change after the build goes
//! (GenericXLog start, register, finish; abort when dropped unfinished).

use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ItemRef, LayoutError, Meta, META_SIZE};
use quiver_core::hnsw::origin_seeds::OriginSeeds;

pub const META_BLOCK: u32 = 0;

/// Where a page's item pointers begin: the page header without its flexible
/// array (`SizeOfPageHeaderData`). Taken as the field's offset because
/// bindgen's flexible array is zero-sized, which makes arithmetic on
/// `size_of` of the binding easy to get wrong by one pointer.
pub const LINE_POINTERS_AT: usize = std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);

/// Byte offset within a page of item `offset`'s item pointer (offsets are
/// 1-based, as in `PageGetItemId`).
pub fn line_pointer_at(offset: u16) -> usize {
    LINE_POINTERS_AT + std::mem::size_of::<pg_sys::ItemIdData>() * (offset.max(1) as usize - 1)
}

/// A pinned and locked buffer, released on drop.
pub struct LockedBuffer {
    pub buffer: pg_sys::Buffer,
}

impl LockedBuffer {
    /// Pins `block` of `index` and takes a share or exclusive content lock.
    pub fn read(index: pg_sys::Relation, block: u32, exclusive: bool) -> Self {
        // SAFETY: `index` is open and locked by the caller; ReadBufferExtended
        // raises ERROR for a block past the end instead of returning garbage.
        unsafe {
            let buffer = pg_sys::ReadBufferExtended(
                index,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                block,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            let mode = if exclusive { pg_sys::BUFFER_LOCK_EXCLUSIVE } else { pg_sys::BUFFER_LOCK_SHARE };
            pg_sys::LockBuffer(buffer, mode as i32);
            LockedBuffer { buffer }
        }
    }

    pub fn page(&self) -> pg_sys::Page {
        // SAFETY: the buffer is pinned for our lifetime.
        unsafe { pg_sys::BufferGetPage(self.buffer) }
    }

    pub fn block(&self) -> u32 {
        // SAFETY: pinned buffer.
        unsafe { pg_sys::BufferGetBlockNumber(self.buffer) }
    }
}

impl Drop for LockedBuffer {
    fn drop(&mut self) {
        // SAFETY: we hold the pin and the content lock taken in `read`.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buffer) }
    }
}

/// The bytes of item `offset` on `page`, or None when there is no such item.
pub fn item(page: pg_sys::Page, offset: u16) -> Option<&'static mut [u8]> {
    // SAFETY: the caller holds a lock on the page's buffer for as long as it
    // uses the slice (the 'static here is a lie the callers keep honest by
    // scoping); offsets are checked against PageGetMaxOffsetNumber and the
    // item id's length comes from the page itself.
    unsafe {
        if offset == 0 || offset > pg_sys::PageGetMaxOffsetNumber(page) {
            return None;
        }
        let id = pg_sys::PageGetItemId(page, offset);
        if (*id).lp_flags() != pg_sys::LP_NORMAL {
            return None;
        }
        let len = (*id).lp_len() as usize;
        let p = pg_sys::PageGetItem(page, id) as *mut u8;
        Some(std::slice::from_raw_parts_mut(p, len))
    }
}

pub fn max_offset(page: pg_sys::Page) -> u16 {
    // SAFETY: a locked, initialised page.
    unsafe { pg_sys::PageGetMaxOffsetNumber(page) }
}

pub fn free_space(page: pg_sys::Page) -> usize {
    // SAFETY: a locked, initialised page.
    unsafe { pg_sys::PageGetFreeSpace(page) }
}

/// Appends `data` as a new item; returns its offset, or None when it does not fit.
pub fn add_item(page: pg_sys::Page, data: &[u8]) -> Option<u16> {
    // SAFETY: the page is exclusively locked (or private during build);
    // PageAddItemExtended copies `data` and returns InvalidOffsetNumber (0)
    // when there is no room.
    let off = unsafe { pg_sys::PageAddItemExtended(page, data.as_ptr() as pg_sys::Item, data.len(), 0, 0) };
    (off != 0).then_some(off)
}

pub fn init_page(page: pg_sys::Page) {
    // SAFETY: `page` points to a BLCKSZ buffer we may overwrite.
    unsafe { pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, 0) }
}

/// Usable bytes for items on an empty page (header and one line pointer).
pub fn max_item_size() -> usize {
    pg_sys::BLCKSZ as usize - LINE_POINTERS_AT - 8
}

pub fn meta_from_page(page: pg_sys::Page) -> Result<Meta, LayoutError> {
    match item(page, 1) {
        Some(b) => Meta::from_bytes(b),
        None => Err(LayoutError::Truncated { need: META_SIZE, have: 0 }),
    }
}

/// Reads the meta page under a share lock.
pub fn read_meta(index: pg_sys::Relation) -> Meta {
    let buf = LockedBuffer::read(index, META_BLOCK, false);
    match meta_from_page(buf.page()) {
        Ok(m) => m,
        Err(e) => corrupted(index, &format!("meta page: {e}")),
    }
}

/// Item of the meta page holding a quantized index's center.
pub const CENTER_ITEM: u16 = 2;

/// The codec of a binary-quantized index: its center, from the meta page.
pub fn read_codec(index: pg_sys::Relation, meta: &Meta) -> quiver_core::quantize::BinaryCodec {
    let buf = LockedBuffer::read(index, META_BLOCK, false);
    let want = 2 * meta.dims as usize;
    match item(buf.page(), CENTER_ITEM) {
        Some(b) if b.len() == want => {
            quiver_core::quantize::BinaryCodec::new(quiver_core::quantize::BinaryCodec::center_from_bytes(b))
        }
        Some(b) => corrupted(index, &format!("center item has {} bytes, needs {want}", b.len())),
        None => corrupted(index, "binary-quantized index without a center item"),
    }
}

/// Item of the meta page holding a cosine-linked index's origin seeds
/// (`quiver_core::hnsw::origin_seeds`); such indexes are never quantized, so
/// it is the slot a quantized index's center takes.
pub const ORIGIN_SEEDS_ITEM: u16 = 2;

/// The origin seeds on meta page `page`: none yet when the item is absent
/// (an empty index, or one built before seeds were kept).
pub fn origin_seeds_on(index: pg_sys::Relation, page: pg_sys::Page) -> OriginSeeds {
    match item(page, ORIGIN_SEEDS_ITEM).map(|b| OriginSeeds::from_bytes(b)) {
        Some(Ok(s)) => s,
        Some(Err(e)) => corrupted(index, &format!("origin seeds: {e}")),
        None => OriginSeeds::default(),
    }
}

/// Stores `seeds` on meta page `page`, a copy registered with a
/// [`PageWrite`] (the caller's record logs it).
pub fn put_origin_seeds(index: pg_sys::Relation, page: pg_sys::Page, seeds: &OriginSeeds) {
    let bytes = seeds.to_bytes();
    match item(page, ORIGIN_SEEDS_ITEM) {
        Some(it) => it.copy_from_slice(&bytes),
        None => {
            if add_item(page, &bytes) != Some(ORIGIN_SEEDS_ITEM) {
                corrupted(index, "meta page has no room for the origin seeds");
            }
        }
    }
}

/// The origin seeds, read under a share lock of the meta page.
pub fn read_origin_seeds(index: pg_sys::Relation) -> OriginSeeds {
    let buf = LockedBuffer::read(index, META_BLOCK, false);
    origin_seeds_on(index, buf.page())
}

/// Changes the origin seeds with `f` under the meta page's exclusive lock,
/// in one WAL record.
pub fn update_origin_seeds(index: pg_sys::Relation, f: impl FnOnce(&mut OriginSeeds)) {
    let buf = LockedBuffer::read(index, META_BLOCK, true);
    let mut seeds = origin_seeds_on(index, buf.page());
    f(&mut seeds);
    let mut w = PageWrite::start(index);
    let p = w.register(buf, false);
    put_origin_seeds(index, p, &seeds);
    w.finish();
}

pub fn corrupted(index: pg_sys::Relation, detail: &str) -> ! {
    // SAFETY: rd_rel is valid for an open relation; relname is a NameData.
    let name =
        unsafe { std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()) }.to_string_lossy().into_owned();
    pgrx::ereport!(
        ERROR,
        pgrx::PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("hnsw index \"{name}\" is corrupted"),
        detail.to_string()
    );
}

/// Every page change of an existing index goes through one of these:
/// pages are registered with GenericXLog, changed in its copies, and logged
/// atomically on `finish` (up to four pages per record). Dropping it
/// unfinished (an error unwinding) aborts and leaves the pages untouched.
pub struct PageWrite {
    state: *mut pg_sys::GenericXLogState,
    buffers: Vec<LockedBuffer>,
}

impl PageWrite {
    pub fn start(index: pg_sys::Relation) -> Self {
        // SAFETY: GenericXLogStart only allocates state for `index`.
        PageWrite { state: unsafe { pg_sys::GenericXLogStart(index) }, buffers: Vec::new() }
    }

    /// Registers an exclusively locked buffer (kept until finish); returns
    /// the page copy to modify. `fresh` logs a full image (new pages).
    pub fn register(&mut self, buf: LockedBuffer, fresh: bool) -> pg_sys::Page {
        assert!(self.buffers.len() < 4, "GenericXLog takes at most 4 pages");
        let flags = if fresh { pg_sys::GENERIC_XLOG_FULL_IMAGE as i32 } else { 0 };
        // SAFETY: the buffer is pinned and exclusively locked by us.
        let page = unsafe { pg_sys::GenericXLogRegisterBuffer(self.state, buf.buffer, flags) };
        self.buffers.push(buf);
        page
    }

    pub fn finish(mut self) {
        // SAFETY: writes the registered pages' changes to the buffers and WAL
        // (or just the buffers for unlogged relations) and frees the state.
        unsafe { pg_sys::GenericXLogFinish(self.state) };
        self.state = std::ptr::null_mut();
        self.buffers.clear(); // unlock and release
    }
}

impl Drop for PageWrite {
    fn drop(&mut self) {
        if !self.state.is_null() {
            // SAFETY: the state was started and not finished; abort frees it
            // without touching the buffers.
            unsafe { pg_sys::GenericXLogAbort(self.state) };
        }
    }
}

/// Adds a new page at the end of the index, exclusively locked.
pub fn new_page(index: pg_sys::Relation) -> LockedBuffer {
    // SAFETY: the relation extension lock serialises extenders; P_NEW
    // (InvalidBlockNumber) asks ReadBuffer for a new zeroed block.
    unsafe {
        pg_sys::LockRelationForExtension(index, pg_sys::ExclusiveLock as pg_sys::LOCKMODE);
        let buffer = pg_sys::ReadBufferExtended(
            index,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            pg_sys::InvalidBlockNumber,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
        );
        pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
        pg_sys::UnlockRelationForExtension(index, pg_sys::ExclusiveLock as pg_sys::LOCKMODE);
        LockedBuffer { buffer }
    }
}

pub fn nblocks(index: pg_sys::Relation) -> u32 {
    // SAFETY: open relation.
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

pub fn heap_tid(r: ItemRef) -> pg_sys::ItemPointerData {
    let mut t = pg_sys::ItemPointerData::default();
    t.ip_blkid.bi_hi = (r.block >> 16) as u16;
    t.ip_blkid.bi_lo = r.block as u16;
    t.ip_posid = r.offset;
    t
}

pub fn item_ref(t: &pg_sys::ItemPointerData) -> ItemRef {
    ItemRef { block: ((t.ip_blkid.bi_hi as u32) << 16) | t.ip_blkid.bi_lo as u32, offset: t.ip_posid }
}

/// Inserts hold a heavyweight lock on the meta block number (a page lock,
/// unrelated to buffer content locks) in share mode from before they read the
/// entry point until their last link is written. VACUUM takes it
/// exclusively for a moment to wait until every insert that started before
/// has finished, so no insert still holds a reference it is about to free.
/// Released by `end_insert`, or by the transaction's abort on error.
pub fn begin_insert(index: pg_sys::Relation) {
    // SAFETY: open relation; page locks are transactional.
    unsafe { pg_sys::LockPage(index, META_BLOCK, pg_sys::ShareLock as pg_sys::LOCKMODE) };
}

pub fn end_insert(index: pg_sys::Relation) {
    // SAFETY: taken by begin_insert in this transaction.
    unsafe { pg_sys::UnlockPage(index, META_BLOCK, pg_sys::ShareLock as pg_sys::LOCKMODE) };
}

/// Waits for the inserts in progress (see `begin_insert`); later inserts
/// only start after it returns.
pub fn wait_for_inserts(index: pg_sys::Relation) {
    // SAFETY: open relation; we hold no buffer locks while waiting.
    unsafe {
        pg_sys::LockPage(index, META_BLOCK, pg_sys::ExclusiveLock as pg_sys::LOCKMODE);
        pg_sys::UnlockPage(index, META_BLOCK, pg_sys::ExclusiveLock as pg_sys::LOCKMODE);
    }
}

/// Changes the meta page with `f` under its exclusive lock, in one WAL record.
pub fn update_meta(index: pg_sys::Relation, f: impl FnOnce(&mut Meta)) {
    let buf = LockedBuffer::read(index, META_BLOCK, true);
    let mut meta = match meta_from_page(buf.page()) {
        Ok(m) => m,
        Err(e) => corrupted(index, &format!("meta page: {e}")),
    };
    f(&mut meta);
    let mut w = PageWrite::start(index);
    let p = w.register(buf, false);
    item(p, 1).expect("meta item").copy_from_slice(&meta.to_bytes());
    w.finish();
}

/// A data page the free space map says has `need` bytes free, locked
/// exclusively and checked (the map is only a hint); None when there is none.
/// `held` are pages the caller has locked already (never locked twice).
///
/// A held page the map offers is passed over by marking it full in the map:
/// the caller records its true room once its write is done (`place`). Giving
/// up on it instead sent a vector kept apart to a new page whenever the map
/// still offered the page its element had just taken (under churn about 1
/// insert in 8, each growing the index by a page).
pub fn page_with_free_space(index: pg_sys::Relation, need: usize, held: &[u32]) -> Option<LockedBuffer> {
    // SAFETY: open relation; the FSM returns InvalidBlockNumber when it
    // knows no page with that much room.
    let mut block = unsafe { pg_sys::GetPageWithFreeSpace(index, need) };
    for _ in 0..3 + held.len() {
        if block == pg_sys::InvalidBlockNumber || block == META_BLOCK || block >= nblocks(index) {
            return None;
        }
        let room = if held.contains(&block) {
            0
        } else {
            let b = LockedBuffer::read(index, block, true);
            // SAFETY: the page is exclusively locked.
            let fresh = unsafe { pg_sys::PageIsNew(b.page()) };
            let room = if fresh { 0 } else { free_space(b.page()) };
            if room >= need {
                return Some(b);
            }
            room
        };
        // SAFETY: as above; corrects the stale hint and asks again.
        block = unsafe { pg_sys::RecordAndGetPageWithFreeSpace(index, block, room, need) };
    }
    None
}
