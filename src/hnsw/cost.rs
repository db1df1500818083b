//! Planner costs. An hnsw scan reads a small, nearly constant part of the
//! index (about `entry level x m` elements on the way down plus a share of
//! `2m x ef_search` on level 0) before the first row comes back, so that
//! share of a full index scan is charged as startup cost. Without an ORDER
//! BY on the index operator the index is useless and costs infinity.
//!
//! The shape of the estimate (level-0 share shrinking with log(ef_search))
//! follows what pgvector measured; quiver's own constants live here.

use super::options::EF_SEARCH;
use pgrx::pg_sys;

/// Expected fraction of the index a scan reads.
fn scanned_fraction(tuples: f64, m: f64, ef: f64) -> f64 {
    if tuples <= 1.0 {
        return 1.0;
    }
    let ml = 1.0 / m.ln();
    let entry_level = (tuples.ln() * ml).floor();
    let level0_max = 2.0 * m * ef;
    // Revisits are skipped, so the share of level0_max read falls with the
    // graph's size relative to the beam.
    let level0_share = 0.55 * tuples.ln() / (m.ln() * (1.0 + ef.ln()));
    ((entry_level * m + level0_max * level0_share) / tuples).min(1.0)
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amcostestimate(
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
        let (m, _) = super::options::index_params(index);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        let ratio = scanned_fraction((*info).tuples, m as f64, EF_SEARCH.get() as f64);
        let mut start = costs.indexTotalCost * ratio;
        // A sequential scan's cost ignores TOASTed vectors, which an exact
        // search must detoast row by row; the index's pages are where the
        // vectors live. Charge the pages a scan reads beyond the heap's size
        // no more than a sequential read of the heap.
        let heap_pages = (*(*info).rel).pages as f64;
        let read_pages = costs.numIndexPages * ratio;
        if read_pages > heap_pages && ratio < 0.5 {
            let mut seq_page_cost = 1.0;
            pg_sys::get_tablespace_page_costs((*info).reltablespace, std::ptr::null_mut(), &mut seq_page_cost);
            start -= read_pages * (costs.spc_random_page_cost - seq_page_cost);
            start -= (read_pages - heap_pages) * seq_page_cost;
            start = start.max(0.0);
        }
        *startup = start;
        *total = costs.indexTotalCost.max(start);
        *selectivity = costs.indexSelectivity;
        *correlation = 0.0;
        *pages = costs.numIndexPages;
    }
}
