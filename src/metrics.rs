//! Per-index search counters and latency histograms in shared memory.
//!
//! Only when quiver is in `shared_preload_libraries` (shared memory can only
//! be reserved at server start); otherwise nothing is counted and the SQL
//! side says so. Counters are plain atomics in a fixed table of slots, one
//! per index (claimed by compare-and-swap on the index OID), so backends
//! never take a lock to count and counts survive backends exiting.

use crate::fmgr::pg_function;
use pgrx::{pg_guard, pg_shmem_init, pg_sys, PGRXSharedMemory, PgAtomic};
use quiver_core::metrics::{bucket_for, quantile_us, BUCKETS, BUCKET_BOUNDS_US};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Indexes tracked at once; searches of further indexes are not counted.
const SLOTS: usize = 512;

#[derive(Default)]
#[repr(C)]
struct Slot {
    /// (database OID, index OID) owning the slot; 0 = free.
    database: AtomicU32,
    index: AtomicU32,
    searches: AtomicU64,
    rows: AtomicU64,
    distances: AtomicU64,
    /// Candidates of binary-quantized scans read from the table for exact distances.
    rescored: AtomicU64,
    errors: AtomicU64,
    latency_sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

#[repr(C)]
pub struct Table {
    slots: [Slot; SLOTS],
}

impl Default for Table {
    fn default() -> Self {
        Table { slots: std::array::from_fn(|_| Slot::default()) }
    }
}

// SAFETY: only atomics inside, no pointers: valid in every process that maps it.
unsafe impl PGRXSharedMemory for Table {}

// SAFETY: the name is unique to quiver.
static TABLE: PgAtomic<Table> = unsafe { PgAtomic::new(c"quiver search metrics") };
/// Set in the postmaster when preloaded; inherited by every backend.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Reserves the table when loaded by `shared_preload_libraries`.
pub fn init() {
    // SAFETY: read-only flag set by the postmaster while loading libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(TABLE);
        ENABLED.store(true, Ordering::Relaxed);
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) && super::hnsw::options::TRACK_METRICS.get()
}

fn my_database() -> u32 {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    u32::from(unsafe { pg_sys::MyDatabaseId })
}

/// The slot of `index` in this database, claimed if new; None when full.
fn slot(index: pg_sys::Oid) -> Option<&'static Slot> {
    let (db, ix) = (my_database(), u32::from(index));
    let table = TABLE.get();
    let start = (ix as usize).wrapping_mul(0x9E37_79B9) % SLOTS;
    for k in 0..SLOTS {
        let s = &table.slots[(start + k) % SLOTS];
        let owner = s.index.load(Ordering::Acquire);
        if owner == ix && s.database.load(Ordering::Acquire) == db {
            return Some(s);
        }
        if owner == 0 && s.index.compare_exchange(0, ix, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            s.database.store(db, Ordering::Release);
            return Some(s);
        }
    }
    None
}

