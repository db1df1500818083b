//! CREATE INDEX: scan the heap, link the graph in memory on all cores, then
//! write every page once, outside shared buffers (`bulk_write`).
//! Tuples beyond `maintenance_work_mem` wait in a temporary file and are
//! inserted one by one through the ordinary insert path afterwards.

use super::graph::index_value;
use super::page::{self, add_item, init_page, max_item_size, LockedBuffer, META_BLOCK};
use super::{column_dims, options, resolve_opclass};
use pgrx::pg_sys;
use quiver_core::hnsw::layout::META_SIZE;
use quiver_core::hnsw::layout::{ElementShape, ItemRef, Meta};
use quiver_core::hnsw::memory::MemoryGraph;
use quiver_core::hnsw::portable::{relink, Relinked};
use quiver_core::hnsw::Params;
use quiver_core::quantize::{BinaryCodec, Quantization};
use quiver_core::space::{to_f32, ElementKind, FlatVectors, IndexElement, Metric};
use std::io::{BufReader, BufWriter, Read, Write};

// Build phases in pg_stat_progress_create_index ("building index: <name>");
// Postgres itself reports 1, "initializing", before calling ambuild.
const PHASE_LOAD: i64 = 2;
const PHASE_LINK: i64 = 3;
const PHASE_WRITE: i64 = 4;
const PHASE_INSERT_SPILLED: i64 = 5;

/// The name of a build phase, for `pg_stat_progress_create_index`.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &'static std::ffi::CStr = match phase {
        1 => c"initializing",
        PHASE_LOAD => c"loading tuples",
        PHASE_LINK => c"linking the graph",
        PHASE_WRITE => c"writing pages",
        PHASE_INSERT_SPILLED => c"inserting tuples beyond maintenance_work_mem",
        _ => return std::ptr::null_mut(),
    };
    // Postgres only reads the name; static strings outlive every call.
    name.as_ptr() as *mut std::ffi::c_char
}

/// Index shape from the relation: options, opclass and column dimensions.
pub fn new_meta(index: pg_sys::Relation) -> Meta {
    // SAFETY: an index relation has a tuple descriptor with at least one attribute.
    if unsafe { (*(*(*index).rd_att).attrs.as_ptr()).atttypid } == pg_sys::VARBITOID {
        // bit_*_ops accept varbit by binary coercion, but a varbit column's
        // values need not share one length; pgvector refuses it the same way
        pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "type not supported for hnsw index");
    }
    let oc = resolve_opclass(index);
    let dims = column_dims(index);
    let quantization = options::index_quantization(index);
    if quantization == Quantization::Binary {
        // first: an expression without dimensions gets the reason it cannot be quantized
        check_quantizable(index, oc, dims.max(0) as usize);
    }
    if dims < 1 {
        pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "column does not have dimensions");
    }
    let (m, efc) = options::index_params(index);
    let meta = Meta {
        dims: dims as u32,
        m: m as u16,
        ef_construction: efc as u16,
        metric: oc.metric,
        kind: oc.kind,
        quantization,
        entry: None,
        insert_block: META_BLOCK,
        elements: 0,
    };
    if let Some(limit) = max_dims(oc.kind) {
        if dims as usize > limit {
            pgrx::ereport!(
                ERROR,
                pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("column cannot have more than {limit} dimensions for hnsw index")
            );
        }
    }
    meta
}

