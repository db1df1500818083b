-- Observability (README, "Metrics"): search counters and latency from
-- shared memory (when quiver is in shared_preload_libraries), index and
-- collection facts from the catalogs, as a view and as Prometheus text.

CREATE FUNCTION quiver._metrics_json() RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_metrics_json' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION quiver._reset_metrics(oid) RETURNS void
    AS 'MODULE_PATHNAME', 'quiver_reset_metrics' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION quiver.library_version() RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_library_version' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION quiver.library_version() IS 'The version of the quiver library, whichever extension name installed it';

-- Size of a relation without waiting for its lock: the main fork's bytes,
-- or, while DDL holds the relation, the planner's page count of it.
CREATE FUNCTION quiver._relation_size_nowait(regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'quiver_relation_size_nowait' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION quiver._relation_size(rel regclass) RETURNS bigint
    LANGUAGE sql VOLATILE STRICT AS $$
    SELECT coalesce(nullif(quiver._relation_size_nowait(rel), -1),
                    (SELECT greatest(c.relpages, 0)::bigint * current_setting('block_size')::bigint
                     FROM pg_catalog.pg_class c WHERE c.oid = rel)) $$;

CREATE FUNCTION quiver.reset_metrics(index regclass DEFAULT NULL) RETURNS void
    LANGUAGE sql AS $$ SELECT quiver._reset_metrics(coalesce(index::oid, 0)) $$;
COMMENT ON FUNCTION quiver.reset_metrics(regclass) IS
    'zero the search counters of one hnsw index, or of every index of this database';
REVOKE ALL ON FUNCTION quiver.reset_metrics(regclass), quiver._reset_metrics(oid) FROM PUBLIC;

-- Per hnsw index of this database: searches, rows returned, distances
-- computed, candidates rescored from the table (binary quantization), errors, latency histogram (per-bucket counts, bounds in
-- bucket_bounds_us, the last bucket unbounded) and its quantiles.
CREATE VIEW quiver.search_stats AS
    WITH m AS (SELECT quiver._metrics_json()::jsonb AS j)
    SELECT (i ->> 'index')::oid::regclass AS index,
           (i ->> 'searches')::bigint AS searches,
           (i ->> 'rows')::bigint AS rows_returned,
           (i ->> 'distances')::bigint AS distances,
           (i ->> 'rescored')::bigint AS rescored,
           (i ->> 'errors')::bigint AS errors,
           (i ->> 'latency_sum_us')::float8 / 1e6 AS latency_sum_seconds,
           ARRAY(SELECT jsonb_array_elements_text(i -> 'buckets')::bigint) AS latency_buckets,
           ARRAY(SELECT jsonb_array_elements_text(m.j -> 'bucket_bounds_us')::bigint) AS bucket_bounds_us,
           (i ->> 'p50_us')::float8 / 1e6 AS p50_seconds,
           (i ->> 'p95_us')::float8 / 1e6 AS p95_seconds,
           (i ->> 'p99_us')::float8 / 1e6 AS p99_seconds
    FROM m, jsonb_array_elements(m.j -> 'indexes') i
    -- slots of dropped indexes stay until reset; show live ones only
    WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = (i ->> 'index')::oid);

-- Health of one hnsw index, from a full structural check. Rows deleted
-- from the table stay in the index until VACUUM: `unvacuumed_deletes` is the
-- table's dead tuple count from the statistics collector; `deleted` counts
-- elements VACUUM flagged but has not freed yet (normally 0).
CREATE FUNCTION quiver.index_health(index regclass)
    RETURNS TABLE (elements bigint, live bigint, deleted bigint, unvacuumed_deletes bigint, unreachable bigint,
                   entry_level integer, avg_out_degree float8, pages bigint, ok boolean)
    LANGUAGE sql STABLE STRICT AS $$
    SELECT (r ->> 'elements')::bigint, (r ->> 'live')::bigint, (r ->> 'deleted')::bigint,
           coalesce((SELECT sum(t.n_dead_tup) FROM pg_catalog.pg_stat_all_tables t
                     JOIN pg_catalog.pg_index x ON x.indrelid = t.relid WHERE x.indexrelid = index), 0)::bigint,
           (r ->> 'unreachable_live')::bigint, (r ->> 'entry_level')::integer,
           (r ->> 'avg_degree_level0')::float8, (r ->> 'pages')::bigint, (r ->> 'ok')::boolean
    FROM (SELECT quiver.index_check(index) AS r) s $$;
