//! Reloptions (`WITH (m = 16, ef_construction = 64)`) and the `hnsw.*`
//! GUCs, with pgvector's names, defaults and ranges.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

pub const DEFAULT_M: i32 = 16;
pub const DEFAULT_EF_CONSTRUCTION: i32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum IterativeScan {
    #[name = c"off"]
    Off,
    #[name = c"relaxed_order"]
    RelaxedOrder,
    #[name = c"strict_order"]
    StrictOrder,
}

/// How `hnsw.ef_search` applies to the partitions of a hash-partitioned
/// table (a sharded collection): see `shards::search_ef`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum ShardedEfSearch {
    #[name = c"split"]
    Split,
    #[name = c"full"]
    Full,
}

pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(40);
pub static SHARDED_EF_SEARCH: GucSetting<ShardedEfSearch> = GucSetting::<ShardedEfSearch>::new(ShardedEfSearch::Split);
pub static ITERATIVE_SCAN: GucSetting<IterativeScan> = GucSetting::<IterativeScan>::new(IterativeScan::Off);
pub static MAX_SCAN_TUPLES: GucSetting<i32> = GucSetting::<i32>::new(20_000);
pub static IVFFLAT_PROBES: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static IVFFLAT_MAX_PROBES: GucSetting<i32> = GucSetting::<i32>::new(32768);
pub static IVFFLAT_ITERATIVE_SCAN: GucSetting<IvfflatIterativeScan> =
    GucSetting::<IvfflatIterativeScan>::new(IvfflatIterativeScan::Off);

/// `ivfflat.iterative_scan`: pgvector's ivfflat has no strict order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum IvfflatIterativeScan {
    #[name = c"off"]
    Off,
    #[name = c"relaxed_order"]
    RelaxedOrder,
}

/// Accepted for pgvector's sake: quiver's iterative scans keep their state
/// in the scan's own memory context, bounded by hnsw.max_scan_tuples.
pub static SCAN_MEM_MULTIPLIER: GucSetting<f64> = GucSetting::<f64>::new(1.0);
/// Rescoring of binary-quantized scans: candidates per returned row, and on/off.
pub static OVERSAMPLING: GucSetting<f64> = GucSetting::<f64>::new(DEFAULT_OVERSAMPLING);
pub const DEFAULT_OVERSAMPLING: f64 = 3.0;
pub static RESCORE: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Whether index scans are counted in shared memory (when preloaded).
pub static TRACK_METRICS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Who owns the `hnsw.*` settings in this backend (see `ensure_hnsw_gucs`).
static HNSW_GUCS: AtomicU8 = AtomicU8::new(HNSW_GUCS_UNDEFINED);
const HNSW_GUCS_UNDEFINED: u8 = 0;
const HNSW_GUCS_OURS: u8 = 1;
const HNSW_GUCS_PGVECTOR: u8 = 2;

static RELOPT_KIND: AtomicU32 = AtomicU32::new(0);

/// The parsed reloptions, laid out as `build_reloptions` fills them.
#[repr(C)]
pub struct HnswOptions {
    vl_len_: i32,
    pub m: i32,
    pub ef_construction: i32,
    /// 0 none, 1 binary (the enum reloption's values).
    pub quantization: i32,
}

/// Values of the `quantization` reloption, NULL-terminated as Postgres wants.
struct EnumValues([pg_sys::relopt_enum_elt_def; 3]);
// SAFETY: the table only holds pointers to static C strings; never mutated.
unsafe impl Sync for EnumValues {}
static QUANTIZATION_VALUES: EnumValues = EnumValues([
    pg_sys::relopt_enum_elt_def { string_val: c"none".as_ptr(), symbol_val: 0 },
    pg_sys::relopt_enum_elt_def { string_val: c"binary".as_ptr(), symbol_val: 1 },
    pg_sys::relopt_enum_elt_def { string_val: std::ptr::null(), symbol_val: 0 },
]);

