//! The graph as it lives in index pages, seen through the core's traits,
//! and the conversion of indexed values into the bytes the index stores.

use super::buffer_hints::{prefetch_line, BlockHints};
use super::page::{corrupted, item, line_pointer_at};
use pgrx::pg_sys;
use quiver_core::hnsw::fasthash::IdHashMap;
use quiver_core::hnsw::layout::{self, ElementShape, ItemRef, Meta, StoredVector};
use quiver_core::hnsw::{Candidate, Graph, PairDistance, QueryDistance};
use quiver_core::quantize::{BinaryCodec, BinaryQuery, Quantization};
use quiver_core::space::{distance_raw, from_f32, normalize_raw, to_f32, AlignedBytes, ElementKind, Metric};

/// How many elements ahead of the distance being computed are requested
/// from memory (see `DiskGraph::prefetch`). On WordNet (AMD EPYC, medians
/// of alternating rounds in one session) 2, 3, 4, 6 and 8 ahead all gave
/// 1075-1311 QPS at ef_search 40 where requesting every element of an
/// expansion up front gave 982-1087; at ef_search 20 4 ahead gave 1650
/// against 1496, at 100 689 against 632.
const ELEMENTS_AHEAD: usize = 4;

/// The bytes an index stores for a `vector`/`halfvec`/`bit` datum, checked
/// against the index's dimensions; None for a zero vector under cosine
/// (its direction is undefined, so like pgvector it is not indexed).
pub fn index_value(datum: pg_sys::Datum, meta: &Meta) -> Option<AlignedBytes> {
    let v = checked_value(datum, meta, || {});
    if meta.kind == ElementKind::Sparse && v.as_bytes().len() / 8 > SPARSE_MAX_NNZ {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("sparsevec cannot have more than {SPARSE_MAX_NNZ} non-zero elements for hnsw index")
        );
    }
    normalized(v, meta)
}

/// pgvector's limit on the non-zero elements of an indexed sparsevec.
pub const SPARSE_MAX_NNZ: usize = 1000;

/// The vector bytes of `datum` as given, checked against the index's
/// dimensions (`before_error` runs before a mismatch is raised).
pub fn checked_value(datum: pg_sys::Datum, meta: &Meta, before_error: impl FnOnce()) -> AlignedBytes {
    let (dims, bytes) = crate::varlena::datum_payload(datum, meta.kind);
    if dims != meta.dims as usize {
        before_error();
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("expected {} dimensions, not {}", meta.dims, dims)
        );
    }
    AlignedBytes::from_bytes(&bytes)
}

/// What the index compares for a checked value: itself, or its direction
/// under cosine; None for a zero vector under cosine.
pub fn normalized(mut v: AlignedBytes, meta: &Meta) -> Option<AlignedBytes> {
    if meta.metric == Metric::Cosine && !normalize_raw(meta.kind, &mut v) {
        return None;
    }
    Some(v)
}

/// What a search learns about an element besides its distance.
#[derive(Debug, Clone, Copy)]
pub struct ElementInfo {
    pub heap: ItemRef,
    pub deleted: bool,
}

/// Reads the graph from pages; each access pins and share-locks one page
/// briefly, so readers and writers only ever meet on single pages.
pub struct DiskGraph {
    pub index: pg_sys::Relation,
    pub shape: ElementShape,
    pub metric: Metric,
    pub kind: ElementKind,
    /// High-dimensional sparse vectors: linked by the cosine, lists filled
    /// (`quiver_core::space::links_by_cosine`).
    pub links_by_cosine: bool,
    pub query: AlignedBytes,
    /// A scan without a query (NULL, or a zero vector under cosine): every
    /// element is at distance 0, so the walk returns what it reaches first,
    /// as pgvector's scan does, instead of nothing.
    pub no_query: bool,
    /// Facts about every element whose distance was computed.
    pub info: IdHashMap<u64, ElementInfo>,
    /// Vectors of the elements neighbour selection compares pairwise,
    /// read from their pages the first time a pair distance needs them.
    /// Only those are copied: copying every element a search measured
    /// (about 1000 vectors of 1.5 kB per WordNet insert) cost an insert a
    /// quarter of its time in allocation and page faults (2 clients: 775
    /// rows/s against 1067 without, medians of 5 alternating rounds).
    vectors: IdHashMap<u64, AlignedBytes>,
    /// Where this backend last found each index block (no pins are held
    /// between accesses: each pins, locks, reads and releases its page).
    hints: BlockHints,
    /// The nodes `prefetch` was told of, in order: probable page address
    /// and item pointer address of each; and how many of their elements
    /// have been requested.
    prefetching: Vec<(*const u8, *const u8)>,
    prefetched: usize,
    /// A binary-quantized index's codec (elements hold codes, not vectors),
    /// and the query prepared against it for the current `metric`.
    codec: Option<BinaryCodec>,
    prepared: Option<BinaryQuery>,
}