/// Binary quantization needs float vectors, a metric the estimate serves,
/// the table column itself (rescoring reads it from the heap) and a center
/// that fits on the meta page.
fn check_quantizable(index: pg_sys::Relation, oc: super::Opclass, dims: usize) {
    let fail = |msg: String| {
        pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, msg);
    };
    if oc.kind == ElementKind::Sparse {
        fail(
            "binary quantization supports the vector and halfvec l2, ip and cosine operator classes, not sparsevec"
                .into(),
        );
    }
    if oc.kind == ElementKind::Bits || !matches!(oc.metric, Metric::L2Squared | Metric::NegativeDot | Metric::Cosine) {
        fail(format!(
            "binary quantization supports the vector and halfvec l2, ip and cosine operator classes, not {}",
            if oc.kind == ElementKind::Bits { "bit_hamming_ops" } else { oc.metric.name() }
        ));
    }
    // SAFETY: rd_index is valid for an open index; indkey has one key here.
    let attno = unsafe { *(*(*index).rd_index).indkey.values.as_ptr() };
    if attno <= 0 {
        fail("binary quantization needs a plain table column, not an expression: rescoring reads the vector from the table".into());
    }
    if 2 * dims > max_item_size() - 8 - META_SIZE {
        fail(format!("binary quantization supports up to {} dimensions", (max_item_size() - 8 - META_SIZE) / 2));
    }
}

/// pgvector's dimension limits for hnsw, at every `m`: an element whose
/// vector does not fit beside its links keeps it in an item of its own,
/// which holds up to a page (`layout`). Sparse vectors are limited by their
/// non-zero elements instead (checked per value).
fn max_dims(kind: ElementKind) -> Option<usize> {
    const HNSW_MAX_DIM: usize = 2000;
    match kind {
        ElementKind::F32 => Some(HNSW_MAX_DIM),
        ElementKind::F16 => Some(2 * HNSW_MAX_DIM),
        ElementKind::Bits => Some(32 * HNSW_MAX_DIM),
        ElementKind::Sparse => None,
    }
}

/// Search parameters of an index, with the level cap its page size allows.
pub fn params_of(meta: &Meta) -> Params {
    let mut p = meta.params();
    p.max_level = p.level_cap_apart(super::insert::element_space());
    p
}

/// Writes `meta` as the first item of a fresh page, and a quantized
/// index's center (f16 bytes) as the second.
fn write_meta_item(page: pg_sys::Page, meta: &Meta, center: Option<&[f32]>) {
    init_page(page);
    if add_item(page, &meta.to_bytes()) != Some(1) {
        pgrx::error!("hnsw: could not write the meta page");
    }
    if let Some(c) = center {
        if add_item(page, &BinaryCodec::center_to_bytes(c)) != Some(page::CENTER_ITEM) {
            pgrx::error!("hnsw: could not write the center of a quantized index");
        }
    }
}

/// The codec a quantized build writes codes with: the mean of the collected
/// vectors, rounded through its stored form so readers see the same center.
fn build_codec(st: &BuildState) -> Option<BinaryCodec> {
    if st.meta.quantization != Quantization::Binary {
        return None;
    }
    let dims = st.meta.dims as usize;
    let mean = BinaryCodec::mean(dims, st.data.chunks_exact(st.vector_bytes).map(|b| to_f32(st.meta.kind, b)));
    Some(BinaryCodec::new(BinaryCodec::center_from_bytes(&BinaryCodec::center_to_bytes(&mean))))
}

/// A spill file in the cluster's temporary directory (removed on drop, and
/// by Postgres at restart after a crash, thanks to the pgsql_tmp prefix).
struct Spill {
    path: std::path::PathBuf,
    writer: Option<BufWriter<std::fs::File>>,
    count: usize,
}

