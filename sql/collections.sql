-- Collections and aliases (README, "Collections and aliases").
--
-- A collection is an ordinary table with an hnsw index, recorded in
-- quiver.collection_catalog; an alias is an ordinary view over a collection's
-- table, recorded in quiver.alias_catalog. Both catalogs are extension
-- configuration tables, so pg_dump writes their rows and pg_restore brings
-- them back next to the tables and views they name.
--
-- Everything runs with the caller's rights (tables and views belong to whoever
-- creates them); row-level security lets a role change only the catalog rows
-- of relations it owns. Every name reaches SQL through format('%I') or a
-- regclass, never by concatenation.

CREATE TABLE quiver.collection_catalog (
    name text PRIMARY KEY,
    relation regclass NOT NULL UNIQUE,
    vector_column name NOT NULL,
    -- cosine | l2 | ip | l1 | hamming; NULL when adopted without an hnsw index
    distance text,
    quantization text NOT NULL DEFAULT 'none',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE quiver.alias_catalog (
    alias_name text PRIMARY KEY,
    view regclass NOT NULL UNIQUE,
    collection text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('quiver.collection_catalog', '');
SELECT pg_catalog.pg_extension_config_dump('quiver.alias_catalog', '');

-- Whether the current role may act as the owner of a relation.
CREATE FUNCTION quiver._owns(rel regclass) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce((SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
                            FROM pg_catalog.pg_class c WHERE c.oid = rel), false) $$;

ALTER TABLE quiver.collection_catalog ENABLE ROW LEVEL SECURITY;
ALTER TABLE quiver.alias_catalog ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone_reads ON quiver.collection_catalog FOR SELECT USING (true);
CREATE POLICY owners_write ON quiver.collection_catalog FOR ALL
    USING (quiver._owns(relation)) WITH CHECK (quiver._owns(relation));
CREATE POLICY everyone_reads ON quiver.alias_catalog FOR SELECT USING (true);
-- An alias row names a view and a collection: writing it takes owning both,
-- so no role can plant an alias on another role's collection (which would
-- block that role's drop_collection).
CREATE FUNCTION quiver._owns_collection(collection text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce((SELECT quiver._owns(c.relation) FROM quiver.collection_catalog c
                            WHERE c.name = collection), false) $$;
CREATE POLICY owners_write ON quiver.alias_catalog FOR ALL
    USING (quiver._owns(view)) WITH CHECK (quiver._owns(view) AND quiver._owns_collection(collection));
GRANT USAGE ON SCHEMA quiver TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver.collection_catalog, quiver.alias_catalog TO PUBLIC;

-- A collection or alias name: an identifier Postgres keeps as given (no
-- silent truncation at 63 bytes, which could make two names collide).
CREATE FUNCTION quiver._check_name(name text, what text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION '% name must not be empty', what USING ERRCODE = 'invalid_name';
    END IF;
    IF octet_length(name) > 63 THEN
        RAISE EXCEPTION '% name "%" is longer than 63 bytes', what, name USING ERRCODE = 'name_too_long';
    END IF;
    RETURN name;
END $$;

-- The catalog row of a collection, or a clear error.
CREATE FUNCTION quiver._collection(collection text) RETURNS quiver.collection_catalog
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    c quiver.collection_catalog;
BEGIN
    SELECT * INTO c FROM quiver.collection_catalog k WHERE k.name = collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection "%" does not exist', collection USING ERRCODE = 'undefined_object';
    END IF;
    RETURN c;
END $$;

CREATE FUNCTION quiver._require_owner(rel regclass, what text, name text) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT quiver._owns(rel) THEN
        RAISE EXCEPTION 'must be owner of % "%"', what, name USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- pgvector's and Qdrant's spellings of a distance, to quiver's.
CREATE FUNCTION quiver._distance(distance text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE lower(distance)
        WHEN 'cosine' THEN RETURN 'cosine';
        WHEN 'l2', 'euclid', 'euclidean' THEN RETURN 'l2';
        WHEN 'ip', 'dot', 'inner_product' THEN RETURN 'ip';
        WHEN 'l1', 'manhattan' THEN RETURN 'l1';
        ELSE RAISE EXCEPTION 'unknown distance "%"', distance USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use cosine, l2 (euclid), ip (dot) or l1 (manhattan).';
    END CASE;
END $$;

-- Columns (name, type, typmod) of a relation, in order: two relations with
-- equal lists can stand behind the same view definition.
CREATE FUNCTION quiver._columns(rel regclass) RETURNS text[]
    LANGUAGE sql STABLE AS $$
    SELECT array_agg(format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped $$;

-- The hnsw indexes on a collection's vector column, one row per leaf table
-- (the table itself, or each partition of a sharded collection).
CREATE FUNCTION quiver._leaf_indexes(rel regclass, col name)
    RETURNS TABLE (leaf regclass, index regclass, valid boolean, opclass name, reloptions text[])
    LANGUAGE sql STABLE AS $$
    WITH leaves AS (
        SELECT t.relid AS leaf FROM pg_catalog.pg_partition_tree(rel) t
        WHERE t.isleaf AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) = 'p'
        UNION ALL
        SELECT rel::oid WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) <> 'p'
    )
    SELECT l.leaf::regclass, i.index, coalesce(i.valid, false), i.opclass, i.reloptions
    FROM leaves l
    LEFT JOIN LATERAL (
        SELECT x.indexrelid::regclass AS index, x.indisvalid AS valid, o.opcname AS opclass, ic.reloptions
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
        JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'hnsw'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = l.leaf AND a.attname = col AND a.attnum = x.indkey[0]
        JOIN pg_catalog.pg_opclass o ON o.oid = x.indclass[0]
        WHERE x.indrelid = l.leaf
        ORDER BY x.indisvalid DESC, x.indexrelid
        LIMIT 1
    ) i ON true $$;

-- The hnsw index of a collection made by create_collection (also rebuilt
-- by restore_snapshot after loading rows without it).
CREATE FUNCTION quiver._create_collection_index(rel regclass, dist text, m integer, ef_construction integer,
                                                quantization text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE INDEX ON %s USING hnsw (embedding @extschema@.%I) WITH (m = %s, ef_construction = %s, quantization = %L)',
                   rel, 'vector_' || dist || '_ops', m, ef_construction, quantization);
END $$;

-- The table name of shard i: the collection's name and "_shard<i>"; a name
-- too long for that keeps 40 bytes and a hash of the whole name, so two
-- collections that share their first characters never collide.
CREATE FUNCTION quiver._shard_name(collection text, i integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN octet_length(collection || '_shard' || i) <= 63 THEN collection || '_shard' || i
                ELSE convert_from(substring(convert_to(collection, 'UTF8') FROM 1 FOR 40), 'UTF8')
                     || '_' || left(md5(collection), 8) || '_shard' || i END $$;

CREATE FUNCTION quiver.create_collection(
    name text,
    dim integer,
    distance text DEFAULT 'cosine',
    quantization text DEFAULT 'none',
    shards integer DEFAULT 1,
    m integer DEFAULT 16,
    ef_construction integer DEFAULT 64
) RETURNS regclass
    LANGUAGE plpgsql AS $$
DECLARE
    target text := current_schema();
    dist text := quiver._distance(distance);
    rel regclass;
BEGIN
    PERFORM quiver._check_name(create_collection.name, 'collection');
    IF target IS NULL THEN
        RAISE EXCEPTION 'no schema has been selected to create in' USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF dim IS NULL OR dim < 1 OR dim > 16000 THEN
        RAISE EXCEPTION 'dimensions must be between 1 and 16000, not %', dim USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF shards IS NULL OR shards < 1 OR shards > 1024 THEN
        RAISE EXCEPTION 'shards must be between 1 and 1024, not %', shards USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantization IS NULL OR quantization NOT IN ('none', 'binary') THEN
        RAISE EXCEPTION 'quantization must be none or binary, not "%"', quantization
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM quiver.collection_catalog k WHERE k.name = create_collection.name) THEN
        RAISE EXCEPTION 'collection "%" already exists', create_collection.name USING ERRCODE = 'duplicate_object';
    END IF;
    IF to_regclass(format('%I.%I', target, create_collection.name)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%" already exists', create_collection.name USING ERRCODE = 'duplicate_table';
    END IF;

    EXECUTE format('CREATE TABLE %I.%I (id bigint PRIMARY KEY, embedding @extschema@.vector(%s), payload jsonb)%s',
                   target, create_collection.name, dim,
                   CASE WHEN shards > 1 THEN ' PARTITION BY HASH (id)' ELSE '' END);
    rel := format('%I.%I', target, create_collection.name)::regclass;
    FOR i IN 0 .. shards - 1 LOOP
        EXIT WHEN shards = 1;
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                       target, quiver._shard_name(create_collection.name, i), rel, shards, i);
    END LOOP;
    PERFORM quiver._create_collection_index(rel, dist, m, ef_construction, quantization);
    INSERT INTO quiver.collection_catalog (name, relation, vector_column, distance, quantization)
        VALUES (create_collection.name, rel, 'embedding', dist, quantization);
    RETURN rel;
END $$;
COMMENT ON FUNCTION quiver.create_collection(text, integer, text, text, integer, integer, integer) IS
    'create a table (id bigint primary key, embedding vector(dim), payload jsonb) with its hnsw index; shards > 1 hash-partitions it by id';

CREATE FUNCTION quiver.register_collection(tbl regclass, column_name name, name text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    cname text := coalesce(register_collection.name,
                           (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = tbl));
    kind text;
    opc name;
    opts text[];
BEGIN
    PERFORM quiver._check_name(cname, 'collection');
    PERFORM quiver._require_owner(tbl, 'table', tbl::text);
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT t.typname INTO kind
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = tbl AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of "%" does not exist', column_name, tbl USING ERRCODE = 'undefined_column';
    END IF;
    IF kind NOT IN ('vector', 'halfvec', 'bit') THEN
        RAISE EXCEPTION 'column "%" of "%" is of type %, not vector, halfvec or bit', column_name, tbl, kind
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF EXISTS (SELECT 1 FROM quiver.collection_catalog k WHERE k.name = cname) THEN
        RAISE EXCEPTION 'collection "%" already exists', cname USING ERRCODE = 'duplicate_object';
    END IF;
    IF EXISTS (SELECT 1 FROM quiver.collection_catalog k WHERE k.relation = tbl) THEN
        RAISE EXCEPTION 'table "%" is already a collection', tbl USING ERRCODE = 'duplicate_object';
    END IF;
    SELECT i.opclass, i.reloptions INTO opc, opts
    FROM quiver._leaf_indexes(tbl, column_name) i WHERE i.opclass IS NOT NULL LIMIT 1;
    INSERT INTO quiver.collection_catalog (name, relation, vector_column, distance, quantization)
        VALUES (cname, tbl, column_name,
                CASE WHEN opc IS NULL THEN NULL
                     WHEN opc LIKE '%\_hamming\_ops' THEN 'hamming'
                     ELSE substring(opc FROM '^(?:vector|halfvec)_(l2|ip|cosine|l1)_ops$') END,
                CASE WHEN 'quantization=binary' = ANY (opts) THEN 'binary' ELSE 'none' END);
    RETURN cname;
END $$;
COMMENT ON FUNCTION quiver.register_collection(regclass, name, text) IS
    'adopt an existing table with a vector column as a collection (named after the table unless told)';

CREATE FUNCTION quiver.drop_collection(name text, cascade boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    c quiver.collection_catalog := quiver._collection(drop_collection.name);
    users text[];
    a record;
BEGIN
    PERFORM quiver._require_owner(c.relation, 'collection', c.name);
    SELECT array_agg(k.alias_name ORDER BY k.alias_name) INTO users
    FROM quiver.alias_catalog k WHERE k.collection = c.name;
    IF users IS NOT NULL AND NOT cascade THEN
        RAISE EXCEPTION 'collection "%" is used by alias %', c.name, array_to_string(users, ', ')
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Switch or delete the aliases first, or call drop_collection(name, cascade => true).';
    END IF;
    FOR a IN SELECT k.alias_name FROM quiver.alias_catalog k WHERE k.collection = c.name LOOP
        PERFORM quiver.delete_alias(a.alias_name);
    END LOOP;
    EXECUTE format('DROP TABLE %s', c.relation);
    DELETE FROM quiver.collection_catalog k WHERE k.name = c.name;
END $$;

-- Points alias view `v` (or a new view named `alias` in the current schema
-- when v is NULL) at collection `c`; returns the view.
CREATE FUNCTION quiver._point_alias(alias text, v regclass, c quiver.collection_catalog) RETURNS regclass
    LANGUAGE plpgsql AS $$
DECLARE
    target text;
    owner_role name;
    acl aclitem[];
    g record;
BEGIN
    IF v IS NULL THEN
        target := current_schema();
        IF target IS NULL THEN
            RAISE EXCEPTION 'no schema has been selected to create in' USING ERRCODE = 'invalid_schema_name';
        END IF;
    ELSE
        SELECT n.nspname, pg_catalog.pg_get_userbyid(r.relowner), r.relacl INTO target, owner_role, acl
        FROM pg_catalog.pg_class r JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = v;
        IF quiver._columns(v) = quiver._columns(c.relation) THEN
            -- Same columns: replace the definition in place (keeps the view's
            -- identity, grants and dependent objects).
            EXECUTE format('CREATE OR REPLACE VIEW %s AS SELECT * FROM %s', v, c.relation);
            RETURN v;
        END IF;
        -- Other columns (say, another dimension): a new view under the same
        -- name in the same transaction; readers wait on the lock and then
        -- see the new one. Owner and grants carry over.
        EXECUTE format('DROP VIEW %s', v);
    END IF;
    EXECUTE format('CREATE VIEW %I.%I AS SELECT * FROM %s', target, alias, c.relation);
    v := format('%I.%I', target, alias)::regclass;
    IF owner_role IS NOT NULL AND owner_role <> current_user THEN
        EXECUTE format('ALTER VIEW %s OWNER TO %I', v, owner_role);
    END IF;
    FOR g IN SELECT e.grantee, e.privilege_type, e.is_grantable FROM pg_catalog.aclexplode(acl) e
             WHERE e.grantee <> (SELECT r.relowner FROM pg_catalog.pg_class r WHERE r.oid = v) LOOP
        EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, v,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    RETURN v;
END $$;

-- The catalog row of an alias the caller owns, locked so that concurrent
-- changes of one alias take turns; a clear error otherwise. (Existence is
-- checked before the lock: row-level security hides other roles' rows from
-- FOR UPDATE, which would turn "not yours" into "does not exist".)
CREATE FUNCTION quiver._alias_for_update(alias text) RETURNS quiver.alias_catalog
    LANGUAGE plpgsql AS $$
DECLARE
    a quiver.alias_catalog;
BEGIN
    SELECT * INTO a FROM quiver.alias_catalog k WHERE k.alias_name = alias;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alias "%" does not exist', alias USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM quiver._require_owner(a.view, 'alias', alias);
    SELECT * INTO a FROM quiver.alias_catalog k WHERE k.alias_name = alias FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alias "%" was deleted concurrently', alias USING ERRCODE = 'undefined_object';
    END IF;
    RETURN a;
END $$;

CREATE FUNCTION quiver.create_alias(alias text, collection text) RETURNS regclass
    LANGUAGE plpgsql AS $$
DECLARE
    c quiver.collection_catalog;
    v regclass;
BEGIN
    PERFORM quiver._check_name(alias, 'alias');
    c := quiver._collection(collection);
    PERFORM quiver._require_owner(c.relation, 'collection', c.name);
    IF EXISTS (SELECT 1 FROM quiver.alias_catalog k WHERE k.alias_name = alias) THEN
        RAISE EXCEPTION 'alias "%" already exists', alias USING ERRCODE = 'duplicate_object',
            HINT = 'Use quiver.switch_alias to point it at another collection.';
    END IF;
    IF to_regclass(format('%I.%I', current_schema(), alias)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%" already exists and is not an alias', alias USING ERRCODE = 'duplicate_table';
    END IF;
    v := quiver._point_alias(alias, NULL, c);
    INSERT INTO quiver.alias_catalog (alias_name, view, collection) VALUES (alias, v, c.name);
    RETURN v;
END $$;
COMMENT ON FUNCTION quiver.create_alias(text, text) IS
    'create a view named alias over the collection''s table; queries, inserts, updates and deletes through it reach the collection';

CREATE FUNCTION quiver.switch_alias(alias text, collection text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    a quiver.alias_catalog;
    c quiver.collection_catalog;
    v regclass;
BEGIN
    a := quiver._alias_for_update(alias);
    c := quiver._collection(collection);
    PERFORM quiver._require_owner(c.relation, 'collection', c.name);
    IF a.collection = c.name THEN
        RAISE NOTICE 'alias "%" already points at collection "%"', alias, c.name;
        RETURN;
    END IF;
    v := quiver._point_alias(alias, a.view, c);
    -- Upsert: when the view was recreated, the drop trigger took the old row.
    INSERT INTO quiver.alias_catalog AS k (alias_name, view, collection) VALUES (alias, v, c.name)
        ON CONFLICT (alias_name) DO UPDATE SET view = v, collection = c.name, updated_at = now();
END $$;
COMMENT ON FUNCTION quiver.switch_alias(text, text) IS
    'point an alias at another collection in one transaction (readers see the old or the new collection)';

CREATE FUNCTION quiver.delete_alias(alias text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    a quiver.alias_catalog;
BEGIN
    a := quiver._alias_for_update(alias);
    EXECUTE format('DROP VIEW %s', a.view);
    DELETE FROM quiver.alias_catalog k WHERE k.alias_name = alias;
END $$;

CREATE FUNCTION quiver._rename_alias(old_name text, new_name text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    a quiver.alias_catalog;
BEGIN
    PERFORM quiver._check_name(new_name, 'alias');
    a := quiver._alias_for_update(old_name);
    IF EXISTS (SELECT 1 FROM quiver.alias_catalog k WHERE k.alias_name = new_name) THEN
        RAISE EXCEPTION 'alias "%" already exists', new_name USING ERRCODE = 'duplicate_object';
    END IF;
    EXECUTE format('ALTER VIEW %s RENAME TO %I', a.view, new_name);
    UPDATE quiver.alias_catalog k SET alias_name = new_name, updated_at = now() WHERE k.alias_name = old_name;
END $$;

-- One text field of an update_aliases action, or a clear error.
CREATE FUNCTION quiver._action_field(body jsonb, field text, n integer, action text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(body -> field) IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'update_aliases action %: % needs "%" (a string)', n, action, field
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN body ->> field;
END $$;

CREATE FUNCTION quiver.update_aliases(actions jsonb) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    list jsonb := CASE WHEN jsonb_typeof(actions) = 'object' AND actions ? 'actions' THEN actions -> 'actions'
                       ELSE actions END;
    item jsonb;
    n integer := 0;
    verb text;
    body jsonb;
    alias text;
    current_collection text;
BEGIN
    IF jsonb_typeof(list) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'update_aliases expects a JSON array of actions (or {"actions": [...]})'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One statement, so one transaction: any failing action undoes them all.
    FOR item IN SELECT e FROM jsonb_array_elements(list) e LOOP
        n := n + 1;
        IF jsonb_typeof(item) IS DISTINCT FROM 'object' OR (SELECT count(*) FROM jsonb_object_keys(item)) <> 1 THEN
            RAISE EXCEPTION 'update_aliases action %: expected an object with one key, got %', n, item
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        verb := (SELECT k FROM jsonb_object_keys(item) k);
        body := item -> verb;
        IF jsonb_typeof(body) IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'update_aliases action %: % expects an object', n, verb USING ERRCODE = 'invalid_parameter_value';
        END IF;
        CASE verb
            WHEN 'create_alias' THEN
                PERFORM quiver.create_alias(quiver._action_field(body, 'alias_name', n, verb),
                                            quiver._action_field(body, 'collection_name', n, verb));
            WHEN 'delete_alias' THEN
                PERFORM quiver.delete_alias(quiver._action_field(body, 'alias_name', n, verb));
            WHEN 'rename_alias' THEN
                IF body ? 'old_alias_name' THEN
                    -- Qdrant's rename: the alias gets a new name.
                    PERFORM quiver._rename_alias(quiver._action_field(body, 'old_alias_name', n, verb),
                                                 quiver._action_field(body, 'new_alias_name', n, verb));
                ELSE
                    -- The switch: alias_name moves from old_collection_name to new_collection_name.
                    alias := quiver._action_field(body, 'alias_name', n, verb);
                    SELECT k.collection INTO current_collection FROM quiver.alias_catalog k WHERE k.alias_name = alias;
                    IF current_collection IS DISTINCT FROM quiver._action_field(body, 'old_collection_name', n, verb) THEN
                        RAISE EXCEPTION 'update_aliases action %: alias "%" points at %, not at collection "%"', n, alias,
                            coalesce('collection "' || current_collection || '"', 'nothing'), body ->> 'old_collection_name'
                            USING ERRCODE = 'object_not_in_prerequisite_state';
                    END IF;
                    PERFORM quiver.switch_alias(alias, quiver._action_field(body, 'new_collection_name', n, verb));
                END IF;
            ELSE
                RAISE EXCEPTION 'update_aliases action %: unknown action "%"', n, verb
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Actions are create_alias, delete_alias and rename_alias.';
        END CASE;
    END LOOP;
END $$;
COMMENT ON FUNCTION quiver.update_aliases(jsonb) IS
    'apply Qdrant-style alias actions (create_alias, delete_alias, rename_alias) all or nothing';

-- What Qdrant's collection info reports, from the catalogs and statistics.
CREATE FUNCTION quiver.collection_info(collection text, exact boolean DEFAULT true)
    RETURNS TABLE (
        name text,
        "table" regclass,
        vector_column name,
        vector_size integer,
        distance text,
        quantization text,
        shards integer,
        m integer,
        ef_construction integer,
        points_count bigint,
        indexed_vectors_count bigint,
        index_size bigint,
        dead_tuples bigint,
        aliases text[],
        status text
    )
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    c quiver.collection_catalog := quiver._collection(collection);
    leaves oid[];
    indexes regclass[];
    opts text[];
    all_valid boolean;
    building boolean;
    live bigint;
    dead bigint;
    points bigint;
    vectors bigint;
BEGIN
    SELECT array_agg(i.leaf::oid), array_agg(i.index) FILTER (WHERE i.index IS NOT NULL), bool_and(i.valid)
        INTO leaves, indexes, all_valid
    FROM quiver._leaf_indexes(c.relation, c.vector_column) i;
    SELECT i.reloptions INTO opts
    FROM quiver._leaf_indexes(c.relation, c.vector_column) i WHERE i.index IS NOT NULL LIMIT 1;
    building := EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p
                        WHERE p.relid = c.relation OR p.relid = ANY (leaves));
    SELECT sum(s.n_live_tup), sum(s.n_dead_tup) INTO live, dead
    FROM pg_catalog.pg_stat_all_tables s WHERE s.relid = ANY (leaves);
    IF NOT exact THEN
        -- from the statistics: no scan, no lock (monitoring scrapes)
        points := live;
        vectors := live;
    ELSIF pg_catalog.has_table_privilege(c.relation, 'SELECT')
          AND pg_catalog.has_schema_privilege((SELECT r.relnamespace FROM pg_catalog.pg_class r WHERE r.oid = c.relation), 'USAGE') THEN
        EXECUTE format('SELECT count(*), count(%I) FROM %s', c.vector_column, c.relation) INTO points, vectors;
    END IF;
    RETURN QUERY SELECT
        c.name,
        c.relation,
        c.vector_column,
        (SELECT CASE WHEN a.atttypmod > 0 THEN a.atttypmod END FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.relation AND a.attname = c.vector_column),
        c.distance,
        c.quantization,
        cardinality(leaves),
        -- an index without reloptions has pgvector's defaults
        CASE WHEN indexes IS NOT NULL THEN
            coalesce((SELECT split_part(o, '=', 2)::integer FROM unnest(opts) o WHERE o LIKE 'm=%'), 16) END,
        CASE WHEN indexes IS NOT NULL THEN
            coalesce((SELECT split_part(o, '=', 2)::integer FROM unnest(opts) o WHERE o LIKE 'ef\_construction=%'), 64) END,
        points,
        CASE WHEN all_valid THEN vectors ELSE 0 END,
        coalesce((SELECT sum(quiver._relation_size(x))::bigint FROM unnest(indexes) x), 0),
        coalesce(dead, 0),
        coalesce((SELECT array_agg(k.alias_name ORDER BY k.alias_name) FROM quiver.alias_catalog k
                  WHERE k.collection = c.name), '{}'),
        CASE WHEN building THEN 'yellow'
             WHEN NOT coalesce(all_valid, false) THEN 'red'
             -- autovacuum's default trigger: 50 rows plus 20% of the table
             WHEN coalesce(dead, 0) > 50 + 0.2 * coalesce(live, 0) THEN 'grey'
             ELSE 'green' END;
END $$;
COMMENT ON FUNCTION quiver.collection_info(text, boolean) IS
    'size, counts (exact, or with exact => false from the statistics), index and status (green, yellow: index being built, red: index missing or invalid, grey: vacuum advised) of a collection';

CREATE VIEW quiver.collections AS
    SELECT i.* FROM quiver.collection_catalog c CROSS JOIN LATERAL quiver.collection_info(c.name) i;

CREATE VIEW quiver.aliases AS
    SELECT a.alias_name, a.view, a.collection AS collection_name, c.relation AS "table", a.updated_at
    FROM quiver.alias_catalog a LEFT JOIN quiver.collection_catalog c ON c.name = a.collection;
GRANT SELECT ON quiver.collections, quiver.aliases TO PUBLIC;

-- Drops done by plain SQL (DROP TABLE, DROP VIEW, DROP SCHEMA, DROP OWNED)
-- take their catalog rows along, so the catalogs never name a missing relation.
CREATE FUNCTION quiver._forget_dropped() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM quiver.alias_catalog a USING pg_catalog.pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = a.view::oid;
    DELETE FROM quiver.collection_catalog c USING pg_catalog.pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.relation::oid;
END $$;
CREATE EVENT TRIGGER quiver_forget_dropped ON sql_drop EXECUTE FUNCTION quiver._forget_dropped();
