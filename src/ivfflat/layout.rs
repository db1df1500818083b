//! ivfflat pages:
//!
//! ```text
//! block 0        meta: magic "QIVF", version, kind, metric, dims, lists,
//!                center bytes, first and last directory block
//! blocks 1..=D   directory: one item per list, in list order:
//!                first entry block u32 | insert block u32 | center
//!                (inserts go to the first page from the insert block on
//!                with room; VACUUM moves it back to freed room)
//! later blocks   entries of one list, chained through the page's special
//!                space (next block, or InvalidBlockNumber): one item per
//!                row: heap block u32 | heap offset u16 | 2 pad | vector
//! ```
//!
//! Centers and vectors are stored as the hnsw index stores them (cosine:
//! unit length; bit: packed bytes). Page changes go through `PageWrite`.

use crate::hnsw::page::{item, max_offset, LockedBuffer};
use pgrx::pg_sys;
use quiver_core::space::{ElementKind, Metric};

const MAGIC: &[u8; 4] = b"QIVF";
const VERSION: u16 = 1;
pub const META_BLOCK: u32 = 0;
pub const ENTRY_HEADER: usize = 8;
pub const DIRECTORY_HEADER: usize = 8;
/// Special space of an entry page: the next block of its list, then 4 spare bytes.
pub const SPECIAL_SIZE: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct IvfMeta {
    pub kind: ElementKind,
    pub metric: Metric,
    pub dims: u32,
    pub lists: u32,
    pub vector_bytes: u32,
    pub directory_first: u32,
    pub directory_last: u32,
}

impl IvfMeta {
    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(self.kind.code());
        b.push(self.metric.code());
        for v in [self.dims, self.lists, self.vector_bytes, self.directory_first, self.directory_last] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<IvfMeta, String> {
        if b.len() < 28 || &b[..4] != MAGIC {
            return Err("not an ivfflat meta page".into());
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != VERSION {
            return Err(format!("meta page version {version}, this quiver reads {VERSION}"));
        }
        let u = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Ok(IvfMeta {
            kind: ElementKind::from_code(b[6]).ok_or("unknown element kind")?,
            metric: Metric::from_code(b[7]).ok_or("unknown metric")?,
            dims: u(8),
            lists: u(12),
            vector_bytes: u(16),
            directory_first: u(20),
            directory_last: u(24),
        })
    }

    /// The distance lists are chosen by: L2 (Hamming for bits) around
    /// centers, or, for inner product and cosine, the inner product with
    /// unit-length centers (spherical k-means).
    pub fn assignment_metric(&self) -> Metric {
        match self.metric {
            Metric::NegativeDot | Metric::Cosine => Metric::NegativeDot,
            Metric::Hamming => Metric::Hamming,
            _ => Metric::L2Squared,
        }
    }

    pub fn spherical(&self) -> bool {
        matches!(self.metric, Metric::NegativeDot | Metric::Cosine)
    }
}

pub fn corrupted(index: pg_sys::Relation, detail: &str) -> ! {
    crate::hnsw::page::corrupted(index, detail)
}

pub fn read_meta(index: pg_sys::Relation) -> IvfMeta {
    let buf = LockedBuffer::read(index, META_BLOCK, false);
    match item(buf.page(), 1).map(|b| IvfMeta::from_bytes(b)) {
        Some(Ok(m)) => m,
        Some(Err(e)) => corrupted(index, &format!("meta page: {e}")),
        None => corrupted(index, "meta page has no item"),
    }
}

/// One list of the directory, where its item is and what it holds.
#[derive(Debug, Clone)]
pub struct ListEntry {
    pub block: u32,
    pub offset: u16,
    /// First entry block (the insert block is read under the directory page's lock when needed).
    pub first: u32,
    pub center: Vec<u8>,
}

pub fn directory_item(first: u32, last: u32, center: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(DIRECTORY_HEADER + center.len());
    b.extend_from_slice(&first.to_le_bytes());
    b.extend_from_slice(&last.to_le_bytes());
    b.extend_from_slice(center);
    b
}

pub fn parse_directory_item(b: &[u8]) -> (u32, u32, &[u8]) {
    let u = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    (u(0), u(4), &b[DIRECTORY_HEADER..])
}

/// Every list, in list order, read page by page under share locks.
pub fn read_directory(index: pg_sys::Relation, meta: &IvfMeta) -> Vec<ListEntry> {
    let mut out = Vec::with_capacity(meta.lists as usize);
    for block in meta.directory_first..=meta.directory_last {
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
            if it.len() != DIRECTORY_HEADER + meta.vector_bytes as usize {
                corrupted(index, &format!("directory item ({block},{off}) has {} bytes", it.len()));
            }
            let (first, _, center) = parse_directory_item(it);
            out.push(ListEntry { block, offset: off, first, center: center.to_vec() });
        }
    }
    if out.len() != meta.lists as usize {
        corrupted(index, &format!("directory holds {} lists, the meta page says {}", out.len(), meta.lists));
    }
    out
}

pub fn entry_item(tid: &pg_sys::ItemPointerData, vector: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(ENTRY_HEADER + vector.len());
    let block = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&tid.ip_posid.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(vector);
    b
}

pub fn entry_tid(b: &[u8]) -> pg_sys::ItemPointerData {
    let block = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut t = pg_sys::ItemPointerData::default();
    t.ip_blkid.bi_hi = (block >> 16) as u16;
    t.ip_blkid.bi_lo = (block & 0xffff) as u16;
    t.ip_posid = u16::from_le_bytes([b[4], b[5]]);
    t
}

/// Initializes an entry page (special space holding the next block).
pub fn init_entry_page(page: pg_sys::Page) {
    // SAFETY: `page` is a BLCKSZ buffer we may overwrite; PageInit reserves
    // SPECIAL_SIZE bytes at its end, which set_next fills.
    unsafe { pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, SPECIAL_SIZE) };
    set_next(page, pg_sys::InvalidBlockNumber);
}

fn special(page: pg_sys::Page) -> *mut u8 {
    // SAFETY: pd_special is the offset of the special space within the page.
    unsafe { (page as *mut u8).add((*(page as *mut pg_sys::PageHeaderData)).pd_special as usize) }
}

pub fn next_block(page: pg_sys::Page) -> u32 {
    // SAFETY: entry pages have SPECIAL_SIZE bytes of special space.
    unsafe { std::ptr::read_unaligned(special(page) as *const u32) }
}

pub fn set_next(page: pg_sys::Page, next: u32) {
    // SAFETY: as above; the page is exclusively locked or private.
    unsafe { std::ptr::write_unaligned(special(page) as *mut u32, next) }
}

/// Bytes a new item of `len` bytes needs on a page (its line pointer too).
pub fn needs(len: usize) -> usize {
    len.next_multiple_of(8) + std::mem::size_of::<pg_sys::ItemIdData>()
}