impl Spill {
    fn create() -> Spill {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::path::Path::new("base/pgsql_tmp");
        let _ = std::fs::create_dir_all(dir);
        let path = dir.join(format!(
            "pgsql_tmpquiver_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|e| pgrx::error!("hnsw: cannot create temporary file {}: {e}", path.display()));
        Spill { path, writer: Some(BufWriter::new(file)), count: 0 }
    }
    fn push(&mut self, tid: ItemRef, bytes: &[u8]) {
        let w = self.writer.as_mut().expect("spill open for writing");
        let r = w
            .write_all(&tid.block.to_le_bytes())
            .and_then(|_| w.write_all(&tid.offset.to_le_bytes()))
            .and_then(|_| w.write_all(bytes));
        if let Err(e) = r {
            pgrx::error!("hnsw: cannot write temporary file: {e}");
        }
        self.count += 1;
    }
    fn reader(&mut self) -> BufReader<std::fs::File> {
        if let Some(mut w) = self.writer.take() {
            if let Err(e) = w.flush() {
                pgrx::error!("hnsw: cannot write temporary file: {e}");
            }
        }
        BufReader::new(
            std::fs::File::open(&self.path).unwrap_or_else(|e| pgrx::error!("hnsw: cannot read temporary file: {e}")),
        )
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct BuildState {
    meta: Meta,
    vector_bytes: usize,
    data: Vec<u8>,
    tids: Vec<ItemRef>,
    budget: usize,
    spill: Option<Spill>,
    heap_tuples: f64,
}

impl BuildState {
    fn row(&self, i: usize) -> &[u8] {
        &self.data[i * self.vector_bytes..(i + 1) * self.vector_bytes]
    }

    /// Keeps rows `order` (in that order), dropping the others.
    fn keep_rows(&mut self, order: &[usize]) {
        let mut data = Vec::with_capacity(order.len() * self.vector_bytes);
        for &r in order {
            data.extend_from_slice(self.row(r));
        }
        self.tids = order.iter().map(|&r| self.tids[r]).collect();
        self.data = data;
    }
}

/// The graph a snapshot restore left for this table (see
/// `super::prebuilt`), mapped onto the rows the build scan collected; None
/// (with a NOTICE) when it cannot be used, and the index is built instead.
fn restored_graph(st: &BuildState, g: super::prebuilt::PrebuiltGraph) -> Option<(Relinked, Option<BinaryCodec>)> {
    let skip = |why: &str| {
        pgrx::notice!("hnsw: not using the snapshot's graph ({why}); building the index");
        None
    };
    if st.spill.is_some() {
        return skip("the table does not fit in maintenance_work_mem");
    }
    let (a, b) = (&g.meta, &st.meta);
    if (a.dims, a.m, a.metric, a.kind, a.quantization) != (b.dims, b.m, b.metric, b.kind, b.quantization) {
        return skip("it belongs to an index of another shape");
    }
    let codec = match b.quantization {
        Quantization::None => None,
        Quantization::Binary if g.center.len() == 2 * b.dims as usize => {
            Some(BinaryCodec::new(BinaryCodec::center_from_bytes(&g.center)))
        }
        Quantization::Binary => return skip("its center has the wrong size"),
    };
    let row_ids: Vec<Option<i64>> = st.tids.iter().map(|t| g.ids.get(&t.pack()).copied()).collect();
    match relink(&params_of(b), a.entry, &g.elements, &row_ids) {
        Ok(r) => Some((r, codec)),
        Err(e) => skip(&e),
    }
}

/// Estimated memory of one element of the in-memory graph.
fn per_element_bytes(meta: &Meta, vector_bytes: usize) -> usize {
    vector_bytes + 6 + 1 + 2 * meta.m as usize * 4 + 96
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn build_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the BuildState passed to table_index_build_scan;
    // values/isnull hold one column; tid is valid for the call.
    let st = unsafe { &mut *(state as *mut BuildState) };
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    if unsafe { *isnull } {
        return;
    }
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let Some(v) = index_value(unsafe { *values }, &st.meta) else { return };
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let tid = page::item_ref(unsafe { &*tid });
    let per = per_element_bytes(&st.meta, st.vector_bytes);
    if st.spill.is_none() && (st.tids.len() + 1) * per > st.budget {
        pgrx::ereport!(
            NOTICE,
            pgrx::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("hnsw graph no longer fits into maintenance_work_mem after {} tuples", st.tids.len()),
            "Building will take significantly more time: the remaining tuples are inserted one by one.".to_string()
        );
        st.spill = Some(Spill::create());
    }
    match st.spill.as_mut() {
        Some(s) => s.push(tid, v.as_bytes()),
        None => {
            st.data.extend_from_slice(v.as_bytes());
            st.tids.push(tid);
        }
    }
}

fn typed<E: IndexElement>(data: &[u8], width: usize) -> FlatVectors<E> {
    let mut f = FlatVectors::new(width);
    f.data = vec![E::default(); data.len() / std::mem::size_of::<E>()];
    bytemuck::cast_slice_mut::<E, u8>(&mut f.data).copy_from_slice(data);
    f
}

/// Blocks all signals on a build worker thread so that Postgres' handlers
/// only ever run on the backend's own thread.
fn block_signals() {
    // SAFETY: sigfillset/pthread_sigmask only touch this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn report_progress(done: usize) {
    // SAFETY: progress reporting only writes this backend's status slot.
    unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, done as i64);
    }
}

/// Links per node, levels, and the entry point of a graph in memory.
type Linked = (Vec<Vec<Vec<u32>>>, Vec<u8>, Option<(u32, usize)>);

/// The collected vectors as the in-memory graph's elements, and the seed
/// its levels are drawn from.
fn collected<E: IndexElement>(st: &BuildState) -> (quiver_core::space::FlatVectors<E>, u64) {
    let width = match st.meta.kind {
        ElementKind::Bits => st.vector_bytes,
        _ => st.meta.dims as usize,
    };
    (typed::<E>(&st.data, width), 0x5155_4956_4552u64 ^ st.tids.len() as u64)
}

/// Makes every element reachable and takes the graph apart for writing.
fn finished<E: IndexElement>(graph: MemoryGraph<E>) -> Linked {
    graph.repair_reachability();
    let links = (0..graph.len() as u32).map(|i| graph.links(i)).collect();
    (links, graph.levels.clone(), graph.entry())
}

/// Links the collected vectors in memory.
fn link<E: IndexElement>(st: &BuildState, threads: usize) -> Linked {
    let (vectors, seed) = collected::<E>(st);
    let graph = MemoryGraph::new(params_of(&st.meta), st.meta.metric, vectors, seed);
    // Stop early only for a cancel or a termination request: other
    // interrupts (catch-up, barriers) are harmless and must not cut the
    // graph short. SAFETY: plain loads of sig_atomic_t flags.
    let completed = graph.build(threads, &block_signals, |done| {
        report_progress(done);
        // SAFETY: plain reads of this backend's interrupt flags.
        unsafe { pg_sys::QueryCancelPending == 0 && pg_sys::ProcDiePending == 0 }
    });
    if !completed {
        pgrx::check_for_interrupts!();
        pgrx::error!("hnsw index build was interrupted");
    }
    finished(graph)
}

/// A restored graph in memory (rows in `st` are its elements, then the
/// rows it did not cover): links those others in as a build would, and
/// makes sure every element is reachable.
fn relinked<E: IndexElement>(st: &BuildState, g: Relinked) -> Linked {
    let (vectors, seed) = collected::<E>(st);
    let linked = g.order.len();
    let damaged = g.damaged;
    let entry = g.entry.map(|(e, _)| e as usize);
    let graph = MemoryGraph::with_links(params_of(&st.meta), st.meta.metric, vectors, g.links, g.levels, g.entry, seed);
    // the rows without an element, then the elements that lost most of
    // their links: inserting an element again replaces its own links
    let again = (linked..graph.len()).chain((0..linked).filter(|&k| damaged[k] && Some(k) != entry));
    let mut scratch = quiver_core::hnsw::memory::Scratch::new(graph.len());
    for (n, i) in again.enumerate() {
        graph.insert(i as u32, &mut scratch);
        if n % 256 == 0 {
            pgrx::check_for_interrupts!();
        }
    }
    graph.fill_spare_links();
    finished(graph)
}

/// Positions of elements of the given sizes when appended to pages from
/// block 1 on, reproducing PageAddItem's arithmetic.
pub(crate) fn place(sizes: impl Iterator<Item = usize>) -> Vec<ItemRef> {
    let header = super::page::LINE_POINTERS_AT;
    let (mut block, mut lower, mut upper) = (1u32, header, pg_sys::BLCKSZ as usize);
    let mut out = Vec::new();
    for s in sizes {
        let aligned = s.next_multiple_of(8);
        if lower + 4 > upper.saturating_sub(aligned) {
            block += 1;
            lower = header;
            upper = pg_sys::BLCKSZ as usize;
        }
        out.push(ItemRef { block, offset: ((lower - header) / 4 + 1) as u16 });
        lower += 4;
        upper -= aligned;
    }
    out
}

/// Writes meta and element pages without WAL (the build logs them at the end).
fn write_pages(
    index: pg_sys::Relation,
    st: &BuildState,
    links: &[Vec<Vec<u32>>],
    levels: &[u8],
    entry: Option<(u32, usize)>,
    codec: Option<&BinaryCodec>,
) -> Meta {
    let shape = ElementShape { params: params_of(&st.meta), vector_bytes: st.meta.stored_bytes() };
    let mut code = vec![0u8; st.meta.stored_bytes()];
    // An element whose vector does not fit beside its links keeps it in an
    // item of its own (`layout`). The elements come first, packed as usual;
    // the vectors kept apart follow, each taking most of a page (between
    // two such vectors an element would sit alone on a page).
    let space = super::insert::element_space();
    let apart: Vec<bool> = levels.iter().map(|l| shape.needs_apart(*l as usize, shape.vector_bytes, space)).collect();
    let element_sizes = levels.iter().zip(&apart).map(|(l, a)| {
        let l = *l as usize;
        if *a {
            shape.apart_size(l)
        } else {
            shape.size(l)
        }
    });
    let vector_item = quiver_core::hnsw::layout::VECTOR_ITEM_HEADER + shape.vector_bytes;
    let vector_sizes = apart.iter().filter(|a| **a).map(|_| vector_item);
    let items = place(element_sizes.chain(vector_sizes));
    let places: Vec<ItemRef> = items[..levels.len()].to_vec();
    // where each element's vector goes, for those kept apart
    let mut vector_places = items[levels.len()..].iter();
    let vector_at: Vec<Option<ItemRef>> =
        apart.iter().map(|a| if *a { vector_places.next().copied() } else { None }).collect();
    let mut meta = st.meta;
    meta.entry = entry.map(|(n, l)| (places[n as usize], l as u16));
    // inserts go on packing elements where the build's elements end
    meta.insert_block = places.last().map(|p| p.block).unwrap_or(META_BLOCK);
    meta.elements = levels.len() as u64;

    let mut out = super::bulk_write::BulkWriter::start(index, needs_wal(index));
    write_meta_item(out.page(), &meta, codec.map(|c| c.center.as_slice()));
    out.write();
    init_page(out.page()); // block 1, where `place` starts
    let add = |out: &mut super::bulk_write::BulkWriter, at: ItemRef, bytes: &[u8], what: &str| {
        if at.block != out.block() {
            out.write();
            if out.block() != at.block {
                pgrx::error!("hnsw: page {} reached where {} was planned", out.block(), at.block);
            }
            init_page(out.page());
        }
        if add_item(out.page(), bytes) != Some(at.offset) {
            pgrx::error!("hnsw: {what} did not land at its planned position");
        }
    };
    // row `i` as the index stores it: the vector, or its code
    fn stored<'a>(st: &'a BuildState, i: usize, codec: Option<&BinaryCodec>, code: &'a mut [u8]) -> &'a [u8] {
        let v = &st.data[i * st.vector_bytes..(i + 1) * st.vector_bytes];
        match codec {
            Some(c) => {
                c.encode(&to_f32(st.meta.kind, v), code);
                code
            }
            None => v,
        }
    }
    for (i, place) in places.iter().enumerate() {
        let level = levels[i] as usize;
        let mut item = match vector_at[i] {
            Some(at) => shape.encode_apart(level, st.tids[i], at),
            None => shape.encode(level, st.tids[i], stored(st, i, codec, &mut code)),
        };
        for (lv, l) in links[i].iter().enumerate() {
            let refs: Vec<ItemRef> = l.iter().map(|n| places[*n as usize]).collect();
            shape.set_neighbors(&mut item, lv, &refs);
        }
        add(&mut out, *place, &item, "an element");
    }
    for (i, at) in vector_at.iter().enumerate() {
        if let Some(at) = at {
            let v = stored(st, i, codec, &mut code);
            let bytes = quiver_core::hnsw::layout::encode_vector_item(places[i], st.tids[i], v);
            add(&mut out, *at, &bytes, "a vector");
        }
    }
    if !items.is_empty() {
        out.write();
    }
    out.finish();
    meta
}

fn needs_wal(index: pg_sys::Relation) -> bool {
    // SAFETY: rd_rel is valid for an open relation.
    unsafe { (*(*index).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let meta = new_meta(index);
    if meta.kind == ElementKind::Sparse {
        return build_by_inserts(heap, index, index_info, meta);
    }
    let vector_bytes = meta.kind.bytes_for(meta.dims as usize);
    // SAFETY: maintenance_work_mem is a GUC (kB) read on this thread.
    let budget = unsafe { pg_sys::maintenance_work_mem } as usize * 1024;
    // Phase times for DEBUG1: where a slow build spends its time.
    let started = std::time::Instant::now();
    let mut st =
        BuildState { meta, vector_bytes, data: Vec::new(), tids: Vec::new(), budget, spill: None, heap_tuples: 0.0 };
    // SAFETY: the callback receives `st` back as its state pointer; the scan
    // runs synchronously within this call.
    unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_LOAD);
        // The scan's own count of the table's live tuples becomes the
        // table's reltuples: the callback only sees the rows a partial
        // index's predicate admits, and counting those made the planner
        // think a 10,000-row table had 200 after CREATE INDEX ... WHERE.
        let table_tuples = pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(build_callback),
            &mut st as *mut BuildState as *mut std::ffi::c_void,
            std::ptr::null_mut(),
        );
        st.heap_tuples = table_tuples;
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_LINK);
        pg_sys::pgstat_progress_update_param(
            pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL as i32,
            (st.tids.len() + st.spill.as_ref().map(|s| s.count).unwrap_or(0)) as i64,
        );
    }
    let scanned = started.elapsed();
    // SAFETY: a plain GUC read.
    let workers = unsafe { pg_sys::max_parallel_maintenance_workers }.max(0) as usize;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = (workers + 1).min(cores).max(1);
    // SAFETY: rd_id of an open relation.
    let heap_oid = unsafe { (*heap).rd_id };
    let (links, levels, entry, codec) = match super::prebuilt::take(heap_oid).and_then(|g| restored_graph(&st, g)) {
        Some((g, codec)) => {
            pgrx::debug1!(
                "hnsw: restoring a stored graph of {} elements ({} to link again), {} rows to link",
                g.order.len(),
                g.damaged.iter().filter(|d| **d).count(),
                g.rest.len()
            );
            let mut order = g.order.clone();
            order.extend_from_slice(&g.rest);
            st.keep_rows(&order);
            let (links, levels, entry) = match meta.kind {
                ElementKind::F32 => relinked::<f32>(&st, g),
                ElementKind::F16 => relinked::<half::f16>(&st, g),
                ElementKind::Bits => relinked::<u8>(&st, g),
                ElementKind::Sparse => unreachable!("sparse indexes are built by inserts"),
            };
            (links, levels, entry, codec)
        }
        // linked through the insert path instead (below): see `links_by_inner_product`
        None if links_by_inner_product(&st) => (Vec::new(), Vec::new(), None, None),
        None => {
            let (links, levels, entry) = match meta.kind {
                ElementKind::F32 => link::<f32>(&st, threads),
                ElementKind::F16 => link::<half::f16>(&st, threads),
                ElementKind::Bits => link::<u8>(&st, threads),
                ElementKind::Sparse => unreachable!("sparse indexes are built by inserts"),
            };
            (links, levels, entry, build_codec(&st))
        }
    };
    let linked = started.elapsed();
    // SAFETY: progress reporting only writes this backend's status slot.
    unsafe { pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_WRITE) };
    write_pages(index, &st, &links, &levels, entry, codec.as_ref());
    let written = started.elapsed();
    pgrx::debug1!(
        "hnsw build: heap scan {:.2} s, graph {:.2} s ({threads} threads), pages {:.2} s",
        scanned.as_secs_f64(),
        (linked - scanned).as_secs_f64(),
        (written - linked).as_secs_f64()
    );
    let mut index_tuples = levels.len() as f64;
    let by_inserts = levels.is_empty() && !st.tids.is_empty();
    drop((links, levels));
    if by_inserts {
        for i in 0..st.tids.len() {
            // fresh meta each time: the previous insert may have moved the entry point
            let meta = page::read_meta(index);
            super::insert::insert_element(
                index,
                &meta,
                st.tids[i],
                quiver_core::space::AlignedBytes::from_bytes(st.row(i)),
            );
            if i % 256 == 0 {
                report_progress(i);
                pgrx::check_for_interrupts!();
            }
        }
        index_tuples = st.tids.len() as f64;
        if st.spill.is_none() {
            // as after the spilled rows below (this path's inserts prune too)
            let relinked = super::vacuum::repair_reachability(index);
            pgrx::debug1!("hnsw: relinked {relinked} unreachable elements after building by inserts");
        }
    }
    st.data = Vec::new();

    let mut spilled = 0.0;
    if let Some(mut spill) = st.spill.take() {
        // SAFETY: as above.
        unsafe {
            pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_INSERT_SPILLED)
        };
        let mut r = spill.reader();
        let mut head = [0u8; 6];
        let mut v = vec![0u8; vector_bytes];
        for i in 0..spill.count {
            if r.read_exact(&mut head).and_then(|_| r.read_exact(&mut v)).is_err() {
                pgrx::error!("hnsw: temporary file ended early");
            }
            let tid = ItemRef {
                block: u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
                offset: u16::from_le_bytes([head[4], head[5]]),
            };
            // fresh meta each time: the previous insert may have moved the entry point
            let meta = page::read_meta(index);
            super::insert::insert_element(index, &meta, tid, quiver_core::space::AlignedBytes::from_bytes(&v));
            spilled += 1.0;
            if i % 256 == 0 {
                report_progress(index_tuples as usize + i);
                pgrx::check_for_interrupts!();
            }
        }
        // An insert on pages prunes its neighbours' full lists and can take
        // an element's last way in (the in-memory part was repaired before
        // it was written; VACUUM repairs what concurrent inserts do). One
        // run of a 4000-row restore in 1 MB of memory left one such element,
        // which no index scan would ever return.
        let relinked = super::vacuum::repair_reachability(index);
        pgrx::debug1!("hnsw: relinked {relinked} unreachable elements after the inserts past maintenance_work_mem");
    }

    // SAFETY: palloc0 returns a zeroed IndexBuildResult we fill and hand to Postgres.
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>()) as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = st.heap_tuples;
        (*r).index_tuples = index_tuples + spilled;
        r
    }
}

