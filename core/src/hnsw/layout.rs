//! Byte layouts of the index pages, independent of Postgres' page API:
//! the glue places these bytes as page items and reads them back.
//!
//! Meta page item (block 0):
//! ```text
//! u32 magic "QVHN" | u32 version | u32 dims | u16 m | u16 ef_construction
//! u8 metric | u8 element kind | u8 quantization (0 none, 1 binary) | u8 reserved
//! u32 entry block (u32::MAX: empty index) | u16 entry offset | u16 entry level
//! u32 insert block (last page that received elements)
//! u64 elements inserted
//! ```
//! A binary-quantized index keeps its center as a second item of the meta
//! page: f16 per dimension (see `quantize`).
//! Element item (blocks >= 1), all little-endian:
//! ```text
//! u8 level | u8 flags | u16 reserved | u32 heap block | u16 heap offset | u16 reserved
//! neighbour slots: 2m for level 0, then m per level above; each u32 block + u16 offset,
//!   valid slots first within a level, empty slots have block u32::MAX
//! padding to 4 bytes | vector bytes (f32, f16 or packed bits), or the
//!   binary code and its correction factors in a quantized index
//! ```
//! An element too large for one item with its vector (pgvector's limits:
//! 2,000 f32, 4,000 f16 or 64,000 bit dimensions, 1,000 sparse non-zeros,
//! at any `m` and level) has flag `FLAG_VECTOR_APART` and, in place of its
//! vector, where the vector is (u32 block + u16 offset + u16 reserved). The
//! vector is then an item of its own, written in the same WAL record:
//! ```text
//! u8 tag 0xFE | 3 reserved | u32 owner block | u16 owner offset
//!   | u16 owner's heap offset | u32 owner's heap block | vector bytes
//! ```
//! Its tag is no valid level, so every pass over elements tells the two
//! apart; the owner (and its heap pointer) lets a reader that followed a
//! stale pointer see that the slot was reclaimed and reused meanwhile.

use super::Params;
use crate::quantize::Quantization;
use crate::space::{ElementKind, Metric};

pub const MAGIC: u32 = u32::from_le_bytes(*b"QVHN");
pub const VERSION: u32 = 1;
pub const META_SIZE: usize = 40;
pub const ELEMENT_HEADER: usize = 12;
pub const SLOT_SIZE: usize = 6;
const NO_BLOCK: u32 = u32::MAX;
pub const FLAG_DELETED: u8 = 1;
/// The element's vector is an item of its own (see the module comment).
pub const FLAG_VECTOR_APART: u8 = 2;
/// First byte of a vector item: above every level an element can have.
pub const VECTOR_ITEM_TAG: u8 = 0xFE;
pub const VECTOR_ITEM_HEADER: usize = 16;
/// Bytes in place of the vector of an element with `FLAG_VECTOR_APART`.
pub const VECTOR_REF_SIZE: usize = 8;

/// Whether a page item is a vector stored apart from its element.
pub fn is_vector_item(item: &[u8]) -> bool {
    item.first() == Some(&VECTOR_ITEM_TAG)
}

/// A vector item for element `owner` (whose heap tuple is `heap`).
pub fn encode_vector_item(owner: ItemRef, heap: ItemRef, vector: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; VECTOR_ITEM_HEADER + vector.len()];
    b[0] = VECTOR_ITEM_TAG;
    set_vector_item_owner(&mut b, owner);
    b[10..12].copy_from_slice(&heap.offset.to_le_bytes());
    b[12..16].copy_from_slice(&heap.block.to_le_bytes());
    b[VECTOR_ITEM_HEADER..].copy_from_slice(vector);
    b
}

pub fn set_vector_item_owner(item: &mut [u8], owner: ItemRef) {
    item[4..8].copy_from_slice(&owner.block.to_le_bytes());
    item[8..10].copy_from_slice(&owner.offset.to_le_bytes());
}

