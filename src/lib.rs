//! quiver: a PostgreSQL extension giving Postgres the operating model of a
//! vector database, drop-in compatible with pgvector.
//!
//! This crate is the Postgres glue. The vector math, parsing and formats
//! live in the pure-Rust `quiver-core` crate; here are the fmgr entry
//! points, datum layouts and the hand-written SQL that binds them.

mod bit_functions;
mod fmgr;
mod hnsw;
mod ivfflat;
mod metrics;
mod snapshot;
mod snapshot_restore;
mod sparsevec_type;
mod varlena;
mod vector_type;

::pgrx::pg_module_magic!(name, version);

// The SQL surface, in dependency order. It is hand-written (not generated
// from Rust signatures) so that type, function, operator and opclass names
// and properties match pgvector's exactly.
::pgrx::extension_sql_file!("../sql/vector.sql", name = "vector", bootstrap);
::pgrx::extension_sql_file!("../sql/halfvec.sql", name = "halfvec", requires = ["vector"]);
::pgrx::extension_sql_file!("../sql/bit.sql", name = "bit", requires = ["halfvec"]);
::pgrx::extension_sql_file!("../sql/sparsevec.sql", name = "sparsevec", requires = ["bit"]);
::pgrx::extension_sql_file!("../sql/hnsw.sql", name = "hnsw", requires = ["sparsevec"]);
::pgrx::extension_sql_file!("../sql/ivfflat.sql", name = "ivfflat", requires = ["hnsw"]);
::pgrx::extension_sql_file!("../sql/collections.sql", name = "collections", requires = ["ivfflat"]);
::pgrx::extension_sql_file!("../sql/metrics.sql", name = "metrics", requires = ["collections"]);
::pgrx::extension_sql_file!("../sql/snapshots.sql", name = "snapshots", requires = ["metrics"]);

/// Runs when Postgres loads the library: registers GUCs and reloptions.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    hnsw::options::init();
    ivfflat::init();
    hnsw::shards::init();
    metrics::init();
    snapshot::init();
}

// In-database tests live in pg_test/, each file in a `#[pg_schema] mod tests`
// because pgrx's harness calls them as tests.<name>().
#[cfg(any(test, feature = "pg_test"))]
#[path = "../pg_test/mod.rs"]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
