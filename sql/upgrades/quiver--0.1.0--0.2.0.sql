-- quiver 0.1.0 -> 0.2.0 (ALTER EXTENSION quiver UPDATE)
--
-- What 0.2.0 adds to the SQL surface (the rest of CHANGELOG.md is in the
-- library). tests/test_upgrade.py checks that a database upgraded through
-- the scripts in sql/upgrades has exactly the objects and definitions of a
-- fresh install.
\echo Use "ALTER EXTENSION quiver UPDATE" to load this file. \quit

-- hnsw on sparsevec
CREATE FUNCTION hnsw_sparsevec_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'hnsw_type_support' LANGUAGE C;

-- sparsevec: elements of varying size, up to 1,000 non-zero elements (pgvector's limit)
CREATE OPERATOR CLASS sparsevec_l2_ops
    FOR TYPE sparsevec USING hnsw AS
    OPERATOR 1 <-> (sparsevec, sparsevec) FOR ORDER BY float_ops,
    FUNCTION 1 sparsevec_l2_squared_distance(sparsevec, sparsevec),
    FUNCTION 3 hnsw_sparsevec_support(internal);
CREATE OPERATOR CLASS sparsevec_ip_ops
    FOR TYPE sparsevec USING hnsw AS
    OPERATOR 1 <#> (sparsevec, sparsevec) FOR ORDER BY float_ops,
    FUNCTION 1 sparsevec_negative_inner_product(sparsevec, sparsevec),
    FUNCTION 3 hnsw_sparsevec_support(internal);
CREATE OPERATOR CLASS sparsevec_cosine_ops
    FOR TYPE sparsevec USING hnsw AS
    OPERATOR 1 <=> (sparsevec, sparsevec) FOR ORDER BY float_ops,
    FUNCTION 1 sparsevec_negative_inner_product(sparsevec, sparsevec),
    FUNCTION 2 l2_norm(sparsevec),
    FUNCTION 3 hnsw_sparsevec_support(internal);
CREATE OPERATOR CLASS sparsevec_l1_ops
    FOR TYPE sparsevec USING hnsw AS
    OPERATOR 1 <+> (sparsevec, sparsevec) FOR ORDER BY float_ops,
    FUNCTION 1 l1_distance(sparsevec, sparsevec),
    FUNCTION 3 hnsw_sparsevec_support(internal);

-- one metric namespace for prometheus_metrics() and postgres_exporter (datname on every series)
CREATE OR REPLACE VIEW quiver.metrics AS
    WITH m AS (SELECT quiver._metrics_json()::jsonb AS j),
    hnsw AS (
        SELECT c.oid::regclass AS index, x.indrelid::regclass AS tbl, c.reltuples, quiver._relation_size(c.oid) AS bytes
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname = 'hnsw'
        JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
        WHERE c.relkind = 'i'
    ),
    s AS (SELECT * FROM quiver.search_stats),
    -- collections the caller may see (SELECT on the table and USAGE on its
    -- schema, or pg_read_all_stats), with counts from the statistics: a
    -- scrape scans no table and waits for no lock
    ci AS (SELECT i.* FROM quiver.collection_catalog c
           JOIN pg_catalog.pg_class r ON r.oid = c.relation
           CROSS JOIN LATERAL quiver.collection_info(c.name, false) i
           WHERE pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
              OR (pg_catalog.has_table_privilege(c.relation, 'SELECT')
                  AND pg_catalog.has_schema_privilege(r.relnamespace, 'USAGE'))),
    bounds AS (
        SELECT b.ord, b.le
        FROM m, LATERAL (SELECT ord, (v::float8 / 1e6)::text AS le
                         FROM jsonb_array_elements_text(m.j -> 'bucket_bounds_us') WITH ORDINALITY AS t(v, ord)
                         UNION ALL
                         SELECT jsonb_array_length(m.j -> 'bucket_bounds_us') + 1, '+Inf') b
    ),
    -- hnsw builds in progress; a plain CREATE INDEX's index is not yet
    -- visible to other sessions, so its build is known by its phase names
    builds AS (
        SELECT p.relid, p.phase, p.tuples_done, p.tuples_total, p.blocks_done, p.blocks_total
        FROM pg_catalog.pg_stat_progress_create_index p
        WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class ic JOIN pg_catalog.pg_am am ON am.oid = ic.relam
                      WHERE ic.oid = p.index_relid AND am.amname = 'hnsw')
           OR p.phase IN ('building index: loading tuples', 'building index: linking the graph',
                          'building index: writing pages',
                          'building index: inserting tuples beyond maintenance_work_mem')
    ),
    all_metrics AS (
    SELECT 'quiver_metrics_enabled' AS metric, 'gauge' AS type,
           'Whether search counts and latency are collected (quiver in shared_preload_libraries and quiver.track_metrics on)' AS help,
           '{}'::jsonb AS labels, CASE WHEN (m.j ->> 'enabled')::boolean THEN 1 ELSE 0 END::float8 AS value
    FROM m
    UNION ALL
    SELECT 'quiver_recovery_mode', 'gauge', 'Whether this server is a standby in recovery (pg_is_in_recovery)',
           '{}', CASE WHEN pg_catalog.pg_is_in_recovery() THEN 1 ELSE 0 END
    UNION ALL
    SELECT 'quiver_collections', 'gauge', 'Collections in this database', '{}', count(*)
    FROM quiver.collection_catalog
    UNION ALL
    SELECT c.metric, 'gauge', c.help, jsonb_build_object('collection', ci.name), c.value
    FROM ci CROSS JOIN LATERAL (VALUES
        ('quiver_collection_points', 'Rows of a collection (statistics)', ci.points_count::float8),
        ('quiver_collection_indexed_vectors', 'Vectors of a collection in a valid index', ci.indexed_vectors_count),
        ('quiver_collection_dead_tuples', 'Dead rows of a collection awaiting VACUUM', ci.dead_tuples),
        ('quiver_collection_status_code', 'Collection status: 0 green, 1 grey (VACUUM advised), 2 yellow (index building), 3 red (index missing or invalid)',
         CASE ci.status WHEN 'green' THEN 0 WHEN 'grey' THEN 1 WHEN 'yellow' THEN 2 ELSE 3 END)
    ) c(metric, help, value)
    UNION ALL
    SELECT 'quiver_index_size_bytes', 'gauge', 'Size of an hnsw index',
           jsonb_build_object('index', h.index::text, 'table', h.tbl::text), h.bytes
    FROM hnsw h
    UNION ALL
    SELECT 'quiver_index_bytes_per_vector', 'gauge', 'Index size divided by the rows of its table (planner estimate; NaN before the first ANALYZE)',
           jsonb_build_object('index', h.index::text, 'table', h.tbl::text),
           CASE WHEN h.reltuples > 0 THEN h.bytes / h.reltuples END
    FROM hnsw h
    UNION ALL
    SELECT 'quiver_index_build_progress', 'gauge', 'Fraction done of an hnsw index build in progress',
           jsonb_build_object('table', p.relid::regclass::text, 'phase', p.phase),
           CASE WHEN p.tuples_total > 0 THEN p.tuples_done::float8 / p.tuples_total
                WHEN p.blocks_total > 0 THEN p.blocks_done::float8 / p.blocks_total ELSE 0 END
    FROM builds p
    UNION ALL
    SELECT c.metric, 'counter', c.help, jsonb_build_object('index', s.index::text), c.value
    FROM s CROSS JOIN LATERAL (VALUES
        ('quiver_search_scans_total', 'Index scans of an hnsw index', s.searches::float8),
        ('quiver_search_rows_total', 'Rows returned by index scans', s.rows_returned),
        ('quiver_search_distances_total', 'Distances computed by index scans', s.distances),
        ('quiver_search_rescored_total', 'Candidates of binary-quantized scans rescored from the table', s.rescored),
        ('quiver_search_errors_total', 'Index scans that ended in an error quiver raised', s.errors)
    ) c(metric, help, value)
    UNION ALL
    SELECT 'quiver_search_latency_seconds', 'histogram', 'Duration of hnsw index scans',
           jsonb_build_object('index', s.index::text, 'le', b.le),
           (SELECT sum(x) FROM unnest(s.latency_buckets[1:b.ord]) x)
    FROM s CROSS JOIN bounds b
    UNION ALL
    SELECT 'quiver_search_latency_seconds', 'histogram', 'Duration of hnsw index scans',
           jsonb_build_object('index', s.index::text, 'sample', 'sum'), s.latency_sum_seconds FROM s
    UNION ALL
    SELECT 'quiver_search_latency_seconds', 'histogram', 'Duration of hnsw index scans',
           jsonb_build_object('index', s.index::text, 'sample', 'count'), s.searches FROM s
    )
    SELECT metric, type, help, labels || jsonb_build_object('datname', pg_catalog.current_database()) AS labels, value
    FROM all_metrics;
COMMENT ON VIEW quiver.metrics IS
    'every quiver metric: name, Prometheus type, help, labels (datname on each) and value (histogram rows carry le, or sample = sum/count)';

