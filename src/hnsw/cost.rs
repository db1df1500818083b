//! Planner costs: an hnsw scan reads about ef_search x 2m elements whatever
//! the table size, nearly all before the first row comes back, so its cost
//! is all startup. Without an ORDER BY on the index operator it is useless.

use super::options::EF_SEARCH;
use pgrx::pg_sys;

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
        let index = pg_sys::index_open((*info).indexoid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let (m, _) = super::options::index_params(index);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        let tuples = (*(*info).rel).tuples.max(1.0);
        let visited = (EF_SEARCH.get() as f64 * 2.0 * m as f64).min(tuples);
        let mut costs: pg_sys::GenericCosts = std::mem::zeroed();
        costs.numIndexTuples = visited;
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        *startup = costs.indexTotalCost;
        *total = costs.indexTotalCost;
        *selectivity = costs.indexSelectivity;
        *correlation = 0.0;
        *pages = costs.numIndexPages;
    }
}
