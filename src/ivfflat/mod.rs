//! The `ivfflat` index access method, as pgvector has it: `lists` inverted
//! lists around k-means centers, `ivfflat.probes` of them searched per
//! query, iterative scans probing more. One file per concern: `layout.rs`
//! (pages), `build.rs`, `insert.rs` (with VACUUM's bulk delete), `scan.rs`;
//! the handler, options and costs are here. k-means is `quiver_core::ivf`.

pub mod build;
pub mod insert;
pub mod layout;
pub mod scan;

use crate::fmgr::pg_function;
use crate::hnsw::{options as hnsw_options, resolve_opclass};
use pgrx::pg_sys;
use quiver_core::space::Metric;
use std::sync::atomic::{AtomicU32, Ordering};

pub const DEFAULT_LISTS: i32 = 100;
static RELOPT_KIND: AtomicU32 = AtomicU32::new(0);

#[repr(C)]
struct IvfflatOptions {
    vl_len_: i32,
    lists: i32,
}

/// Called once from `_PG_init`: the `lists` reloption.
pub fn init() {
    // SAFETY: at library load; the option name and description are static C strings.
    unsafe {
        let kind = pg_sys::add_reloption_kind();
        RELOPT_KIND.store(kind as u32, Ordering::Relaxed);
        pg_sys::add_int_reloption(
            kind,
            c"lists".as_ptr(),
            c"Number of inverted lists".as_ptr(),
            DEFAULT_LISTS,
            1,
            32768,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let table = [pg_sys::relopt_parse_elt {
        optname: c"lists".as_ptr(),
        opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
        offset: std::mem::offset_of!(IvfflatOptions, lists) as i32,
    }];
    // SAFETY: the table describes IvfflatOptions; build_reloptions pallocs
    // and fills a struct of that size (or returns NULL for no options).
    unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND.load(Ordering::Relaxed) as pg_sys::relopt_kind::Type,
            std::mem::size_of::<IvfflatOptions>(),
            table.as_ptr(),
            table.len() as i32,
        ) as *mut pg_sys::bytea
    }
}

/// The index's `lists` option (100 when not given).
pub fn index_lists(index: pg_sys::Relation) -> i32 {
    // SAFETY: rd_options is NULL or the IvfflatOptions amoptions returned.
    unsafe {
        let opts = (*index).rd_options as *const IvfflatOptions;
        if opts.is_null() {
            DEFAULT_LISTS
        } else {
            (*opts).lists
        }
    }
}

/// What an ivfflat index compares: pgvector's ivfflat has L2, inner
/// product and cosine for vector and halfvec, and Hamming for bit.
pub fn opclass(index: pg_sys::Relation) -> crate::hnsw::Opclass {
    let oc = resolve_opclass(index);
    if !matches!(oc.metric, Metric::L2Squared | Metric::NegativeDot | Metric::Cosine | Metric::Hamming) {
        pgrx::error!("ivfflat: unsupported operator class");
    }
    oc
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn amvalidate(_opclassoid: pg_sys::Oid) -> bool {
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    loop_count: f64,
    startup: *mut pg_sys::Cost,
    total: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    // SAFETY: the planner passes valid pointers; indexinfo describes the index.
    unsafe {
        if (*path).indexorderbys.is_null() {
            // never without ORDER BY: the index answers nothing else
            *startup = f64::INFINITY;
            *total = f64::INFINITY;
            *selectivity = 0.0;
            *correlation = 0.0;
            *pages = 0.0;
            return;
        }
        let info = (*path).indexinfo;
        let mut costs: pg_sys::GenericCosts = std::mem::zeroed();
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        let index = pg_sys::index_open((*info).indexoid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let lists = layout::read_meta(index).lists.max(1);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        // a scan reads its probed lists' pages in full before the first row
        let ratio = (hnsw_options::ivfflat_probes() as f64 / lists as f64).min(1.0);
        let mut seq_page_cost = 1.0;
        pg_sys::get_tablespace_page_costs((*info).reltablespace, std::ptr::null_mut(), &mut seq_page_cost);
        // list pages are read in chains, mostly sequentially
        costs.indexTotalCost -= 0.5 * costs.numIndexPages * (costs.spc_random_page_cost - seq_page_cost);
        let mut start = costs.indexTotalCost * ratio;
        let read_pages = costs.numIndexPages * ratio;
        let heap_pages = (*(*info).rel).pages as f64;
        if read_pages > heap_pages && ratio < 0.5 {
            start -= 0.5 * read_pages * (costs.spc_random_page_cost - seq_page_cost);
            start -= (read_pages - heap_pages) * seq_page_cost;
        }
        *startup = start.max(0.0);
        *total = costs.indexTotalCost.max(*startup);
        *selectivity = costs.indexSelectivity;
        *correlation = 0.0;
        *pages = costs.numIndexPages;
    }
}

pg_function!(ivfflathandler, |_a| {
    // pgvector's setting names, defined on first use (see ensure_hnsw_gucs)
    hnsw_options::ensure_hnsw_gucs();
    // SAFETY: palloc0 returns a zeroed IndexAmRoutine; fields left zero are
    // false / NULL / InvalidOid, the right default for the rest.
    let routine = unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexAmRoutine>()) as *mut pg_sys::IndexAmRoutine;
        (*r).type_ = pg_sys::NodeTag::T_IndexAmRoutine;
        (*r).amstrategies = 0;
        (*r).amsupport = 3;
        (*r).amcanorderbyop = true;
        (*r).amoptionalkey = true;
        (*r).amparallelvacuumoptions = pg_sys::VACUUM_OPTION_PARALLEL_BULKDEL as u8;
        (*r).amkeytype = pg_sys::InvalidOid;
        (*r).ambuild = Some(build::ambuild);
        (*r).ambuildempty = Some(build::ambuildempty);
        (*r).aminsert = Some(insert::aminsert);
        (*r).ambulkdelete = Some(insert::ambulkdelete);
        (*r).amvacuumcleanup = Some(insert::amvacuumcleanup);
        (*r).amcostestimate = Some(amcostestimate);
        (*r).amoptions = Some(amoptions);
        (*r).ambuildphasename = Some(build::ambuildphasename);
        (*r).amvalidate = Some(amvalidate);
        (*r).ambeginscan = Some(scan::ambeginscan);
        (*r).amrescan = Some(scan::amrescan);
        (*r).amgettuple = Some(scan::amgettuple);
        (*r).amendscan = Some(scan::amendscan);
        r
    };
    Ok(pg_sys::Datum::from(routine))
});