/// Defines `hnsw.ef_search`, `hnsw.iterative_scan`, `hnsw.max_scan_tuples`,
/// `hnsw.scan_mem_multiplier` and `ivfflat.probes`, `ivfflat.iterative_scan`,
/// `ivfflat.max_probes`, pgvector's names, on first use.
///
/// pgvector defines the same names when its library loads, and Postgres
/// refuses a second definition ("attempt to redefine parameter"). Were
/// quiver, preloaded, to define them in the postmaster, every database of
/// the cluster that uses pgvector would fail to load it. So a preloaded
/// quiver defines them in a backend only when quiver's hnsw is first used
/// there (a `SET` made earlier waits as a placeholder and is taken over),
/// and when pgvector got there first, quiver reads pgvector's settings.
pub fn ensure_hnsw_gucs() {
    if HNSW_GUCS.load(Ordering::Relaxed) != HNSW_GUCS_UNDEFINED {
        return;
    }
    if defined_elsewhere(c"hnsw.ef_search") {
        HNSW_GUCS.store(HNSW_GUCS_PGVECTOR, Ordering::Relaxed);
        return;
    }
    HNSW_GUCS.store(HNSW_GUCS_OURS, Ordering::Relaxed);
    GucRegistry::define_int_guc(
        c"hnsw.ef_search",
        c"Sets the size of the dynamic candidate list for search",
        c"Valid range is 1..1000.",
        &EF_SEARCH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"hnsw.iterative_scan",
        c"Sets the mode for iterative scans",
        c"off, relaxed_order or strict_order: keep scanning past ef_search so filtered queries return enough rows.",
        &ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hnsw.max_scan_tuples",
        c"Sets the max number of tuples to visit for iterative scans",
        c"",
        &MAX_SCAN_TUPLES,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"hnsw.scan_mem_multiplier",
        c"Sets the multiple of work_mem to use for iterative scans",
        c"",
        &SCAN_MEM_MULTIPLIER,
        1.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfflat.probes",
        c"Sets the number of probes",
        c"Valid range is 1..lists.",
        &IVFFLAT_PROBES,
        1,
        32768,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"ivfflat.iterative_scan",
        c"Sets the mode for iterative scans",
        c"off or relaxed_order: probe more lists until enough rows pass the query's filter.",
        &IVFFLAT_ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfflat.max_probes",
        c"Sets the max number of probes for iterative scans",
        c"",
        &IVFFLAT_MAX_PROBES,
        1,
        32768,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: static C strings; reserving the prefixes makes a typo such as
    // `SET hnsw.ef_serch` an error, as pgvector does.
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"hnsw".as_ptr());
        pg_sys::MarkGUCPrefixReserved(c"ivfflat".as_ptr());
    }
}

/// Whether a setting exists that is not a placeholder, i.e. another library
/// (pgvector) defined it in this backend.
fn defined_elsewhere(name: &CStr) -> bool {
    // SAFETY: name is a valid C string; missing_ok makes an unknown name 0.
    unsafe {
        if pg_sys::GetConfigOption(name.as_ptr(), true, false).is_null() {
            return false;
        }
        #[cfg(not(feature = "pg13"))]
        {
            let flags = pg_sys::GetConfigOptionFlags(name.as_ptr(), true);
            flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 == 0
        }
        #[cfg(feature = "pg13")]
        {
            true
        }
    }
}