COMMENT ON FUNCTION quiver.index_health(regclass) IS
    'elements, deletes awaiting VACUUM, unreachable elements, entry point level and average level-0 out-degree of an hnsw index';

-- Storage of one hnsw index from its meta page (cheap): the quantization,
-- what each element stores for its vector (the vector itself, or a binary
-- code with its correction factors), the vectors it holds (deleted rows
-- count until VACUUM frees them) and the size per vector.
CREATE FUNCTION quiver._index_meta(regclass) RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_index_meta' LANGUAGE C STRICT;
CREATE FUNCTION quiver.index_stats(index regclass)
    RETURNS TABLE (quantization text, vector_type text, dimensions integer, metric text, m integer,
                   ef_construction integer, vector_bytes integer, vectors bigint, index_size bigint,
                   bytes_per_vector float8)
    LANGUAGE sql STABLE STRICT AS $$
    SELECT r ->> 'quantization', r ->> 'type', (r ->> 'dims')::integer, r ->> 'metric', (r ->> 'm')::integer,
           (r ->> 'ef_construction')::integer, (r ->> 'vector_bytes')::integer,
           (r ->> 'elements')::bigint, pg_catalog.pg_relation_size(index),
           CASE WHEN (r ->> 'elements')::bigint > 0
                THEN pg_catalog.pg_relation_size(index)::float8 / (r ->> 'elements')::bigint END
    FROM (SELECT quiver._index_meta(index)::jsonb AS r) s $$;
COMMENT ON FUNCTION quiver.index_stats(regclass) IS
    'quantization, bytes stored per vector, vectors and size of an hnsw index (from its meta page)';