/// Counts one finished index scan.
pub fn record_scan(index: pg_sys::Oid, rows: u64, distances: u64, rescored: u64, elapsed_us: u64) {
    if !enabled() {
        return;
    }
    if let Some(s) = slot(index) {
        s.searches.fetch_add(1, Ordering::Relaxed);
        s.rows.fetch_add(rows, Ordering::Relaxed);
        s.distances.fetch_add(distances, Ordering::Relaxed);
        s.rescored.fetch_add(rescored, Ordering::Relaxed);
        s.latency_sum_us.fetch_add(elapsed_us, Ordering::Relaxed);
        s.buckets[bucket_for(elapsed_us)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a scan that ended in an error quiver raised (bad query vector,
/// damaged index).
pub fn record_error(index: pg_sys::Oid) {
    if !enabled() {
        return;
    }
    if let Some(s) = slot(index) {
        s.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything counted for this database, as JSON for the SQL views.
pub fn snapshot_json() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let bounds: Vec<String> = BUCKET_BOUNDS_US.iter().map(|b| b.to_string()).collect();
    let _ = write!(out, "{{\"enabled\": {}, \"bucket_bounds_us\": [{}], \"indexes\": [", enabled(), bounds.join(","));
    if ENABLED.load(Ordering::Relaxed) {
        let db = my_database();
        let mut first = true;
        for s in TABLE.get().slots.iter() {
            let ix = s.index.load(Ordering::Acquire);
            if ix == 0 || s.database.load(Ordering::Acquire) != db {
                continue;
            }
            let counts: [u64; BUCKETS] = std::array::from_fn(|i| s.buckets[i].load(Ordering::Relaxed));
            let buckets: Vec<String> = counts.iter().map(|b| b.to_string()).collect();
            let q = |p: f64| quantile_us(&counts, p).map(|v| format!("{v:.1}")).unwrap_or_else(|| "null".into());
            let _ = write!(
                out,
                "{}{{\"index\": {}, \"searches\": {}, \"rows\": {}, \"distances\": {}, \"rescored\": {}, \"errors\": {}, \"latency_sum_us\": {}, \"buckets\": [{}], \"p50_us\": {}, \"p95_us\": {}, \"p99_us\": {}}}",
                if first { "" } else { ", " },
                ix,
                s.searches.load(Ordering::Relaxed),
                s.rows.load(Ordering::Relaxed),
                s.distances.load(Ordering::Relaxed),
                s.rescored.load(Ordering::Relaxed),
                s.errors.load(Ordering::Relaxed),
                s.latency_sum_us.load(Ordering::Relaxed),
                buckets.join(","),
                q(0.5),
                q(0.95),
                q(0.99)
            );
            first = false;
        }
    }
    out.push_str("]}");
    out
}

/// Zeroes the counters of this database (all of them, or one index's).
pub fn reset(index: Option<pg_sys::Oid>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let db = my_database();
    for s in TABLE.get().slots.iter() {
        let ix = s.index.load(Ordering::Acquire);
        if ix == 0 || s.database.load(Ordering::Acquire) != db || index.map(|i| u32::from(i) != ix).unwrap_or(false) {
            continue;
        }
        for c in [&s.searches, &s.rows, &s.distances, &s.rescored, &s.errors, &s.latency_sum_us]
            .into_iter()
            .chain(s.buckets.iter())
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

pg_function!(quiver_metrics_json, |_a| {
    Ok(pgrx::IntoDatum::into_datum(snapshot_json().as_str()).expect("text datum"))
});

// Argument: an index OID, or 0 for every index of the database.
pg_function!(quiver_reset_metrics, |a| {
    let oid = a.datum(0).value() as u32;
    reset((oid != 0).then(|| pg_sys::Oid::from(oid)));
    Ok(pg_sys::Datum::from(0))
});

/// Size in bytes of a relation's main fork, or -1 when another transaction
/// holds a lock that conflicts with reading it (an ACCESS EXCLUSIVE lock
/// of a REINDEX or ALTER TABLE) or it is gone: a scrape must never wait
/// behind DDL. `pg_relation_size` would queue for the lock.
fn relation_size_nowait(oid: pg_sys::Oid) -> i64 {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: a conditional lock either is granted (and released below) or
    // is not; try_relation_open returns NULL for a relation dropped before
    // we locked it; the size is read from the open relation's storage.
    unsafe {
        if !pg_sys::ConditionalLockRelationOid(oid, lock) {
            return -1;
        }
        let rel = pg_sys::try_relation_open(oid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let size = if rel.is_null() {
            -1
        } else {
            let has_storage = matches!((*(*rel).rd_rel).relkind as u8, b'r' | b'i' | b'm' | b't');
            let blocks =
                if has_storage && pg_sys::smgrexists(pg_sys::RelationGetSmgr(rel), pg_sys::ForkNumber::MAIN_FORKNUM) {
                    pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) as i64
                } else {
                    0
                };
            pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            blocks * pg_sys::BLCKSZ as i64
        };
        pg_sys::UnlockRelationOid(oid, lock);
        size
    }
}

// The library's version, which snapshots record: the extension's own
// version reads 0.8.6 when quiver is installed under pgvector's name.
pg_function!(quiver_library_version, |_a| {
    Ok(pgrx::IntoDatum::into_datum(env!("CARGO_PKG_VERSION")).expect("text datum"))
});

pg_function!(quiver_relation_size_nowait, |a| {
    let oid = pg_sys::Oid::from(a.datum(0).value() as u32);
    Ok(pgrx::IntoDatum::into_datum(relation_size_nowait(oid)).expect("int8 datum"))
});
