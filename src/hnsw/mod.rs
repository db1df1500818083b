//! The `hnsw` index access method. One file per phase, like pgvector:
//! options and handler here, then build, insert, scan, vacuum, cost, and
//! `page.rs` for buffer access and the one guard that owns page writes.
//! The algorithm itself is `quiver_core::hnsw`.

pub mod buffer_hints;
pub mod build;
pub mod bulk_write;
pub mod check;
pub mod cost;
pub mod export;
pub mod graph;
pub mod insert;
pub mod options;
pub mod page;
pub mod rescore;
pub mod scan;
pub mod shards;
pub mod vacuum;

use crate::fmgr::pg_function;
use pgrx::pg_sys;
use quiver_core::space::{ElementKind, Metric};

/// What an index compares, resolved from its operator class.
#[derive(Debug, Clone, Copy)]
pub struct Opclass {
    pub metric: Metric,
    pub kind: ElementKind,
}

/// Resolves metric and element kind from the opclass's support function 1
/// (its C symbol names both) and whether function 2 (a norm) is present,
/// which marks cosine.
pub fn resolve_opclass(index: pg_sys::Relation) -> Opclass {
    // SAFETY: `index` is an open index relation; index_getprocid and
    // get_func_name only read the catalog caches.
    let (name, has_norm) = unsafe {
        let proc1 = pg_sys::index_getprocid(index, 1, 1);
        let proc2 = pg_sys::index_getprocid(index, 1, 2);
        let name = pg_sys::get_func_name(proc1);
        let name =
            if name.is_null() { String::new() } else { std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned() };
        (name, proc2 != pg_sys::InvalidOid)
    };
    let kind = if name.starts_with("sparsevec") {
        ElementKind::Sparse
    } else if name.starts_with("halfvec") {
        ElementKind::F16
    } else if name.starts_with("hamming") || name.starts_with("jaccard") {
        ElementKind::Bits
    } else {
        ElementKind::F32
    };
    let metric = if name.ends_with("l2_squared_distance") {
        Metric::L2Squared
    } else if name.ends_with("negative_inner_product") {
        if has_norm {
            Metric::Cosine
        } else {
            Metric::NegativeDot
        }
    } else if name.ends_with("l1_distance") {
        Metric::L1
    } else if name.starts_with("hamming") {
        Metric::Hamming
    } else if name.starts_with("jaccard") {
        Metric::Jaccard
    } else {
        pgrx::error!("hnsw: unsupported operator class support function \"{name}\"");
    };
    // l1_distance(halfvec, halfvec) shares the SQL name with the vector one:
    // tell them apart by the indexed column's type.
    let kind = if metric == Metric::L1 { column_kind(index) } else { kind };
    Opclass { metric, kind }
}

fn column_kind(index: pg_sys::Relation) -> ElementKind {
    // SAFETY: an index relation has a tuple descriptor with at least one attribute.
    let typname = unsafe {
        let att = (*(*index).rd_att).attrs.as_ptr();
        let p = pg_sys::format_type_be((*att).atttypid);
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    if typname.starts_with("halfvec") {
        ElementKind::F16
    } else if typname.starts_with("sparsevec") {
        ElementKind::Sparse
    } else {
        ElementKind::F32
    }
}

/// Dimensions of the indexed column (`vector(n)`, `halfvec(n)`, `bit(n)`).
pub fn column_dims(index: pg_sys::Relation) -> i32 {
    // SAFETY: as above.
    unsafe { (*(*(*index).rd_att).attrs.as_ptr()).atttypmod }
}

// Support function 3 of halfvec and bit opclasses: only marks the type
// (quiver reads the element kind from support function 1); never called.
pg_function!(hnsw_type_support, |_a| Ok(pg_sys::Datum::from(0usize)));

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn amvalidate(_opclassoid: pg_sys::Oid) -> bool {
    true
}

pg_function!(hnswhandler, |_a| {
    // A preloaded quiver defines the hnsw.* settings here, on first use in a
    // quiver database, so that pgvector's databases can define theirs.
    options::ensure_hnsw_gucs();
    // SAFETY: palloc0 returns a zeroed IndexAmRoutine-sized block; every
    // field we do not set stays zero (false / NULL / InvalidOid), which is
    // the right default for the version-specific fields too.
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
        (*r).ambulkdelete = Some(vacuum::ambulkdelete);
        (*r).amvacuumcleanup = Some(vacuum::amvacuumcleanup);
        (*r).amcostestimate = Some(cost::amcostestimate);
        (*r).amoptions = Some(options::amoptions);
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
