-- The hnsw access method: pgvector's DDL and queries, unchanged.
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3), h halfvec(3), b bit(3));
INSERT INTO items SELECT i, ARRAY[i % 7, i % 11, i % 13]::real[], ARRAY[i % 7, i % 11, i % 13]::real[],
    (CASE WHEN i % 2 = 0 THEN B'101' ELSE B'011' END) FROM generate_series(1, 300) i;
CREATE INDEX items_l2 ON items USING hnsw (embedding vector_l2_ops);
CREATE INDEX items_ip ON items USING hnsw (embedding vector_ip_ops) WITH (m = 8, ef_construction = 32);
CREATE INDEX items_cos ON items USING hnsw (embedding vector_cosine_ops);
CREATE INDEX items_l1 ON items USING hnsw (embedding vector_l1_ops);
CREATE INDEX items_h ON items USING hnsw (h halfvec_l2_ops);
CREATE INDEX items_b ON items USING hnsw (b bit_hamming_ops);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
SELECT id, embedding, embedding <-> '[3,1,2]' AS d FROM items ORDER BY embedding <-> '[3,1,2]', id LIMIT 5;
SELECT embedding <#> '[1,1,1]' AS d FROM items ORDER BY embedding <#> '[1,1,1]' LIMIT 3;
SELECT round((embedding <=> '[1,2,3]')::numeric, 6) AS d FROM items ORDER BY embedding <=> '[1,2,3]' LIMIT 3;
SELECT embedding <+> '[0,0,0]' AS d FROM items ORDER BY embedding <+> '[0,0,0]' LIMIT 3;
SELECT h <-> '[6,10,12]' AS d FROM items ORDER BY h <-> '[6,10,12]' LIMIT 3;
SELECT count(*) FROM (SELECT id FROM items ORDER BY b <~> B'101' LIMIT 20) t;
-- health of the graph
SELECT (r->>'elements')::int AS elements, (r->>'unreachable_live')::int AS unreachable, r->>'metric' AS metric
FROM (SELECT quiver.index_check('items_l2') AS r) s;
-- changes after the build
INSERT INTO items VALUES (1000, '[3,1,2]', '[3,1,2]', B'111');
SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 1;
DELETE FROM items WHERE id = 1000;
VACUUM items;
SELECT id FROM items ORDER BY embedding <-> '[3.1,1,2]' LIMIT 1;
-- VACUUM frees the deleted element: none left flagged, one fewer element
SELECT (r->>'deleted')::int AS deleted, (r->>'elements')::int AS elements FROM (SELECT quiver.index_check('items_l2') AS r) s;
-- binary quantization: codes in the index, rows rescored to exact order from the table
CREATE TABLE q (id int PRIMARY KEY, v vector(8));
INSERT INTO q SELECT i, ARRAY(SELECT sin(i * j) FROM generate_series(1, 8) j)::real[] FROM generate_series(1, 500) i;
CREATE INDEX q_bq ON q USING hnsw (v vector_l2_ops) WITH (quantization = 'binary');
SELECT quantization, vector_type, dimensions, metric, vector_bytes, vectors FROM quiver.index_stats('q_bq');
EXPLAIN (COSTS OFF) SELECT id FROM q ORDER BY v <-> '[0.5,0,0,0,0,0,0,0]' LIMIT 5;
SELECT id, round((v <-> '[0.5,0,0,0,0,0,0,0]')::numeric, 4) AS d FROM q ORDER BY v <-> '[0.5,0,0,0,0,0,0,0]' LIMIT 5;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT id, round((v <-> '[0.5,0,0,0,0,0,0,0]')::numeric, 4) AS d FROM q ORDER BY v <-> '[0.5,0,0,0,0,0,0,0]' LIMIT 5;
RESET enable_indexscan;
SET enable_seqscan = off;
CREATE INDEX ON items USING hnsw (b bit_hamming_ops) WITH (quantization = 'binary');
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (quantization = 'int8');
SET quiver.oversampling = 0;
DROP TABLE q;
-- pgvector's dimension limits at every m: where an element's vector does not
-- fit beside its links, it is an item of its own
CREATE TABLE wide (id int PRIMARY KEY, v vector(2000));
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * 7 + j * 0.37)) FROM generate_series(1, 2000) j)::vector FROM generate_series(1, 30) i;
CREATE INDEX wide_v ON wide USING hnsw (v vector_l2_ops) WITH (m = 48, ef_construction = 96);
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * 7 + j * 0.37)) FROM generate_series(1, 2000) j)::vector FROM generate_series(31, 40) i;
SELECT (quiver.index_check('wide_v')->>'vectors_apart')::int AS apart, quiver.index_check('wide_v')->>'unreachable_live' AS unreachable;
SELECT count(*) AS found_by_own_vector FROM wide a WHERE (SELECT b.id FROM wide b ORDER BY b.v <-> a.v LIMIT 1) = a.id;
DELETE FROM wide WHERE id % 2 = 0;
VACUUM wide;
SELECT (quiver.index_check('wide_v')->>'vectors_apart')::int AS apart, quiver.index_check('wide_v')->>'unreachable_live' AS unreachable;
SELECT count(*) AS found_by_own_vector FROM wide a WHERE (SELECT b.id FROM wide b ORDER BY b.v <-> a.v LIMIT 1) = a.id;
CREATE TABLE wide_h (v halfvec(4000));
INSERT INTO wide_h SELECT (SELECT array_agg(cos(i + j * 0.11)) FROM generate_series(1, 4000) j)::halfvec FROM generate_series(1, 5) i;
CREATE INDEX ON wide_h USING hnsw (v halfvec_l2_ops) WITH (m = 100, ef_construction = 200);
SELECT count(*) FROM (SELECT 1 FROM wide_h ORDER BY v <-> (SELECT v FROM wide_h LIMIT 1) LIMIT 5) s;
CREATE TABLE wide_b (v bit(64000));
INSERT INTO wide_b SELECT (SELECT string_agg(((i * j) % 3 = 0)::int::text, '') FROM generate_series(1, 64000) j)::bit(64000) FROM generate_series(1, 3) i;
CREATE INDEX ON wide_b USING hnsw (v bit_hamming_ops);
SELECT count(*) FROM (SELECT 1 FROM wide_b ORDER BY v <~> (SELECT v FROM wide_b LIMIT 1) LIMIT 5) s;
CREATE TABLE too_wide (v vector(2001), h halfvec(4001), b bit(64001));
CREATE INDEX ON too_wide USING hnsw (v vector_l2_ops);
CREATE INDEX ON too_wide USING hnsw (h halfvec_l2_ops);
CREATE INDEX ON too_wide USING hnsw (b bit_hamming_ops);
DROP TABLE wide, wide_h, wide_b, too_wide;
-- errors
SELECT id FROM items ORDER BY embedding <-> '[1,2]' LIMIT 1;
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (m = 101);
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (ef_construction = 3);
CREATE TABLE nodims (v vector);
CREATE INDEX ON nodims USING hnsw (v vector_l2_ops);
SELECT quiver.index_check('items_pkey');
RESET enable_seqscan;
DROP TABLE items, nodims;