/// Whether an inner-product index is linked by the inner product (some
/// vector is not of unit length, see `Metric::linking`). Such a graph is
/// built through the insert path, row by row: the insert path's lists,
/// filled past the heuristic's choice, measured recall@20 of 1.0 at
/// `ef_search = 40` on pgvector's test data (10,000 `halfvec(10)` of
/// `2 * random() * random()`), where the in-memory build reached 0.93-0.955
/// linked by L2 or by the inner product, and 0.74-0.90 with its lists
/// filled (its offered and spare links work against the filling). It is
/// single-threaded and logs each insert, so such builds are slower.
fn links_by_inner_product(st: &BuildState) -> bool {
    let m = &st.meta;
    m.metric == Metric::NegativeDot
        && m.quantization == Quantization::None
        && (0..st.tids.len()).any(|i| !quiver_core::space::is_unit_length(m.kind, st.row(i)))
}

/// Sparse vectors differ in size, which the in-memory graph's flat storage
/// and the page writer's fixed element shape do not allow: such an index
/// starts as a meta page and takes every row through the insert path
/// (WAL-logged page by page, as later inserts are), then repairs
/// reachability once, as a build whose rows spill past
/// `maintenance_work_mem` does.
fn build_by_inserts(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    meta: Meta,
) -> *mut pg_sys::IndexBuildResult {
    {
        let buf = page::new_page(index);
        if buf.block() != META_BLOCK {
            pgrx::error!("hnsw: a new index has {} pages before its meta page", buf.block());
        }
        let mut w = page::PageWrite::start(index);
        let p = w.register(buf, true);
        write_meta_item(p, &meta, None);
        w.finish();
    }
    struct Inserted {
        rows: f64,
    }
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn insert_callback(
        index: pg_sys::Relation,
        tid: pg_sys::ItemPointer,
        values: *mut pg_sys::Datum,
        isnull: *mut bool,
        _alive: bool,
        state: *mut std::ffi::c_void,
    ) {
        // SAFETY: `state` is the Inserted passed to table_index_build_scan;
        // values/isnull hold one column; tid is valid for the call.
        let st = unsafe { &mut *(state as *mut Inserted) };
        // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
        if unsafe { *isnull } {
            return;
        }
        // fresh meta each time: the previous insert may have moved the entry point
        let meta = page::read_meta(index);
        // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
        let Some(v) = index_value(unsafe { *values }, &meta) else { return };
        // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
        super::insert::insert_element(index, &meta, page::item_ref(unsafe { &*tid }), v);
        st.rows += 1.0;
        if (st.rows as u64).is_multiple_of(256) {
            report_progress(st.rows as usize);
        }
    }
    let mut st = Inserted { rows: 0.0 };
    // SAFETY: the callback receives `st` back as its state pointer; the scan
    // runs synchronously within this call.
    let heap_tuples = unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_INSERT_SPILLED);
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(insert_callback),
            &mut st as *mut Inserted as *mut std::ffi::c_void,
            std::ptr::null_mut(),
        )
    };
    let relinked = super::vacuum::repair_reachability(index);
    pgrx::debug1!("hnsw: built a sparse index by {} inserts, relinked {relinked} unreachable elements", st.rows);
    // SAFETY: palloc0 returns a zeroed IndexBuildResult we fill and hand to Postgres.
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>()) as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = heap_tuples;
        (*r).index_tuples = st.rows;
        r
    }
}

/// The init fork of an UNLOGGED index: just the meta page, WAL-logged.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let meta = new_meta(index);
    // SAFETY: P_NEW on the init fork of a new unlogged index returns block 0,
    // exclusively locked here and logged as a full page image.
    unsafe {
        let buffer = pg_sys::ReadBufferExtended(
            index,
            pg_sys::ForkNumber::INIT_FORKNUM,
            pg_sys::InvalidBlockNumber,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
        );
        pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
        let mut w = page::PageWrite::start(index);
        let p = w.register(LockedBuffer { buffer }, true);
        // An empty index has no data to center on: the origin it is.
        let center = (meta.quantization == Quantization::Binary).then(|| vec![0f32; meta.dims as usize]);
        write_meta_item(p, &meta, center.as_deref());
        w.finish();
    }
}
