-- Snapshots: one self-describing file per collection (format in
-- core/src/snapshot.rs and the README), under quiver.snapshot_directory.
-- Creating, importing, restoring and deleting need superuser or
-- pg_write_server_files; listing, verifying and exporting need
-- pg_read_server_files (checked in C, whoever calls).

CREATE FUNCTION quiver._snapshot_write(relation text, name text, manifest text) RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_snapshot_write' LANGUAGE C STRICT;
CREATE FUNCTION quiver._snapshot_verify(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_snapshot_verify' LANGUAGE C STRICT;
CREATE FUNCTION quiver._snapshot_load(name text, relation regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'quiver_snapshot_load' LANGUAGE C STRICT;
CREATE FUNCTION quiver._snapshot_list() RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_snapshot_list' LANGUAGE C STRICT;
CREATE FUNCTION quiver._snapshot_path(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'quiver_snapshot_path' LANGUAGE C STRICT;
CREATE FUNCTION quiver._snapshot_chunk(name text, off bigint, len integer) RETURNS bytea
    AS 'MODULE_PATHNAME', 'quiver_snapshot_chunk' LANGUAGE C STRICT;

-- Writes every row of the collection as of one MVCC snapshot (the query's;
-- inside a REPEATABLE READ transaction, the transaction's): writers are
-- never paused, and rows they commit later are not in the file.
CREATE FUNCTION quiver.create_snapshot(collection text)
    RETURNS TABLE (name text, size bigint, created_at timestamptz, checksum text, rows bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    c quiver.collection_catalog := quiver._collection(collection);
    i record;
    at timestamptz := clock_timestamp();
    sname text;
    manifest jsonb;
    r jsonb;
BEGIN
    IF c.vector_column <> 'embedding' OR (
           SELECT array_agg(a.attname::text || ':' || a.atttypid ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = c.relation AND a.attnum > 0 AND NOT a.attisdropped)
       IS DISTINCT FROM ARRAY['id:' || 'bigint'::regtype::oid, 'embedding:' || '@extschema@.vector'::regtype::oid,
                              'payload:' || 'jsonb'::regtype::oid]::text[] THEN
        RAISE EXCEPTION 'collection "%" is not of the shape snapshots store', c.name
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Snapshots store collections made by quiver.create_collection: (id bigint, embedding vector, payload jsonb).';
    END IF;
    SELECT * INTO i FROM quiver.collection_info(c.name);
    sname := regexp_replace(left(c.name, 60), '[^A-Za-z0-9_-]', '_', 'g');
    IF sname !~ '^[A-Za-z0-9]' THEN
        sname := 's' || sname;
    END IF;
    sname := sname || '-' || to_char(at AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"."US"Z"');
    manifest := jsonb_build_object(
        'format', 1,
        'quiver', quiver.library_version(),
        'server_version_num', current_setting('server_version_num')::integer,
        'created_at', at,
        'collection', jsonb_build_object(
            'name', c.name, 'dim', i.vector_size, 'distance', c.distance, 'quantization', c.quantization,
            'shards', i.shards, 'm', i.m, 'ef_construction', i.ef_construction));
    r := quiver._snapshot_write(c.relation::text, sname, manifest::text)::jsonb;
    RETURN QUERY SELECT sname, (r ->> 'size')::bigint, at, r ->> 'checksum', (r ->> 'rows')::bigint;
END $$;
COMMENT ON FUNCTION quiver.create_snapshot(text) IS
    'write a snapshot file of a collection (its definition and rows as of one MVCC snapshot)';

-- A manifest's creation time, or NULL when a file's manifest holds none
-- that reads as one: one odd file must not break the listing for everyone.
CREATE FUNCTION quiver._manifest_time(t text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN t::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END $$;

CREATE FUNCTION quiver.list_snapshots(collection text DEFAULT NULL)
    RETURNS TABLE (name text, collection text, size bigint, rows bigint, created_at timestamptz, checksum text)
    LANGUAGE sql AS $$
    SELECT s ->> 'name', s -> 'manifest' -> 'collection' ->> 'name', (s ->> 'size')::bigint, (s ->> 'rows')::bigint,
           quiver._manifest_time(s -> 'manifest' ->> 'created_at'), s ->> 'checksum'
    FROM jsonb_array_elements(quiver._snapshot_list()::jsonb) s
    WHERE collection IS NULL OR s -> 'manifest' -> 'collection' ->> 'name' = collection
    ORDER BY 5, 1 $$;
COMMENT ON FUNCTION quiver.list_snapshots(text) IS
    'snapshot files in quiver.snapshot_directory (of one collection, or all)';

CREATE FUNCTION quiver.delete_snapshot(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'quiver_snapshot_delete' LANGUAGE C STRICT;
COMMENT ON FUNCTION quiver.delete_snapshot(text) IS 'remove a snapshot file';

CREATE FUNCTION quiver.verify_snapshot(name text)
    RETURNS TABLE (name text, collection text, rows bigint, size bigint, checksum text, manifest jsonb)
    LANGUAGE sql AS $$
    SELECT r ->> 'name', r -> 'manifest' -> 'collection' ->> 'name', (r ->> 'rows')::bigint, (r ->> 'size')::bigint,
           r ->> 'checksum', r -> 'manifest'
    FROM (SELECT quiver._snapshot_verify(name)::jsonb AS r) v $$;
COMMENT ON FUNCTION quiver.verify_snapshot(text) IS
    'read a snapshot through and check its format version and every checksum';

-- Verifies the whole file first, then creates the collection, loads the rows
-- and builds the index, all in the caller's transaction: any failure leaves
-- no table, index or catalog row behind.
CREATE FUNCTION quiver.restore_snapshot(name text, new_collection text) RETURNS regclass
    LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := quiver._snapshot_verify(name)::jsonb;
    d jsonb := v -> 'manifest' -> 'collection';
    rel regclass;
    ix regclass;
    pk name;
    dim integer;
    shards integer;
    m integer;
    efc integer;
BEGIN
    BEGIN
        IF (v -> 'manifest' ->> 'format')::integer IS DISTINCT FROM 1 OR jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'data_exception';
        END IF;
        dim := (d ->> 'dim')::integer;
        shards := (d ->> 'shards')::integer;
        m := coalesce((d ->> 'm')::integer, 16);
        efc := coalesce((d ->> 'ef_construction')::integer, 64);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'snapshot "%" has a manifest this quiver cannot read', name USING ERRCODE = 'data_corrupted';
    END;
    rel := quiver.create_collection(new_collection, dim, d ->> 'distance', d ->> 'quantization', shards, m, efc);
    -- load without the index, then build it once from the snapshot's graph
    -- (or, without one, by linking: far faster than inserting into it)
    FOR ix IN SELECT x.indexrelid::regclass FROM pg_catalog.pg_index x
              JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'hnsw'
              WHERE x.indrelid = rel LOOP
        EXECUTE format('DROP INDEX %s', ix);
    END LOOP;
    -- the primary key too: one sorted build after the load is cheaper than
    -- 100k btree insertions during it (id stays NOT NULL meanwhile)
    SELECT c.conname INTO pk FROM pg_catalog.pg_constraint c WHERE c.conrelid = rel AND c.contype = 'p';
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', rel, pk);
    PERFORM quiver._snapshot_load(name, rel);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (id)', rel, pk);
    PERFORM quiver._create_collection_index(rel, d ->> 'distance', m, efc, d ->> 'quantization');
    EXECUTE format('ANALYZE %s', rel);
    RETURN rel;
END $$;
COMMENT ON FUNCTION quiver.restore_snapshot(text, text) IS
    'verify a snapshot, then recreate its collection under a new name with its rows and its index (from the stored graph)';

-- Streaming through SQL, for clients without access to server files:
--   psql -Atc "SELECT encode(chunk, 'base64') FROM quiver.export_snapshot('n')" | base64 -d > n.qsnap
-- and back with import_snapshot(name, bytes) (append => true for further chunks).
-- The default chunk size is a multiple of 3 bytes, so the chunks' base64
-- texts concatenate into the base64 of the whole file.
CREATE FUNCTION quiver.export_snapshot(name text, chunk_size integer DEFAULT 786432)
    RETURNS TABLE (off bigint, chunk bytea)
    LANGUAGE plpgsql AS $$
DECLARE
    pos bigint := 0;
    part bytea;
BEGIN
    IF chunk_size IS NULL OR chunk_size < 1 OR chunk_size > 67108864 THEN
        RAISE EXCEPTION 'chunk_size must be between 1 and 67108864' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        part := quiver._snapshot_chunk(name, pos, chunk_size);
        EXIT WHEN length(part) = 0;
        off := pos;
        chunk := part;
        RETURN NEXT;
        pos := pos + length(part);
    END LOOP;
END $$;
COMMENT ON FUNCTION quiver.export_snapshot(text, integer) IS 'a snapshot file as ordered chunks of bytes';

CREATE FUNCTION quiver.import_snapshot(name text, data bytea, append boolean DEFAULT false) RETURNS bigint
    AS 'MODULE_PATHNAME', 'quiver_snapshot_import' LANGUAGE C STRICT;
COMMENT ON FUNCTION quiver.import_snapshot(text, bytea, boolean) IS
    'write (or with append, extend) a snapshot file from bytes a client sends; returns its size';