/// The element a vector item belongs to and that element's heap pointer.
pub fn vector_item_owner(item: &[u8]) -> Option<(ItemRef, ItemRef)> {
    if !is_vector_item(item) || item.len() < VECTOR_ITEM_HEADER {
        return None;
    }
    Some((
        ItemRef { block: u32_at(item, 4), offset: u16_at(item, 8) },
        ItemRef { block: u32_at(item, 12), offset: u16_at(item, 10) },
    ))
}

/// The vector bytes of a vector item.
pub fn vector_item_vector(item: &[u8]) -> &[u8] {
    &item[VECTOR_ITEM_HEADER..]
}

/// A vector item's owner, the owner's heap pointer and the vector bytes;
/// None when `item` is not a whole vector item.
pub fn vector_item_owner_of(item: &[u8]) -> Option<(ItemRef, ItemRef, &[u8])> {
    vector_item_owner(item).map(|(o, h)| (o, h, vector_item_vector(item)))
}

/// Where an element's vector is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoredVector<'a> {
    Inline(&'a [u8]),
    Apart(ItemRef),
}

/// Where an element lives: page and line pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemRef {
    pub block: u32,
    pub offset: u16,
}

impl ItemRef {
    pub fn pack(self) -> u64 {
        ((self.block as u64) << 16) | self.offset as u64
    }
    pub fn unpack(v: u64) -> ItemRef {
        ItemRef { block: (v >> 16) as u32, offset: v as u16 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub dims: u32,
    pub m: u16,
    pub ef_construction: u16,
    pub metric: Metric,
    pub kind: ElementKind,
    pub quantization: Quantization,
    pub entry: Option<(ItemRef, u16)>,
    pub insert_block: u32,
    pub elements: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    BadMagic,
    UnsupportedVersion(u32),
    Truncated { need: usize, have: usize },
    BadCode(&'static str),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::BadMagic => write!(f, "not a quiver hnsw index (bad magic number)"),
            LayoutError::UnsupportedVersion(v) => {
                write!(f, "hnsw index has on-disk version {v}; this quiver reads version {VERSION}; REINDEX it")
            }
            LayoutError::Truncated { need, have } => write!(f, "item has {have} bytes, needs {need}"),
            LayoutError::BadCode(what) => write!(f, "unknown {what} code"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl Meta {
    /// Bytes each element stores for its vector (or its code).
    pub fn stored_bytes(&self) -> usize {
        match self.quantization {
            Quantization::None => self.kind.bytes_for(self.dims as usize),
            Quantization::Binary => crate::quantize::code_bytes(self.dims as usize),
        }
    }

    pub fn params(&self) -> Params {
        Params::new(self.m as usize, self.ef_construction as usize)
    }

    pub fn to_bytes(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.dims.to_le_bytes());
        b[12..14].copy_from_slice(&self.m.to_le_bytes());
        b[14..16].copy_from_slice(&self.ef_construction.to_le_bytes());
        b[16] = self.metric.code();
        b[17] = self.kind.code();
        b[18] = self.quantization.code();
        let (eb, eo, el) = match self.entry {
            Some((r, l)) => (r.block, r.offset, l),
            None => (NO_BLOCK, 0, 0),
        };
        b[20..24].copy_from_slice(&eb.to_le_bytes());
        b[24..26].copy_from_slice(&eo.to_le_bytes());
        b[26..28].copy_from_slice(&el.to_le_bytes());
        b[28..32].copy_from_slice(&self.insert_block.to_le_bytes());
        b[32..40].copy_from_slice(&self.elements.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Meta, LayoutError> {
        if b.len() < META_SIZE {
            return Err(LayoutError::Truncated { need: META_SIZE, have: b.len() });
        }
        if u32_at(b, 0) != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let version = u32_at(b, 4);
        if version != VERSION {
            return Err(LayoutError::UnsupportedVersion(version));
        }
        let eb = u32_at(b, 20);
        Ok(Meta {
            dims: u32_at(b, 8),
            m: u16_at(b, 12),
            ef_construction: u16_at(b, 14),
            metric: Metric::from_code(b[16]).ok_or(LayoutError::BadCode("metric"))?,
            kind: ElementKind::from_code(b[17]).ok_or(LayoutError::BadCode("element kind"))?,
            quantization: Quantization::from_code(b[18]).ok_or(LayoutError::BadCode("quantization"))?,
            entry: (eb != NO_BLOCK).then(|| (ItemRef { block: eb, offset: u16_at(b, 24) }, u16_at(b, 26))),
            insert_block: u32_at(b, 28),
            elements: u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")),
        })
    }
}

/// Offsets inside an element item, derived from its level and the index shape.
#[derive(Debug, Clone, Copy)]
pub struct ElementShape {
    pub params: Params,
    pub vector_bytes: usize,
}

impl ElementShape {
    pub fn slots_offset(&self, level: usize) -> usize {
        // level 0 holds 2m slots, each level above m
        ELEMENT_HEADER + if level == 0 { 0 } else { (2 * self.params.m + (level - 1) * self.params.m) * SLOT_SIZE }
    }
    pub fn vector_offset(&self, level: usize) -> usize {
        (ELEMENT_HEADER + self.params.slots(level) * SLOT_SIZE).next_multiple_of(4)
    }
    /// Bytes of an element of `level`; for variable-size elements
    /// (`vector_bytes` 0: sparse vectors) without the vector.
    pub fn size(&self, level: usize) -> usize {
        self.vector_offset(level) + self.vector_bytes
    }

    /// Elements of this index differ in size (sparse vectors): the vector
    /// is the rest of the item.
    pub fn variable(&self) -> bool {
        self.vector_bytes == 0
    }

    /// Whether an element of `level` with a vector of `vector_len` bytes
    /// must keep its vector apart to fit in `item_space` bytes.
    pub fn needs_apart(&self, level: usize, vector_len: usize, item_space: usize) -> bool {
        self.vector_offset(level) + vector_len > item_space
    }

    /// Bytes of an element of `level` whose vector is stored apart.
    pub fn apart_size(&self, level: usize) -> usize {
        self.vector_offset(level) + VECTOR_REF_SIZE
    }

    /// A new element item with no neighbours whose vector is at `vector_at`.
    pub fn encode_apart(&self, level: usize, heap: ItemRef, vector_at: ItemRef) -> Vec<u8> {
        let mut b = self.encode_header(level, heap, self.apart_size(level));
        b[1] |= FLAG_VECTOR_APART;
        Self::set_vector_at(&mut b, vector_at);
        b
    }

    /// Points an element with `FLAG_VECTOR_APART` at its vector item.
    pub fn set_vector_at(item: &mut [u8], at: ItemRef) {
        let o = item.len() - VECTOR_REF_SIZE;
        item[o..o + 4].copy_from_slice(&at.block.to_le_bytes());
        item[o + 4..o + 6].copy_from_slice(&at.offset.to_le_bytes());
    }

    fn encode_header(&self, level: usize, heap: ItemRef, size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0] = level as u8;
        b[4..8].copy_from_slice(&heap.block.to_le_bytes());
        b[8..10].copy_from_slice(&heap.offset.to_le_bytes());
        for s in 0..self.params.slots(level) {
            let o = ELEMENT_HEADER + s * SLOT_SIZE;
            b[o..o + 4].copy_from_slice(&NO_BLOCK.to_le_bytes());
        }
        b
    }

    /// A new element item with no neighbours.
    pub fn encode(&self, level: usize, heap: ItemRef, vector: &[u8]) -> Vec<u8> {
        assert!(self.variable() || vector.len() == self.vector_bytes, "vector size");
        let mut b = self.encode_header(level, heap, self.size(level) + if self.variable() { vector.len() } else { 0 });
        let vo = self.vector_offset(level);
        b[vo..].copy_from_slice(vector);
        b
    }

    /// Checks that `item` is a whole element of this index.
    pub fn validate(&self, item: &[u8]) -> Result<usize, LayoutError> {
        if item.len() < ELEMENT_HEADER {
            return Err(LayoutError::Truncated { need: ELEMENT_HEADER, have: item.len() });
        }
        let level = item[0] as usize;
        if level > super::MAX_LEVEL {
            return Err(LayoutError::BadCode("level"));
        }
        if Self::is_apart(item) {
            let need = self.apart_size(level);
            if item.len() != need {
                return Err(LayoutError::Truncated { need, have: item.len() });
            }
            return Ok(level);
        }
        let need = self.size(level);
        if item.len() < need {
            return Err(LayoutError::Truncated { need, have: item.len() });
        }
        // a sparse vector is whole (index, value) pairs; the merge of two
        // lists stays in bounds whatever their order, so that is all a read
        // needs (inserts store only values pgvector's checks accepted)
        if self.variable() && !(item.len() - need).is_multiple_of(8) {
            return Err(LayoutError::BadCode("sparse vector length"));
        }
        Ok(level)
    }

    pub fn level(item: &[u8]) -> usize {
        item[0] as usize
    }
    pub fn is_deleted(item: &[u8]) -> bool {
        item[1] & FLAG_DELETED != 0
    }
    pub fn set_deleted(item: &mut [u8]) {
        item[1] |= FLAG_DELETED;
    }
    pub fn is_apart(item: &[u8]) -> bool {
        item[1] & FLAG_VECTOR_APART != 0
    }
    pub fn heap(item: &[u8]) -> ItemRef {
        ItemRef { block: u32_at(item, 4), offset: u16_at(item, 8) }
    }

    /// The valid neighbours of `item` on `level`.
    pub fn neighbors(&self, item: &[u8], level: usize, out: &mut Vec<ItemRef>) {
        let n = self.params.max_neighbors(level);
        let base = self.slots_offset(level);
        for s in 0..n {
            let o = base + s * SLOT_SIZE;
            let block = u32_at(item, o);
            if block == NO_BLOCK {
                break;
            }
            out.push(ItemRef { block, offset: u16_at(item, o + 4) });
        }
    }

    /// Replaces the neighbours of `item` on `level` (at most max_neighbors).
    pub fn set_neighbors(&self, item: &mut [u8], level: usize, list: &[ItemRef]) {
        let n = self.params.max_neighbors(level);
        assert!(list.len() <= n, "too many neighbours");
        let base = self.slots_offset(level);
        for s in 0..n {
            let o = base + s * SLOT_SIZE;
            let (block, off) = list.get(s).map(|r| (r.block, r.offset)).unwrap_or((NO_BLOCK, 0));
            item[o..o + 4].copy_from_slice(&block.to_le_bytes());
            item[o + 4..o + 6].copy_from_slice(&off.to_le_bytes());
        }
    }

    /// The element's vector, or where it is stored apart.
    pub fn vector<'a>(&self, item: &'a [u8]) -> StoredVector<'a> {
        if Self::is_apart(item) {
            let o = item.len() - VECTOR_REF_SIZE;
            return StoredVector::Apart(ItemRef { block: u32_at(item, o), offset: u16_at(item, o + 4) });
        }
        let o = self.vector_offset(Self::level(item));
        if self.variable() {
            return StoredVector::Inline(&item[o..]);
        }
        StoredVector::Inline(&item[o..o + self.vector_bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_checks() {
        let m = Meta {
            dims: 384,
            m: 16,
            ef_construction: 64,
            metric: Metric::Cosine,
            kind: ElementKind::F16,
            quantization: Quantization::Binary,
            entry: Some((ItemRef { block: 7, offset: 3 }, 2)),
            insert_block: 9,
            elements: 123,
        };
        assert_eq!(Meta::from_bytes(&m.to_bytes()).unwrap(), m);
        let empty = Meta { entry: None, ..m };
        assert_eq!(Meta::from_bytes(&empty.to_bytes()).unwrap().entry, None);
        let mut b = m.to_bytes();
        b[4] = 9;
        assert_eq!(Meta::from_bytes(&b).unwrap_err(), LayoutError::UnsupportedVersion(9));
        b[0] = 0;
        assert_eq!(Meta::from_bytes(&b).unwrap_err(), LayoutError::BadMagic);
        assert!(Meta::from_bytes(&b[..10]).is_err());
    }

    #[test]
    fn element_layout_round_trip() {
        let shape = ElementShape { params: Params::new(4, 10), vector_bytes: 12 };
        let vec = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut e = shape.encode(2, ItemRef { block: 5, offset: 9 }, &vec);
        assert_eq!(e.len(), shape.size(2));
        assert_eq!(shape.vector_offset(2) % 4, 0);
        assert_eq!(shape.validate(&e).unwrap(), 2);
        let l0: Vec<ItemRef> = (1..=8).map(|i| ItemRef { block: i, offset: i as u16 }).collect();
        let l2 = vec![ItemRef { block: 100, offset: 1 }];
        shape.set_neighbors(&mut e, 0, &l0);
        shape.set_neighbors(&mut e, 2, &l2);
        let mut out = Vec::new();
        shape.neighbors(&e, 0, &mut out);
        assert_eq!(out, l0);
        out.clear();
        shape.neighbors(&e, 1, &mut out);
        assert!(out.is_empty());
        shape.neighbors(&e, 2, &mut out);
        assert_eq!(out, l2);
        assert_eq!(shape.vector(&e), StoredVector::Inline(&vec));
        assert_eq!(ElementShape::heap(&e), ItemRef { block: 5, offset: 9 });
        assert!(!ElementShape::is_deleted(&e));
        ElementShape::set_deleted(&mut e);
        assert!(ElementShape::is_deleted(&e));
        assert!(shape.validate(&e[..e.len() - 1]).is_err());
    }

    #[test]
    fn an_element_with_its_vector_apart_round_trips_and_is_told_from_its_vector() {
        let shape = ElementShape { params: Params::new(16, 64), vector_bytes: 8000 };
        assert!(shape.needs_apart(0, 8000, 8148));
        assert!(!shape.needs_apart(0, 7000, 8148));
        let heap = ItemRef { block: 3, offset: 4 };
        let at = ItemRef { block: 9, offset: 1 };
        let mut e = shape.encode_apart(2, heap, at);
        assert_eq!(e.len(), shape.apart_size(2));
        assert_eq!(shape.validate(&e).unwrap(), 2);
        assert_eq!(shape.vector(&e), StoredVector::Apart(at));
        let l0 = vec![ItemRef { block: 7, offset: 7 }];
        shape.set_neighbors(&mut e, 0, &l0);
        let mut out = Vec::new();
        shape.neighbors(&e, 0, &mut out);
        assert_eq!(out, l0);
        assert_eq!(shape.vector(&e), StoredVector::Apart(at), "links leave the pointer alone");
        assert!(shape.validate(&e[..e.len() - 1]).is_err());
        assert!(!is_vector_item(&e));

        let owner = ItemRef { block: 2, offset: 5 };
        let v: Vec<u8> = (0..8000).map(|i| i as u8).collect();
        let item = encode_vector_item(owner, heap, &v);
        assert!(is_vector_item(&item));
        assert!(shape.validate(&item).is_err(), "a vector item is never taken for an element");
        assert_eq!(vector_item_owner(&item), Some((owner, heap)));
        assert_eq!(vector_item_vector(&item), &v[..]);
        assert_eq!(vector_item_owner(&e), None);
    }

    #[test]
    fn item_refs_pack_in_order() {
        let a = ItemRef { block: 1, offset: 65535 };
        let b = ItemRef { block: 2, offset: 1 };
        assert!(a.pack() < b.pack());
        assert_eq!(ItemRef::unpack(a.pack()), a);
    }
}