/// The current value of a setting another library owns, as text.
fn foreign_setting(name: &CStr) -> Option<String> {
    // SAFETY: name is a valid C string; the result, when not NULL, points at
    // the setting's current value, which we copy at once.
    unsafe {
        let v = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

fn uses_pgvector_settings() -> bool {
    ensure_hnsw_gucs();
    HNSW_GUCS.load(Ordering::Relaxed) == HNSW_GUCS_PGVECTOR
}

/// `hnsw.ef_search`, whoever defined it.
pub fn ef_search() -> i32 {
    if uses_pgvector_settings() {
        return foreign_setting(c"hnsw.ef_search").and_then(|v| v.parse().ok()).unwrap_or(40);
    }
    EF_SEARCH.get()
}

/// `hnsw.iterative_scan`, whoever defined it.
pub fn iterative_scan() -> IterativeScan {
    if uses_pgvector_settings() {
        return match foreign_setting(c"hnsw.iterative_scan").as_deref() {
            Some("relaxed_order") => IterativeScan::RelaxedOrder,
            Some("strict_order") => IterativeScan::StrictOrder,
            _ => IterativeScan::Off,
        };
    }
    ITERATIVE_SCAN.get()
}

/// `hnsw.max_scan_tuples`, whoever defined it.
pub fn max_scan_tuples() -> i32 {
    if uses_pgvector_settings() {
        return foreign_setting(c"hnsw.max_scan_tuples").and_then(|v| v.parse().ok()).unwrap_or(20_000);
    }
    MAX_SCAN_TUPLES.get()
}

/// `ivfflat.probes`, whoever defined it.
pub fn ivfflat_probes() -> i32 {
    if uses_pgvector_settings() {
        return foreign_setting(c"ivfflat.probes").and_then(|v| v.parse().ok()).unwrap_or(1);
    }
    IVFFLAT_PROBES.get()
}

/// `ivfflat.max_probes`, whoever defined it.
pub fn ivfflat_max_probes() -> i32 {
    if uses_pgvector_settings() {
        return foreign_setting(c"ivfflat.max_probes").and_then(|v| v.parse().ok()).unwrap_or(32768);
    }
    IVFFLAT_MAX_PROBES.get()
}

/// Whether `ivfflat.iterative_scan` is on (relaxed_order), whoever defined it.
pub fn ivfflat_iterative() -> bool {
    if uses_pgvector_settings() {
        return foreign_setting(c"ivfflat.iterative_scan").as_deref() == Some("relaxed_order");
    }
    IVFFLAT_ITERATIVE_SCAN.get() == IvfflatIterativeScan::RelaxedOrder
}

/// Called once from `_PG_init`.
pub fn init() {
    // SAFETY: a plain read of a flag Postgres sets around preloading.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        ensure_hnsw_gucs();
    }
    GucRegistry::define_enum_guc(
        c"quiver.sharded_ef_search",
        c"How hnsw.ef_search applies to each partition of a hash-partitioned table",
        c"split: each of n partitions is searched with ef_search / sqrt(n), rounded up, so that the merged result has about the recall one table has at ef_search; full: each with ef_search.",
        &SHARDED_EF_SEARCH,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"quiver.track_metrics",
        c"Counts hnsw index scans and their latency in shared memory",
        c"Needs quiver in shared_preload_libraries; see quiver.metrics.",
        &TRACK_METRICS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"quiver.oversampling",
        c"Candidates rescored per returned row by scans of binary-quantized hnsw indexes",
        c"A scan walks the graph with beam sqrt(oversampling) x hnsw.ef_search on codes and rescores the best oversampling x hnsw.ef_search candidates it measured with exact distances.",
        &OVERSAMPLING,
        1.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"quiver.rescore",
        c"Rescores binary-quantized hnsw candidates with the exact distance from the table",
        c"off returns rows in the order of their codes' estimated distances (faster, approximate order).",
        &RESCORE,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called once at library load, before any index uses the kind;
    // the option names and descriptions are static C strings.
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"quiver".as_ptr());
        let kind = pg_sys::add_reloption_kind();
        RELOPT_KIND.store(kind as u32, Ordering::Relaxed);
        pg_sys::add_int_reloption(
            kind,
            c"m".as_ptr(),
            c"Max number of connections".as_ptr(),
            DEFAULT_M,
            2,
            100,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_int_reloption(
            kind,
            c"ef_construction".as_ptr(),
            c"Size of the dynamic candidate list for construction".as_ptr(),
            DEFAULT_EF_CONSTRUCTION,
            4,
            1000,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_enum_reloption(
            kind,
            c"quantization".as_ptr(),
            c"How the index stores vectors: none or binary (1-bit codes, rescored from the table)".as_ptr(),
            QUANTIZATION_VALUES.0.as_ptr() as *mut pg_sys::relopt_enum_elt_def,
            0,
            c"Valid values are \"none\" and \"binary\".".as_ptr(),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let table = [
        pg_sys::relopt_parse_elt {
            optname: c"m".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(HnswOptions, m) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"ef_construction".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(HnswOptions, ef_construction) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"quantization".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_ENUM,
            offset: std::mem::offset_of!(HnswOptions, quantization) as i32,
        },
    ];
    // SAFETY: the table describes HnswOptions' int fields; build_reloptions
    // pallocs and fills a struct of the given size (or returns NULL).
    let options = unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND.load(Ordering::Relaxed) as pg_sys::relopt_kind::Type,
            std::mem::size_of::<HnswOptions>(),
            table.as_ptr(),
            table.len() as i32,
        ) as *mut pg_sys::bytea
    };
    // CREATE INDEX and ALTER INDEX ... SET validate the merged options: refuse
    // a pair the build would refuse, so that no index ever carries one (the
    // planner reads them for every ORDER BY on the table).
    if validate && !options.is_null() {
        // SAFETY: build_reloptions returned a filled HnswOptions.
        let (m, efc) = unsafe {
            let o = options as *const HnswOptions;
            ((*o).m, (*o).ef_construction)
        };
        check_params(m, efc);
    }
    options
}

fn check_params(m: i32, efc: i32) {
    if efc < 2 * m {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "ef_construction must be greater than or equal to 2 * m"
        );
    }
}

/// (m, ef_construction) of an index, defaults when unset; checks their relation.
pub fn index_params(index: pg_sys::Relation) -> (usize, usize) {
    let (m, efc) = raw_params(index);
    check_params(m, efc);
    (m as usize, efc as usize)
}

/// `m` of an index as its options say, unchecked: the planner prices scans
/// with it and must never fail on options an older version let through.
pub fn index_m(index: pg_sys::Relation) -> usize {
    raw_params(index).0.max(1) as usize
}

fn raw_params(index: pg_sys::Relation) -> (i32, i32) {
    // SAFETY: rd_options is NULL or the HnswOptions built by amoptions.
    unsafe {
        let o = (*index).rd_options as *const HnswOptions;
        if o.is_null() {
            (DEFAULT_M, DEFAULT_EF_CONSTRUCTION)
        } else {
            ((*o).m, (*o).ef_construction)
        }
    }
}

/// The `quantization` reloption of an index (none when unset).
pub fn index_quantization(index: pg_sys::Relation) -> quiver_core::quantize::Quantization {
    // SAFETY: rd_options is NULL or the HnswOptions built by amoptions.
    let q = unsafe {
        let o = (*index).rd_options as *const HnswOptions;
        if o.is_null() {
            0
        } else {
            (*o).quantization
        }
    };
    if q == 1 {
        quiver_core::quantize::Quantization::Binary
    } else {
        quiver_core::quantize::Quantization::None
    }
}