impl DiskGraph {
    pub fn new(index: pg_sys::Relation, meta: &Meta, query: AlignedBytes) -> Self {
        DiskGraph {
            index,
            shape: ElementShape { params: meta.params(), vector_bytes: meta.stored_bytes() },
            metric: meta.metric,
            kind: meta.kind,
            links_by_cosine: quiver_core::space::links_by_cosine(meta.kind, meta.dims),
            query,
            no_query: false,
            info: IdHashMap::default(),
            vectors: IdHashMap::default(),
            // SAFETY: the caller's index is open for the life of this graph.
            hints: unsafe { BlockHints::for_index(index) },
            prefetching: Vec::new(),
            prefetched: 0,
            codec: (meta.quantization == Quantization::Binary).then(|| super::page::read_codec(index, meta)),
            prepared: None,
        }
    }

    /// What an element stores for the index value `v`: `v` itself, or its
    /// code in a quantized index.
    pub fn stored_form(&self, v: &AlignedBytes) -> AlignedBytes {
        match &self.codec {
            None => v.clone(),
            Some(c) => {
                let mut code = AlignedBytes::from_bytes(&vec![0u8; c.code_bytes()]);
                c.encode(&to_f32(self.kind, v.as_bytes()), code.as_bytes_mut());
                code
            }
        }
    }

    /// Element `r`'s vector as a query (VACUUM searches with it to relink
    /// the element): the stored vector, or what a code stands for; None
    /// when the slot is empty.
    pub fn element_as_query(&mut self, r: ItemRef) -> Option<AlignedBytes> {
        let stored = self.stored_vector(r)?;
        Some(match &self.codec {
            None => stored,
            Some(c) => from_f32(self.kind, &c.decode(stored.as_bytes())),
        })
    }

    /// The query prepared against the codec for the current metric (inserts
    /// and VACUUM switch to the construction metric after `new`).
    fn prepare(&mut self) {
        if let Some(c) = &self.codec {
            if self.prepared.as_ref().map(|p| p.metric()) != Some(self.metric) {
                self.prepared = Some(c.query(&to_f32(self.kind, self.query.as_bytes()), self.metric));
            }
        }
    }

    /// Greedy descent (beam 1) from the entry point through the levels
    /// above `down_to`; returns the nearest element found, the start for
    /// the search on level `down_to`.
    pub fn descend(&mut self, entry: ItemRef, top: usize, down_to: usize) -> Vec<Candidate<u64>> {
        quiver_core::hnsw::descend(self, entry.pack(), top, down_to)
    }

    /// Element `r`'s stored vector (or code), wherever it is kept; None when
    /// the slot is empty or was reclaimed meanwhile.
    pub fn stored_vector(&mut self, r: ItemRef) -> Option<AlignedBytes> {
        let shape = self.shape;
        let found = self.with_element_if_present(r, |b| match shape.vector(b) {
            StoredVector::Inline(v) => Ok(AlignedBytes::from_bytes(v)),
            StoredVector::Apart(at) => Err((at, ElementShape::heap(b))),
        })?;
        match found {
            Ok(v) => Some(v),
            Err((at, heap)) => self.with_vector_item(at, r, heap, AlignedBytes::from_bytes),
        }
    }

    /// Runs `f` on the vector stored apart at `at` for element `owner`
    /// (whose heap tuple is `heap`), under a share lock. The element's page
    /// was released before this one is read (one lock at a time, as every
    /// reader here), so VACUUM may have reclaimed both meanwhile and an
    /// insert reused the slot: a vector item that names another owner is
    /// treated as reclaimed (None), like an empty element slot.
    pub fn with_vector_item<T>(
        &mut self,
        at: ItemRef,
        owner: ItemRef,
        heap: ItemRef,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        let want = (!self.shape.variable()).then_some(self.shape.vector_bytes);
        let checked = self.with_page(at.block, |page| {
            let found = item(page, at.offset).and_then(|b| {
                let b: &[u8] = b;
                layout::vector_item_owner_of(b)
            });
            match found {
                Some((o, h, v)) if o == owner && h == heap => match want {
                    Some(n) if v.len() != n => Err(format!(
                        "vector item ({},{}) of element ({},{}) has {} bytes, needs {n}",
                        at.block,
                        at.offset,
                        owner.block,
                        owner.offset,
                        v.len()
                    )),
                    _ => Ok(Some(f(v))),
                },
                _ => Ok(None),
            }
        });
        checked.unwrap_or_else(|detail| corrupted(self.index, &detail))
    }

