//! Planner costs. An hnsw scan reads a small, nearly constant part of the
//! index (about `entry level x m` elements on the way down plus a share of
//! `2m x ef_search` on level 0) before the first row comes back, so that
//! share of a full index scan is charged as startup cost. Without an ORDER
//! BY on the index operator the index is useless and costs infinity.
//!
//! The shape of the estimate (level-0 share shrinking with log(ef_search))
//! follows what pgvector measured; quiver's own constants live here.

use super::options::{self, IterativeScan};
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
        let m = super::options::index_m(index);
        // the meta page is read only when an iterative scan needs pricing
        let iterative = options::iterative_scan() != IterativeScan::Off;
        let visit_cost = if iterative { visit_cost(index) } else { 0.0 };
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        let ef = options::ef_search().max(1) as f64;
        let ratio = scanned_fraction((*info).tuples, m as f64, ef);
        let mut start = costs.indexTotalCost * ratio;
        // An iterative scan under a filter walks on until enough rows pass
        // it: about k / selectivity candidates for LIMIT k (the relation's
        // rows after its WHERE over its tuples), each costing the walk about
        // 0.6 m element visits (WordNet 100k, m 16, a 1% filter: about 10k
        // visits for 1000 candidates, 20 ms, where a sequential scan took
        // 39 ms and a bitmap scan of the filter's btree 2.7 ms). Without
        // this, the planner kept the index for a 1% filter where a bitmap
        // scan of the filter's btree and a sort were 7.5x faster.
        if iterative {
            let rel = (*info).rel;
            let selectivity = if (*rel).tuples > 0.0 { ((*rel).rows / (*rel).tuples).clamp(1e-9, 1.0) } else { 1.0 };
            let k = if (*root).limit_tuples > 0.0 { (*root).limit_tuples } else { ef };
            let candidates = (k / selectivity).min((*info).tuples.max(ef));
            start += (candidates - ef).max(0.0) * 0.6 * m as f64 * visit_cost;
        }
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

/// Planner cost of measuring one element: its distance (an operator per
/// dimension of a full precision vector, a 32nd of that per dimension of a
/// bit string or a binary code) and its visit (the page pin, the visited
/// set, the frontier: about 100 operators; with 384 dimensions that makes a
/// visit 1.2 units against the 1.0 measured, taking the sequential scan's
/// cost as the clock).
fn visit_cost(index: pg_sys::Relation) -> f64 {
    let meta = super::page::read_meta(index);
    let per_dim = match (meta.kind, meta.quantization) {
        (quiver_core::space::ElementKind::Bits, _) | (_, quiver_core::quantize::Quantization::Binary) => 1.0 / 32.0,
        _ => 1.0,
    };
    // SAFETY: a plain GUC read.
    (unsafe { pg_sys::cpu_operator_cost }) * (per_dim * meta.dims as f64 + 100.0)
}
