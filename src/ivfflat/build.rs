//! CREATE INDEX ... USING ivfflat: a first pass over the table samples up
//! to 50 rows per list for k-means, the meta page and the directory of
//! centers are written, and a second pass files every row under its
//! nearest center. Progress shows in `pg_stat_progress_create_index`.

use super::layout::{self, IvfMeta, META_BLOCK};
use crate::hnsw::page::{add_item, init_page, max_item_size, LockedBuffer, PageWrite};
use crate::hnsw::{column_dims, Opclass};
use pgrx::pg_sys;
use quiver_core::hnsw::SplitMix64;
use quiver_core::ivf;
use quiver_core::space::{distance_raw, from_f32, normalize_raw, to_f32, AlignedBytes, ElementKind, Metric};

/// Rows sampled for k-means, as pgvector samples: 50 per list, at least 10,000.
const SAMPLES_PER_LIST: usize = 50;
const MIN_SAMPLES: usize = 10_000;
const KMEANS_ITERATIONS: usize = 100;

// Build phases in pg_stat_progress_create_index, named as pgvector names
// them; Postgres reports 1, "initializing", before ambuild (our sampling pass).
const PHASE_KMEANS: i64 = 2;
const PHASE_ASSIGN: i64 = 3;

/// The name of a build phase, for `pg_stat_progress_create_index`.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &'static std::ffi::CStr = match phase {
        1 => c"initializing",
        PHASE_KMEANS => c"performing k-means",
        PHASE_ASSIGN => c"assigning tuples",
        _ => return std::ptr::null_mut(),
    };
    // Postgres only reads the name; static strings outlive every call.
    name.as_ptr() as *mut std::ffi::c_char
}

/// The index's shape from its column, opclass and `lists` option.
pub fn new_meta(index: pg_sys::Relation) -> IvfMeta {
    // SAFETY: an index relation has a tuple descriptor with one attribute.
    if unsafe { (*(*(*index).rd_att).attrs.as_ptr()).atttypid } == pg_sys::VARBITOID {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "type not supported for ivfflat index"
        );
    }
    let Opclass { metric, kind } = super::opclass(index);
    let dims = column_dims(index);
    if dims < 1 {
        pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "column does not have dimensions");
    }
    let vector_bytes = kind.bytes_for(dims as usize);
    // a center and a row each live in one item; pgvector's own limits are lower
    let limit = match kind {
        ElementKind::F32 => 2_000,
        ElementKind::F16 => 4_000,
        ElementKind::Bits => 64_000,
        // pgvector has no ivfflat operator classes for sparsevec, nor quiver
        ElementKind::Sparse => {
            pgrx::ereport!(
                ERROR,
                pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "type not supported for ivfflat index"
            );
        }
    };
    if dims > limit || layout::ENTRY_HEADER + vector_bytes > max_item_size() - layout::SPECIAL_SIZE {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("column cannot have more than {limit} dimensions for ivfflat index")
        );
    }
    IvfMeta {
        kind,
        metric,
        dims: dims as u32,
        lists: super::index_lists(index) as u32,
        vector_bytes: vector_bytes as u32,
        directory_first: 1,
        directory_last: 1,
    }
}

/// What the index stores for a column value: the vector, at unit length
/// under cosine; None for a zero vector under cosine (not indexed, as in
/// pgvector) and for a value of the wrong dimension (an error).
pub fn stored_value(datum: pg_sys::Datum, meta: &IvfMeta) -> Option<AlignedBytes> {
    let (dims, bytes) = crate::varlena::datum_payload(datum, meta.kind);
    if dims != meta.dims as usize {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("expected {} dimensions, not {}", meta.dims, dims)
        );
    }
    let mut v = AlignedBytes::from_bytes(&bytes);
    if meta.metric == Metric::Cosine && !normalize_raw(meta.kind, &mut v) {
        return None;
    }
    Some(v)
}

/// A stored value as the f32 row k-means works on (bits as 0/1).
fn as_row(meta: &IvfMeta, v: &[u8]) -> Vec<f32> {
    match meta.kind {
        ElementKind::Bits => ivf::bits_to_f32(v, meta.dims as usize),
        k => to_f32(k, v),
    }
}

/// A k-means center back in the stored form.
fn center_bytes(meta: &IvfMeta, c: &[f32]) -> Vec<u8> {
    match meta.kind {
        ElementKind::Bits => ivf::f32_to_bits(c),
        k => from_f32(k, c).as_bytes().to_vec(),
    }
}