    /// Runs `f` on page `block` under a share lock. `f` must not raise an
    /// error (plain Rust code): the lock and the pin are released after it.
    fn with_page<T>(&mut self, block: u32, f: impl FnOnce(pg_sys::Page) -> T) -> T {
        // SAFETY: the index is open for as long as this graph exists.
        let buffer = unsafe { self.hints.read_buffer(self.index, block) };
        // SAFETY: we hold a pin on `buffer`; the share lock and the pin are
        // released below, and `f` cannot raise an error in between.
        unsafe { pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32) };
        // SAFETY: the buffer is pinned (read_buffer above).
        let out = f(unsafe { pg_sys::BufferGetPage(buffer) });
        // SAFETY: we took this share lock and this pin above.
        unsafe { pg_sys::UnlockReleaseBuffer(buffer) };
        out
    }

    /// Runs `f` on the bytes of element `r` under a share lock; an element
    /// that is not there is corruption.
    pub fn with_element<T>(&mut self, r: ItemRef, f: impl FnOnce(&[u8]) -> T) -> T {
        match self.with_element_if_present(r, f) {
            Some(v) => v,
            None => corrupted(self.index, &format!("no element at ({},{})", r.block, r.offset)),
        }
    }

    /// Runs `f` on the bytes of element `r` under a share lock; None when
    /// the slot is empty. A search may hold a link read before VACUUM
    /// reclaimed the element it pointed to (VACUUM waits for inserts, not
    /// for scans); such a link leads nowhere and is skipped.
    pub fn with_element_if_present<T>(&mut self, r: ItemRef, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let shape = self.shape;
        let checked = self.with_page(r.block, |page| match item(page, r.offset) {
            None => Ok(None),
            Some(bytes) => match shape.validate(bytes) {
                Err(e) => Err(format!("element at ({},{}): {e}", r.block, r.offset)),
                Ok(_) => Ok(Some(f(bytes))),
            },
        });
        checked.unwrap_or_else(|detail| corrupted(self.index, &detail))
    }

    /// Requests the next queued element (see `prefetch`): its header line
    /// and its vector's lines. The item pointer, requested earlier, says
    /// where the element starts; it is read without pin or lock on
    /// purpose, since the value only chooses which lines to prefetch (a
    /// hint that cannot fault), it is bounds-checked here, and `distance`
    /// reads the element again with its page pinned and locked.
    ///
    /// `distance` reads the header (level, flags, heap pointer) and the
    /// vector, which follows the neighbour slots; the slots are read only
    /// for the few elements a search expands. The vector's place is that
    /// of a level-0 element (15 in 16 are). All of its lines are
    /// requested: on WordNet (384 dimensions, 24 lines) that measured 1586
    /// QPS against 1399 for its first 8 lines and 1150 for its first 4
    /// (medians of 5 alternating rounds).
    fn prefetch_ahead(&mut self) {
        const PAGE: usize = pg_sys::BLCKSZ as usize;
        const LINE: usize = 64;
        let Some(&(page, line_pointer)) = self.prefetching.get(self.prefetched) else { return };
        self.prefetched += 1;
        // SAFETY: in bounds of a shared buffer, which stays mapped (see above).
        let id = unsafe { std::ptr::read_volatile(line_pointer as *const u32) };
        let (start, len) = ((id & 0x7fff) as usize, (id >> 17) as usize);
        if start + len > PAGE {
            return;
        }
        let vector = start + self.shape.vector_offset(0);
        let end = if self.shape.variable() { start + len } else { (start + len).min(vector + self.shape.vector_bytes) };
        // SAFETY (both): `start + len` is inside the page.
        // SAFETY: `start + len` is inside the page; only an address to prefetch.
        prefetch_line(unsafe { page.add(start) });
        let mut at = vector & !(LINE - 1);
        while at < end {
            // SAFETY: `start + len` is inside the page; only an address to prefetch.
            prefetch_line(unsafe { page.add(at) });
            at += LINE;
        }
    }

    /// Reads element `node`'s vector into the cache unless it is there.
    fn cache_vector(&mut self, node: u64) {
        if !self.vectors.contains_key(&node) {
            let r = ItemRef::unpack(node);
            let Some(v) = self.stored_vector(r) else {
                corrupted(self.index, &format!("no element at ({},{})", r.block, r.offset))
            };
            self.vectors.insert(node, v);
        }
    }
}

