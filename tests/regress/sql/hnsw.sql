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
-- errors
SELECT id FROM items ORDER BY embedding <-> '[1,2]' LIMIT 1;
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (m = 101);
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (ef_construction = 3);
CREATE TABLE nodims (v vector);
CREATE INDEX ON nodims USING hnsw (v vector_l2_ops);
SELECT quiver.index_check('items_pkey');
RESET enable_seqscan;
DROP TABLE items, nodims;