/// The list whose center is nearest to the stored value `v`.
pub fn nearest_list(meta: &IvfMeta, centers: &[Vec<u8>], v: &[u8]) -> usize {
    let metric = meta.assignment_metric();
    let mut best = (f32::INFINITY, 0);
    for (i, c) in centers.iter().enumerate() {
        let d = distance_raw(meta.kind, metric, c, v);
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

struct Sample {
    meta: IvfMeta,
    rows: Vec<f32>,
    width: usize,
    cap: usize,
    seen: u64,
    rng: SplitMix64,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn sample_callback(
    _index: pg_sys::Relation,
    _tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the Sample passed to table_index_build_scan; one column.
    let st = unsafe { &mut *(state as *mut Sample) };
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    if unsafe { *isnull } {
        return;
    }
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let Some(v) = stored_value(unsafe { *values }, &st.meta) else { return };
    st.seen += 1;
    let row = as_row(&st.meta, v.as_bytes());
    let have = st.rows.len() / st.width;
    if have < st.cap {
        st.rows.extend_from_slice(&row);
    } else {
        // reservoir sampling: every row seen so far equally likely kept
        let j = (st.rng.next_u64() % st.seen) as usize;
        if j < st.cap {
            st.rows[j * st.width..(j + 1) * st.width].copy_from_slice(&row);
        }
    }
}

/// The second pass: rows gathered per list until a page is full, then
/// written as a whole page (one full-page WAL record per page instead of a
/// record per row).
struct Filing {
    meta: IvfMeta,
    centers: Vec<Vec<u8>>,
    /// Per list: first and last page written, and the rows waiting for the next page.
    lists: Vec<(u32, u32, Vec<Vec<u8>>, usize)>,
    index: pg_sys::Relation,
    done: u64,
    /// Bytes gathered across lists, held under half of maintenance_work_mem.
    pending: usize,
    budget: usize,
}

impl Filing {
    fn flush(&mut self, list: usize) {
        let (first, last, pending, _) = &mut self.lists[list];
        if pending.is_empty() {
            return;
        }
        let index = self.index;
        let fresh = crate::hnsw::page::new_page(index);
        let block = fresh.block();
        let mut w = PageWrite::start(index);
        if *last != pg_sys::InvalidBlockNumber {
            let p = w.register(LockedBuffer::read(index, *last, true), false);
            layout::set_next(p, block);
        }
        let p = w.register(fresh, true);
        layout::init_entry_page(p);
        for e in pending.drain(..) {
            add_item(p, &e).expect("rows gathered to fit one page");
        }
        w.finish();
        if *first == pg_sys::InvalidBlockNumber {
            *first = block;
        }
        *last = block;
        self.pending -= self.lists[list].3;
        self.lists[list].3 = 0;
    }

    fn add(&mut self, list: usize, entry: Vec<u8>) {
        let room = max_item_size() + std::mem::size_of::<pg_sys::ItemIdData>() - layout::SPECIAL_SIZE;
        if self.lists[list].3 + layout::needs(entry.len()) > room {
            self.flush(list);
        }
        self.lists[list].3 += layout::needs(entry.len());
        self.pending += layout::needs(entry.len());
        self.lists[list].2.push(entry);
        if self.pending > self.budget {
            // many lists, little memory: write what each list has gathered
            for l in 0..self.lists.len() {
                self.flush(l);
            }
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn filing_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the Filing passed to table_index_build_scan; tid is
    // valid for the call; one column.
    let st = unsafe { &mut *(state as *mut Filing) };
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    if unsafe { *isnull } {
        return;
    }
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let Some(v) = stored_value(unsafe { *values }, &st.meta) else { return };
    let list = nearest_list(&st.meta, &st.centers, v.as_bytes());
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    st.add(list, layout::entry_item(unsafe { &*tid }, v.as_bytes()));
    st.done += 1;
    if st.done % 1024 == 0 {
        // SAFETY: progress reporting only writes this backend's status slot.
        unsafe { pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, st.done as i64) };
    }
}

/// Writes the meta page and the directory (centers, empty lists) as new
/// pages of `fork`; returns the meta with the directory's blocks.
fn write_skeleton(
    index: pg_sys::Relation,
    fork: pg_sys::ForkNumber::Type,
    mut meta: IvfMeta,
    centers: &[Vec<u8>],
) -> IvfMeta {
    let new_page = || -> LockedBuffer {
        // SAFETY: P_NEW appends a zeroed block to `fork`; we lock it
        // exclusively (nobody else sees an index being built).
        unsafe {
            let buffer = pg_sys::ReadBufferExtended(
                index,
                fork,
                pg_sys::InvalidBlockNumber,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            LockedBuffer { buffer }
        }
    };
    let meta_buf = new_page();
    assert_eq!(meta_buf.block(), META_BLOCK, "ivfflat: meta page must be block 0");
    // the directory, as many pages as its items need
    let mut pages: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut room = max_item_size();
    for c in centers {
        let it = layout::directory_item(pg_sys::InvalidBlockNumber, pg_sys::InvalidBlockNumber, c);
        if layout::needs(it.len()) > room {
            pages.push(Vec::new());
            room = max_item_size();
        }
        room -= layout::needs(it.len());
        pages.last_mut().expect("a page").push(it);
    }
    meta.directory_first = 1;
    meta.directory_last = pages.len() as u32;
    {
        let mut w = PageWrite::start(index);
        let p = w.register(meta_buf, true);
        init_page(p);
        add_item(p, &meta.to_bytes()).expect("meta item fits");
        w.finish();
    }
    for items in pages {
        let buf = new_page();
        let mut w = PageWrite::start(index);
        let p = w.register(buf, true);
        init_page(p);
        for it in items {
            add_item(p, &it).expect("directory item fits (sized above)");
        }
        w.finish();
    }
    meta
}

/// Rewrites every directory item's first and insert entry block.
fn write_directory_chains(index: pg_sys::Relation, meta: &IvfMeta, lists: &[(u32, u32)]) {
    let mut i = 0;
    for block in meta.directory_first..=meta.directory_last {
        let buf = LockedBuffer::read(index, block, true);
        let mut w = PageWrite::start(index);
        let p = w.register(buf, false);
        for off in 1..=crate::hnsw::page::max_offset(p) {
            let Some(it) = crate::hnsw::page::item(p, off) else { continue };
            let (first, last) = lists[i];
            it[..4].copy_from_slice(&first.to_le_bytes());
            it[4..8].copy_from_slice(&last.to_le_bytes());
            i += 1;
        }
        w.finish();
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let meta = new_meta(index);
    let width = meta.dims as usize; // bits too: one 0/1 value per bit
    let lists = meta.lists as usize;
    let mut sample = Sample {
        meta,
        rows: Vec::new(),
        width,
        cap: (lists * SAMPLES_PER_LIST).max(MIN_SAMPLES),
        seen: 0,
        rng: SplitMix64(0x5eed_1f1a),
    };
    // SAFETY: the callbacks receive their state back; the scans run
    // synchronously within these calls.
    let table_tuples = unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, 1);
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(sample_callback),
            &mut sample as *mut Sample as *mut std::ffi::c_void,
            std::ptr::null_mut(),
        )
    };
    let sampled = sample.rows.len() / width.max(1);
    // SAFETY: a plain read of a GUC (kB).
    let allowed = unsafe { pg_sys::maintenance_work_mem } as usize * 1024;
    if sampled < lists {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "ivfflat index created with little data",
            "quiver",
        )
        .set_detail("This will cause low recall.")
        .set_hint("Drop the index until the table has more data.")
        .report(pgrx::PgLogLevel::NOTICE);
    }
    let spherical = meta.spherical();
    // SAFETY: progress reporting only writes this backend's status slot.
    unsafe { pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_KMEANS) };
    let centers_f32 = if sampled <= lists {
        // no more rows than lists: each row is its own center (k-means would
        // end there), the other centers the origin
        let mut c = sample.rows.clone();
        if spherical {
            for r in c.chunks_exact_mut(width) {
                let n = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                if n > 0.0 {
                    r.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
                }
            }
        }
        c.resize(lists * width, 0.0);
        c
    } else {
        // k-means keeps a lower bound per sampled row and list: refuse, as
        // pgvector does, what maintenance_work_mem cannot hold
        let needed = sample.rows.len() * 4 + ivf::kmeans_memory(sampled, width, lists);
        if needed > allowed {
            pgrx::ereport!(
                ERROR,
                pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "memory required is {} MB, maintenance_work_mem is {} MB",
                    needed / (1024 * 1024) + 1,
                    allowed / (1024 * 1024)
                )
            );
        }
        ivf::kmeans(&sample.rows, width, lists, spherical, KMEANS_ITERATIONS, 0x1f1a_5eed)
    };
    drop(sample);
    let centers: Vec<Vec<u8>> = centers_f32.chunks_exact(width).map(|c| center_bytes(&meta, c)).collect();
    let meta = write_skeleton(index, pg_sys::ForkNumber::MAIN_FORKNUM, meta, &centers);
    let mut filing = Filing {
        meta,
        centers,
        lists: (0..lists).map(|_| (pg_sys::InvalidBlockNumber, pg_sys::InvalidBlockNumber, Vec::new(), 0)).collect(),
        index,
        done: 0,
        pending: 0,
        budget: allowed / 2,
    };
    // SAFETY: as above.
    unsafe {
        pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_SUBPHASE as i32, PHASE_ASSIGN);
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(filing_callback),
            &mut filing as *mut Filing as *mut std::ffi::c_void,
            std::ptr::null_mut(),
        );
    }
    for list in 0..lists {
        filing.flush(list);
    }
    let chains: Vec<(u32, u32)> = filing.lists.iter().map(|(f, l, _, _)| (*f, *l)).collect();
    write_directory_chains(index, &meta, &chains);
    // SAFETY: palloc0 returns a zeroed IndexBuildResult we fill for Postgres.
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>()) as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = table_tuples;
        (*r).index_tuples = filing.done as f64;
        r
    }
}

/// The init fork of an UNLOGGED index: meta page and a directory whose
/// centers are the origin (an empty table has nothing to center on).
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let meta = new_meta(index);
    let zero = center_bytes(&meta, &vec![0f32; meta.dims as usize]);
    let centers = vec![zero; meta.lists as usize];
    write_skeleton(index, pg_sys::ForkNumber::INIT_FORKNUM, meta, &centers);
}