-- Recall@k of an hnsw index against exact search, on `sample` rows of its
-- table used as queries (each row's own vector; the row itself counts).
CREATE FUNCTION quiver.recall_estimate(index regclass, sample integer DEFAULT 100, k integer DEFAULT 10)
    RETURNS float8
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    tbl regclass;
    col name;
    op text;
    q record;
    approx bigint[];
    exact bigint[];
    hits bigint := 0;
    total bigint := 0;
    saved_idx text := current_setting('enable_indexscan');
    saved_seq text := current_setting('enable_seqscan');
    saved_bmp text := current_setting('enable_bitmapscan');
BEGIN
    IF sample IS NULL OR sample < 1 OR k IS NULL OR k < 1 THEN
        RAISE EXCEPTION 'sample and k must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x.indrelid::regclass, a.attname, format('OPERATOR(%I.%s)', n.nspname, o.oprname)
        INTO tbl, col, op
    FROM pg_catalog.pg_index x
    JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'hnsw'
    JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
    JOIN pg_catalog.pg_opclass oc ON oc.oid = x.indclass[0]
    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 1 AND ao.amoppurpose = 'o'
    JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
    JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
    WHERE x.indexrelid = index;
    IF tbl IS NULL THEN
        RAISE EXCEPTION '"%" is not an hnsw index on a table column', index USING ERRCODE = 'wrong_object_type';
    END IF;
    FOR q IN EXECUTE format('SELECT %I AS v FROM %s WHERE %I IS NOT NULL ORDER BY random() LIMIT %s', col, tbl, col, sample) LOOP
        -- Row identity by ctid: works for any table, with or without a key.
        PERFORM set_config('enable_seqscan', 'off', true);
        PERFORM set_config('enable_indexscan', 'on', true);
        PERFORM set_config('enable_bitmapscan', 'off', true);
        EXECUTE format('SELECT array_agg(ctid_num) FROM (SELECT (ctid::text::point)[0]::bigint * 65536 + (ctid::text::point)[1]::bigint AS ctid_num FROM %s ORDER BY %I %s $1 LIMIT %s) s',
                       tbl, col, op, k) INTO approx USING q.v;
        PERFORM set_config('enable_seqscan', 'on', true);
        PERFORM set_config('enable_indexscan', 'off', true);
        EXECUTE format('SELECT array_agg(ctid_num) FROM (SELECT (ctid::text::point)[0]::bigint * 65536 + (ctid::text::point)[1]::bigint AS ctid_num FROM %s WHERE %I IS NOT NULL ORDER BY %I %s $1 LIMIT %s) s',
                       tbl, col, col, op, k) INTO exact USING q.v;
        hits := hits + (SELECT count(*) FROM unnest(approx) a WHERE a = ANY (exact));
        total := total + coalesce(cardinality(exact), 0);
    END LOOP;
    PERFORM set_config('enable_indexscan', saved_idx, true);
    PERFORM set_config('enable_seqscan', saved_seq, true);
    PERFORM set_config('enable_bitmapscan', saved_bmp, true);
    RETURN CASE WHEN total = 0 THEN NULL ELSE hits::float8 / total END;
END $$;
COMMENT ON FUNCTION quiver.recall_estimate(regclass, integer, integer) IS
    'recall@k of the index against exact search, with sampled rows of its table as queries';

-- Every metric as (metric, type, help, labels, value); the Prometheus
-- exposition below is this view rendered as text, and the postgres_exporter
-- queries in ops/ read it too, so both paths give the same names, types and
-- labels. Every series carries datname: one exporter discovering several
-- databases of a server must not produce one series twice.
CREATE VIEW quiver.metrics AS
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

-- A label set in Prometheus' text form, values escaped.
CREATE FUNCTION quiver._prometheus_labels(labels jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce('{' || string_agg(
               format('%s="%s"', key, replace(replace(replace(value, '\', '\\'), '"', '\"'), E'\n', '\n')),
               ',' ORDER BY key = 'le', key) || '}', '')
    FROM jsonb_each_text(labels) $$;

CREATE FUNCTION quiver.prometheus_metrics() RETURNS text
    LANGUAGE sql STABLE AS $$
    WITH rows AS (
        SELECT metric, type, help, labels - 'sample' AS labels, labels ->> 'sample' AS sample, value
        FROM quiver.metrics
    ),
    lines AS (
        SELECT metric, type, help,
               string_agg(
                   metric || CASE WHEN type <> 'histogram' THEN ''
                                  WHEN sample IS NOT NULL THEN '_' || sample ELSE '_bucket' END
                   || quiver._prometheus_labels(labels) || ' '
                   || CASE WHEN value IS NULL THEN 'NaN'
                           WHEN value = 'Infinity'::float8 THEN '+Inf' ELSE value::text END,
                   E'\n' ORDER BY labels ->> 'index', sample NULLS FIRST,
                                  CASE WHEN labels ->> 'le' = '+Inf' THEN 'Infinity'::float8
                                       ELSE (labels ->> 'le')::float8 END,
                                  labels::text) AS body
        FROM rows GROUP BY metric, type, help
    )
    SELECT string_agg(format(E'# HELP %s %s\n# TYPE %s %s\n%s', metric, help, metric, type, body), E'\n' ORDER BY metric) || E'\n'
    FROM lines $$;
COMMENT ON FUNCTION quiver.prometheus_metrics() IS
    'quiver.metrics in the Prometheus text exposition format (HELP and TYPE lines; histograms as _bucket, _sum, _count)';

GRANT SELECT ON quiver.search_stats, quiver.metrics TO PUBLIC;