impl Graph for DiskGraph {
    type Node = u64;
    fn neighbors(&mut self, node: u64, level: usize, out: &mut Vec<u64>) {
        let shape = self.shape;
        let mut refs = Vec::new();
        self.with_element_if_present(ItemRef::unpack(node), |b| {
            if ElementShape::level(b) >= level {
                shape.neighbors(b, level, &mut refs)
            }
        });
        out.extend(refs.iter().map(|r| r.pack()));
    }
}

impl QueryDistance<u64> for DiskGraph {
    fn distance(&mut self, node: u64) -> f32 {
        self.prefetch_ahead();
        let r = ItemRef::unpack(node);
        let (shape, kind, metric, no_query) = (self.shape, self.kind, self.metric, self.no_query);
        if !no_query {
            self.prepare();
        }
        // Moved out for the call (with_element borrows self mutably), put back below.
        let query = std::mem::take(&mut self.query);
        let prepared = self.prepared.take();
        let measure = |v: &[u8]| match &prepared {
            _ if no_query => 0.0,
            Some(bq) => bq.distance(v),
            None => distance_raw(kind, metric, query.as_bytes(), v),
        };
        let found = self.with_element_if_present(r, |b| {
            let info = ElementInfo { heap: ElementShape::heap(b), deleted: ElementShape::is_deleted(b) };
            match shape.vector(b) {
                StoredVector::Inline(v) => (Ok(measure(v)), info),
                StoredVector::Apart(at) => (Err(at), info),
            }
        });
        let found = match found {
            Some((Ok(d), info)) => Some((d, info)),
            Some((Err(at), info)) => self.with_vector_item(at, r, info.heap, measure).map(|d| (d, info)),
            None => None,
        };
        // A reclaimed slot: infinitely far, never a result, no links.
        let (d, info) = found.unwrap_or((f32::INFINITY, ElementInfo { heap: r, deleted: true }));
        self.query = query;
        self.prepared = prepared;
        self.info.insert(node, info);
        d
    }

    /// Asks the CPU to start loading the elements of `nodes`, which
    /// `distance` is asked for next, in this order. Nothing is pinned here
    /// (a pin per page held through an expansion overflowed the backend's
    /// small pin array into a hash table, and pinning is where the buffer
    /// header's miss was paid): each page is located through its buffer
    /// hint, and a page that changed buffers meanwhile costs only a
    /// useless prefetch; `distance` pins and checks properly.
    ///
    /// The buffer headers and item pointers of all nodes are requested at
    /// once (three lines each). The elements themselves (25 lines each on
    /// WordNet) are requested a few nodes ahead of the distance being
    /// computed (`prefetch_ahead`, called by `distance`), so that loading
    /// them overlaps the distances' own work instead of preceding it:
    /// requesting every element of an expansion up front stalled on the
    /// CPU's limit of outstanding misses before the first distance began.
    fn prefetch(&mut self, nodes: &[u64]) {
        const PAGE: usize = pg_sys::BLCKSZ as usize;
        let mut todo = std::mem::take(&mut self.prefetching);
        todo.clear();
        for &n in nodes {
            let r = ItemRef::unpack(n);
            let slot = line_pointer_at(r.offset);
            if let Some(page) = self.hints.prefetch_page(r.block) {
                if slot + 4 <= PAGE {
                    // SAFETY: in bounds of the page's buffer (only an address).
                    let line_pointer = unsafe { page.add(slot) };
                    prefetch_line(line_pointer);
                    todo.push((page, line_pointer));
                }
            }
        }
        self.prefetching = todo;
        self.prefetched = 0;
        for _ in 0..ELEMENTS_AHEAD {
            self.prefetch_ahead();
        }
    }

    /// Deleted elements are walked through but never results, and never
    /// chosen as neighbours of new elements.
    fn accept(&mut self, node: u64) -> bool {
        self.info.get(&node).map(|i| !i.deleted).unwrap_or(true)
    }
}

impl PairDistance<u64> for DiskGraph {
    /// Neighbour selection compares stored elements pairwise, many times
    /// each: their vectors are read once and compared in place.
    fn pair_distance(&mut self, a: u64, b: u64) -> f32 {
        self.cache_vector(a);
        self.cache_vector(b);
        let (va, vb) = (self.vectors[&a].as_bytes(), self.vectors[&b].as_bytes());
        match &self.codec {
            Some(c) => c.pair_distance(self.metric, va, vb),
            None => distance_raw(self.kind, self.metric, va, vb),
        }
    }
}
