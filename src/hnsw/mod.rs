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
pub mod prebuilt;
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

/// Resolves metric and element kind from the catalog: the kind from the
/// operator class's input type, the metric from its ordering operator
/// (strategy 1). Both are the SQL surface users write (`vector`, `<=>`),
/// which no upgrade renames; support function names are free to change.
pub fn resolve_opclass(index: pg_sys::Relation) -> Opclass {
    // SAFETY: `index` is an open index relation with one key column, so
    // rd_opfamily and rd_opcintype have one entry each; the lsyscache
    // lookups only read the catalog caches and return palloc'd names.
    let (typname, opname) = unsafe {
        let family = *(*index).rd_opfamily;
        let intype = *(*index).rd_opcintype;
        let op = pg_sys::get_opfamily_member(family, intype, intype, 1);
        let opname = if op == pg_sys::InvalidOid { std::ptr::null_mut() } else { pg_sys::get_opname(op) };
        let cstr = |p: *mut std::ffi::c_char| {
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        // qualified, so that search_path cannot matter; the schema is cut off below
        (cstr(pg_sys::format_type_be_qualified(intype)), cstr(opname))
    };
    let unqualified = typname.rsplit('.').next().unwrap_or("").trim_matches('"');
    let kind = match unqualified {
        "vector" => ElementKind::F32,
        "halfvec" => ElementKind::F16,
        "sparsevec" => ElementKind::Sparse,
        "bit" => ElementKind::Bits,
        other => pgrx::error!("hnsw: unsupported operator class input type \"{other}\""),
    };
    let metric = match opname.as_str() {
        "<->" => Metric::L2Squared,
        "<#>" => Metric::NegativeDot,
        "<=>" => Metric::Cosine,
        "<+>" => Metric::L1,
        "<~>" => Metric::Hamming,
        "<%>" => Metric::Jaccard,
        other => pgrx::error!("hnsw: unsupported operator class ordering operator \"{other}\""),
    };
    Opclass { metric, kind }
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
